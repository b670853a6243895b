"""Last-layer conditioning: one tapped layer of the encoder, refined and adapted (the baseline)."""

from __future__ import annotations

from torch import Tensor

from kit.fusion.base import FUSION_HEADS, SingleSequenceHead, tap_position
from kit.layers import init_linear_trunc_normal
from kit.types import EncoderOutput, EncoderSpec


@FUSION_HEADS.register("last_layer")
class LastLayerHead(SingleSequenceHead):
    """Condition on a single tapped layer (by default the last) through an MLP adaptor.

    Args:
        tap: the hidden-state index to read (the encoder must tap it); negative counts from the deepest
            tap, so -1 is the last layer.
        kwargs: the refiner's settings and the kept token kinds (`SingleSequenceHead`).
    """

    test_settings = ({}, {"refiner_depth": 1, "tap": 2}, {"refiner_depth": 1, "refiner_positions": "rope"}, {"input_norm": "standardize"})

    def __init__(self, spec: EncoderSpec, cond_dim: int, num_blocks: int | None = None, *, tap: int = -1, **kwargs) -> None:
        super().__init__(spec, cond_dim, num_blocks, tap=tap, **kwargs)
        self.initialize_weights()

    def build_reducer(self, *, num_heads: int, mlp_ratio: float, tap: int) -> int:
        """No modules: the reduction is the choice of one tapped layer."""
        self.position = tap_position(self.spec, tap, "last_layer")
        return self.spec.hidden_size

    def initialize_weights(self) -> None:
        """Linear layers trunc-normal(0.02), zero bias."""
        init_linear_trunc_normal(self)

    def reduce(self, enc: EncoderOutput) -> Tensor:
        """`(B, N, M, D)` -> `(B, M, D)`: the chosen tap."""
        return enc.hidden_states[:, self.position]
