"""Last-layer conditioning: one tapped layer of the encoder, refined and adapted (the baseline)."""

from __future__ import annotations

from torch import Tensor

from kit.fusion.base import FUSION_HEADS, SingleSequenceHead
from kit.layers import init_linear_trunc_normal
from kit.types import EncoderSpec


@FUSION_HEADS.register("last_layer")
class LastLayerHead(SingleSequenceHead):
    """Condition on a single tapped layer (by default the last) through an MLP adaptor.

    Args:
        spec: the frozen encoder's description (width, depth, tapped layers).
        cond_dim: the width of the conditioning the backbone expects.
        num_blocks: the backbone's depth (unused).
        tap: which of the encoder's taps to use (an index into `spec.taps`; -1 is the deepest).
        kwargs: the refiner's settings and the kept token kinds (`SingleSequenceHead`).
    """

    def __init__(self, spec: EncoderSpec, cond_dim: int, num_blocks: int | None = None, *, tap: int = -1, **kwargs) -> None:
        if not -spec.num_taps <= tap < spec.num_taps:
            raise ValueError(f"last_layer: tap {tap} is out of range: the encoder returns {spec.num_taps} taps {list(spec.taps)}")
        super().__init__(spec, cond_dim, num_blocks, **kwargs)
        self.tap = tap
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Linear layers trunc-normal(0.02), zero bias."""
        init_linear_trunc_normal(self)

    def reduce(self, hidden_states: Tensor) -> Tensor:
        """`(B, N, M, D)` -> `(B, M, D)`: the chosen tap."""
        return hidden_states[:, self.tap]
