"""Q-Former (BLIP-2): learned queries with self-attention, reading the encoder through cross-attention every k blocks."""

from __future__ import annotations

from torch import nn

from kit.fusion.base import FUSION_HEADS, tap_position
from kit.fusion.queries import LearnedQueryHead, QueryBlock
from kit.types import Conditioning, EncoderOutput, EncoderSpec


@FUSION_HEADS.register("qformer")
class QFormerHead(LearnedQueryHead):
    """BLIP-2's querying transformer over one tapped layer: every block lets the queries attend to
    each other; every `cross_attention_every`-th block (starting with the first) also reads the
    encoder's tokens, with keys and values projected from the encoder's own width.

    Args:
        tap: the hidden-state index the queries read (the encoder must tap it); negative counts from the
            deepest tap, so -1 is the last layer.
        depth: blocks.
        cross_attention_every: a cross-attention every k blocks (BLIP-2: 2).
        kwargs: the query settings (`LearnedQueryHead`); keys and values come from the encoder's width
            (`spec.hidden_size`), and `input_norm="rms"` leaves the encoder's tokens to the
            cross-attentions' own pre-norms.
    """

    test_settings = (
        {"num_queries": 4, "width": 32, "depth": 3},
        {"tap": 2, "num_queries": 2, "width": 16, "depth": 2, "cross_attention_every": 1, "num_heads": 2, "input_norm": "standardize"},
    )

    def __init__(
        self, spec: EncoderSpec, cond_dim: int, num_blocks: int | None = None, *, tap: int = -1, depth: int = 4, cross_attention_every: int = 2, **kwargs
    ) -> None:
        if cross_attention_every < 1 or depth < 1:
            raise ValueError(f"qformer: depth ({depth}) and cross_attention_every ({cross_attention_every}) must be at least 1")
        super().__init__(spec, cond_dim, num_blocks, **kwargs)
        self.position = tap_position(spec, tap, "qformer")
        self.blocks = nn.ModuleList(
            QueryBlock(self.width, spec.hidden_size, self.num_heads, self.mlp_ratio, self_attention=True, cross_attention=i % cross_attention_every == 0)
            for i in range(depth)
        )
        self.initialize_weights()

    def context_width(self) -> int:
        return self.spec.hidden_size

    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Hidden states `(B, N, S, D)` -> tokens `(B, Q, cond_dim)`, all real."""
        enc = self.select(enc)
        context, mask = self.with_null_context(enc.hidden_states[:, self.position], enc.mask)  # (B, 1 + M, D)
        q = self.queries.expand(context.shape[0], -1, -1)  # (B, Q, W)
        for block in self.blocks:
            q = block(q, context, mask)  # (B, Q, W)
        return self.output(q)
