"""Last-layer conditioning: one tapped layer of the encoder, refined and adapted (the baseline)."""

from __future__ import annotations

from kit.fusion.base import FUSION_HEADS, Adaptor, FusionHead, KindName, TokenRefiner
from kit.layers import init_linear_trunc_normal
from kit.types import Conditioning, EncoderOutput, EncoderSpec


@FUSION_HEADS.register("last_layer")
class LastLayerHead(FusionHead):
    """Condition on a single tapped layer (by default the last) through an MLP adaptor.

    Args:
        spec: the frozen encoder's description (width, depth, tapped layers).
        cond_dim: the width of the conditioning the backbone expects.
        tap: which of the encoder's taps to use (an index into `spec.taps`; -1 is the deepest).
        refiner_depth: bidirectional blocks over the tokens before the adaptor (0 for none).
        num_heads: attention heads of the refiner.
        mlp_ratio: MLP width multiple of the refiner.
        keep_kinds: token kinds the head conditions on.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        cond_dim: int,
        *,
        tap: int = -1,
        refiner_depth: int = 0,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        keep_kinds: tuple[KindName, ...] = ("prompt", "image", "generated"),
    ) -> None:
        super().__init__(spec, cond_dim, keep_kinds=keep_kinds)
        if not -spec.num_taps <= tap < spec.num_taps:
            raise ValueError(f"tap {tap} is out of range: the encoder returns {spec.num_taps} taps {list(spec.taps)}")
        self.tap = tap
        self.refiner = TokenRefiner(spec.hidden_size, refiner_depth, num_heads, mlp_ratio)
        self.adaptor = Adaptor(spec.hidden_size, cond_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Linear layers trunc-normal(0.02), zero bias."""
        init_linear_trunc_normal(self)

    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Hidden states `(B, N, S, D)` -> tokens `(B, M, cond_dim)` from one layer, with mask `(B, M)`."""
        enc = self.select(enc)
        x = enc.hidden_states[:, self.tap]  # (B, M, D)
        x = self.refiner(x, enc.mask)  # (B, M, D)
        tokens = self.adaptor(x) * enc.mask[..., None]  # (B, M, C)
        return Conditioning(tokens=tokens, mask=enc.mask)
