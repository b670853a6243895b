"""Cross-attention resampler: learned queries read the tokens of every tapped layer (Perceiver/Flamingo-style)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from kit.fusion.base import FUSION_HEADS, tap_positions
from kit.fusion.queries import LearnedQueryHead, QueryBlock
from kit.types import Conditioning, EncoderOutput, EncoderSpec


@FUSION_HEADS.register("resampler")
class ResamplerHead(LearnedQueryHead):
    """Learned queries cross-attend to the tapped layers' tokens (all layers side by side, each
    marked by a learned layer embedding); the backbone gets `num_queries` tokens per sample.

    Args:
        taps: the taps read: None for all, k for every k-th from the deepest, or a list of hidden-state indices.
        depth: cross-attention + MLP blocks.
        kwargs: the query settings (`LearnedQueryHead`); `width` is also the width the encoder tokens are
            projected to, and `input_norm="rms"` puts an RMSNorm on them.
    """

    test_settings = (
        {"num_queries": 4, "width": 32, "depth": 2},
        {"taps": [6], "num_queries": 1, "width": 16, "depth": 1, "num_heads": 2, "input_norm": "standardize"},
    )

    def __init__(
        self, spec: EncoderSpec, cond_dim: int, num_blocks: int | None = None, *, taps: int | list[int] | None = None, depth: int = 2, **kwargs
    ) -> None:
        super().__init__(spec, cond_dim, num_blocks, **kwargs)
        width = self.width
        self.positions = tap_positions(spec, taps, "resampler")
        self.in_norm = self.tap_norm()
        self.in_proj = nn.Linear(spec.hidden_size, width)
        self.layer_embed = nn.Parameter(torch.empty(len(self.positions), 1, width))
        self.blocks = nn.ModuleList(QueryBlock(width, width, self.num_heads, self.mlp_ratio, self_attention=False, cross_attention=True) for _ in range(depth))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Linear layers trunc-normal(0.02), zero bias; queries, null key and layer embeddings normal(0.02)."""
        super().initialize_weights()
        nn.init.normal_(self.layer_embed, std=0.02)

    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Hidden states `(B, N, S, D)` -> tokens `(B, Q, cond_dim)`, all real."""
        enc = self.select(enc)
        h = self.in_proj(self.in_norm(enc.hidden_states[:, list(self.positions)])) + self.layer_embed  # (B, N', M, W)
        context = rearrange(h, "b n m w -> b (n m) w")  # (B, N'M, W)
        mask = enc.mask.repeat(1, len(self.positions))  # (B, N'M), same (n m) order
        context, mask = self.with_null_context(context, mask)  # (B, 1 + N'M, W)
        q = self.queries.expand(context.shape[0], -1, -1)  # (B, Q, W)
        for block in self.blocks:
            q = block(q, context, mask)  # (B, Q, W)
        return self.output(q)
