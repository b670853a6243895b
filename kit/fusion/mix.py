"""Layer mixes: the tapped layers averaged, or mixed by learned softmax weights (ELMo's scalar mix).

Both reduce the taps to one sequence with one weight per layer shared by every token, the
cheapest way to read more than the last layer; LAP instead pools each token with attention
across its layers.
"""

from __future__ import annotations

import torch
from einops import einsum
from torch import Tensor, nn

from kit.fusion.base import FUSION_HEADS, SingleSequenceHead, tap_positions
from kit.layers import init_linear_trunc_normal
from kit.types import EncoderOutput, EncoderSpec


class LayerMixHead(SingleSequenceHead):
    """Base of the layer mixes: tap selection, a per-layer RMSNorm (layers differ in scale), a weighted sum,
    then the refiner and the adaptor. Subclasses define `mix_weights`.

    Args:
        taps: the taps to mix: None for all, k for every k-th from the deepest, or a list of hidden-state indices.
        kwargs: the refiner's settings, the kept token kinds and the input norm (`SingleSequenceHead`;
            `rms` is the per-layer RMSNorm here).
    """

    def __init__(self, spec: EncoderSpec, cond_dim: int, num_blocks: int | None = None, *, taps: int | list[int] | None = None, **kwargs) -> None:
        super().__init__(spec, cond_dim, num_blocks, **kwargs)
        self.positions = tap_positions(spec, taps, self.registry_name or type(self).__name__)
        self.norm = self.tap_norm()
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Linear layers trunc-normal(0.02), zero bias."""
        init_linear_trunc_normal(self)

    def mix_weights(self) -> Tensor:
        """`(N',)` the weight of each read tap."""
        raise NotImplementedError

    def layer_weights(self) -> Tensor:
        return self.mix_weights().detach()

    def reduce(self, enc: EncoderOutput) -> Tensor:
        """`(B, N, M, D)` -> `(B, M, D)`: normalised taps, weighted and summed."""
        h = self.norm(enc.hidden_states[:, list(self.positions)])  # (B, N', M, D)
        return einsum(h, self.mix_weights().to(h.dtype), "b n m d, n -> b m d")


@FUSION_HEADS.register("mean_layers")
class MeanLayersHead(LayerMixHead):
    """The plain mean of the (normalised) tapped layers, refined and adapted (arguments: `LayerMixHead`)."""

    test_settings = ({}, {"taps": [4, 6], "refiner_depth": 1, "input_norm": "standardize"})

    def mix_weights(self) -> Tensor:
        n = len(self.positions)
        return torch.full((n,), 1.0 / n, device=self.null_tokens.device)


@FUSION_HEADS.register("scalar_mix")
class ScalarMixHead(LayerMixHead):
    """A learned softmax weight per tapped layer times a learned scale (ELMo's scalar mix), refined and
    adapted (arguments: `LayerMixHead`)."""

    test_settings = ({}, {"taps": 2, "input_norm": "standardize"})

    def __init__(self, spec: EncoderSpec, cond_dim: int, num_blocks: int | None = None, **kwargs) -> None:
        super().__init__(spec, cond_dim, num_blocks, **kwargs)
        self.logits = nn.Parameter(torch.zeros(len(self.positions)))  # equal: starts as the mean over layers
        self.scale = nn.Parameter(torch.ones(()))

    def mix_weights(self) -> Tensor:
        return self.scale * self.logits.softmax(dim=0)
