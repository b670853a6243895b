"""Layerwise Attention Pooling (LAP), UniFusion's fusion head.

Per token, the hidden states of the tapped VLM layers form a short sequence over the layer
axis. Pre-norm transformer blocks attend across that axis (no positional encoding: the
projector below carries layer identity), a learned `Linear(N -> 1)` over layers pools it to
one vector, a bidirectional refiner attends across tokens, and an adaptor maps to the
backbone's width. See `shared/research/unifusion.md` section 1 and 7.
"""

from __future__ import annotations

from einops import rearrange
from timm.layers import RmsNorm
from torch import Tensor, nn

from kit.fusion.base import FUSION_HEADS, Adaptor, FusionHead, KindName, TokenRefiner
from kit.layers import TransformerBlock, init_linear_trunc_normal
from kit.types import Conditioning, EncoderOutput, EncoderSpec


@FUSION_HEADS.register("lap")
class LAPHead(FusionHead):
    """Layerwise attention pooling over the tapped layers, then a token refiner.

    Args:
        spec: the frozen encoder's description (width, depth, tapped layers).
        cond_dim: the width of the conditioning the backbone expects.
        width: width of the layer-axis blocks and the refiner; None keeps the encoder's width.
        layer_depth: transformer blocks attending across the layer axis (the paper uses 2).
        refiner_depth: bidirectional blocks attending across tokens after pooling (the paper uses 2).
        num_heads: attention heads in both stacks.
        mlp_ratio: MLP width multiple in both stacks.
        keep_kinds: token kinds the head conditions on.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        cond_dim: int,
        *,
        width: int | None = None,
        layer_depth: int = 2,
        refiner_depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        keep_kinds: tuple[KindName, ...] = ("prompt", "image", "generated"),
    ) -> None:
        super().__init__(spec, cond_dim, keep_kinds=keep_kinds)
        width = width or spec.hidden_size
        self.in_norm = RmsNorm(spec.hidden_size)  # tapped layers differ wildly in scale
        self.in_proj = nn.Identity() if width == spec.hidden_size else nn.Linear(spec.hidden_size, width)
        self.layer_blocks = nn.ModuleList(TransformerBlock(width, num_heads, mlp_ratio) for _ in range(layer_depth))
        self.projector = nn.Linear(spec.num_taps, 1, bias=False)
        self.refiner = TokenRefiner(width, refiner_depth, num_heads, mlp_ratio)
        self.adaptor = Adaptor(width, cond_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Projector starts as the mean over layers; linear layers trunc-normal(0.02), zero bias."""
        init_linear_trunc_normal(self)
        nn.init.constant_(self.projector.weight, 1.0 / self.spec.num_taps)

    def layer_weights(self) -> Tensor:
        """`(N,)` the learned weight of each tapped layer in the pooling."""
        return self.projector.weight.detach()[0]

    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Hidden states `(B, N, S, D)` -> tokens `(B, M, cond_dim)` over the kept tokens, with mask `(B, M)`."""
        enc = self.select(enc)
        mask = enc.mask  # (B, M)
        h = rearrange(enc.hidden_states, "b n m d -> b m n d")[mask]  # (T, N, D): real tokens only
        h = self.in_proj(self.in_norm(h))  # (T, N, W)
        for block in self.layer_blocks:
            h = block(h)  # (T, N, W): attention across the layer axis of each token
        pooled = self.projector(h.transpose(1, 2)).squeeze(-1)  # (T, W)
        x = pooled.new_zeros(*mask.shape, pooled.shape[-1])  # (B, M, W)
        x[mask] = pooled
        x = self.refiner(x, mask)  # (B, M, W)
        tokens = self.adaptor(x) * mask[..., None]  # (B, M, C)
        return Conditioning(tokens=tokens, mask=mask)
