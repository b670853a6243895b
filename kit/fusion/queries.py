"""What the learned-query heads (cross-attention resampler, Q-Former) share.

A fixed number of learned queries read the encoder's tokens through cross-attention, so the
backbone sees the same number of conditioning tokens whatever the prompt's length. A learned
null key/value is prepended to the encoder tokens: a query always has something to attend to,
even for an empty prompt, and can choose to read nothing.
"""

from __future__ import annotations

import torch
from timm.layers import Attention, Mlp, RmsNorm
from torch import Tensor, nn

from kit.fusion.base import FusionHead, InputNorm, KindName
from kit.layers import CrossAttention, init_linear_trunc_normal
from kit.types import Conditioning, EncoderSpec


class QueryBlock(nn.Module):
    """Pre-norm block for learned queries: optional self-attention, optional cross-attention, then an MLP.

    Args:
        width: query width.
        context_dim: width of the keys/values' source tokens (the encoder's width for a Q-Former).
        num_heads: attention heads.
        mlp_ratio: MLP width multiple.
        self_attention: the queries attend to each other.
        cross_attention: the queries attend to the context.
    """

    def __init__(self, width: int, context_dim: int, num_heads: int, mlp_ratio: float, *, self_attention: bool, cross_attention: bool) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"query width {width} is not divisible by num_heads {num_heads}")
        self.self_norm = RmsNorm(width) if self_attention else None
        self.self_attn = Attention(width, num_heads=num_heads, qkv_bias=True, qk_norm=True, norm_layer=RmsNorm) if self_attention else None
        self.cross_norm = RmsNorm(width) if cross_attention else None
        self.context_norm = RmsNorm(context_dim) if cross_attention else None
        self.cross = CrossAttention(width, context_dim, num_heads) if cross_attention else None
        self.mlp_norm = RmsNorm(width)
        self.mlp = Mlp(width, hidden_features=int(width * mlp_ratio), act_layer=nn.GELU)

    def forward(self, q: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """q `(B, Q, width)`, context `(B, S, context_dim)`, mask `(B, S)` -> `(B, Q, width)`."""
        if self.self_attn is not None:
            q = q + self.self_attn(self.self_norm(q))  # (B, Q, width)
        if self.cross is not None:
            q = q + self.cross(self.cross_norm(q), self.context_norm(context), mask)  # (B, Q, width)
        return q + self.mlp(self.mlp_norm(q))  # (B, Q, width)


class LearnedQueryHead(FusionHead):
    """Base of heads whose conditioning is a fixed set of learned queries after reading the encoder;
    a subclass builds its blocks from `width`, `num_heads` and `mlp_ratio`.

    Args:
        num_queries: conditioning tokens produced per sample (BLIP-2 uses 32).
        width: query width.
        num_heads: attention heads of the subclass's blocks.
        mlp_ratio: MLP width multiple of the subclass's blocks.
        keep_kinds: token kinds the head reads.
        input_norm: `rms` or `standardize` (see `FusionHead`).
    """

    def __init__(
        self,
        spec: EncoderSpec,
        cond_dim: int,
        num_blocks: int | None = None,
        *,
        num_queries: int = 32,
        width: int = 192,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        keep_kinds: tuple[KindName, ...] = ("prompt", "image", "generated"),
        input_norm: InputNorm = "rms",
    ) -> None:
        super().__init__(spec, cond_dim, num_blocks, keep_kinds=keep_kinds, input_norm=input_norm)
        if num_queries < 1:
            raise ValueError(f"{type(self).__name__}: num_queries must be at least 1, got {num_queries}")
        self.width, self.num_heads, self.mlp_ratio = width, num_heads, mlp_ratio
        self.queries = nn.Parameter(torch.empty(1, num_queries, width))
        self.null_context = nn.Parameter(torch.empty(1, 1, self.context_width()))
        self.out_norm = RmsNorm(width)
        self.out_proj = nn.Linear(width, cond_dim)

    def context_width(self) -> int:
        """Width of the context the queries read: the query width (a subclass that reads the encoder's
        tokens without projecting them returns their width)."""
        return self.width

    def initialize_weights(self) -> None:
        """Linear layers trunc-normal(0.02), zero bias; queries and the null key normal(0.02)."""
        init_linear_trunc_normal(self)
        nn.init.normal_(self.queries, std=0.02)
        nn.init.normal_(self.null_context, std=0.02)

    def with_null_context(self, context: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Prepend the learned null key: `(B, S, E)`, `(B, S)` -> `(B, 1 + S, E)`, `(B, 1 + S)`."""
        b = context.shape[0]
        context = torch.cat([self.null_context.expand(b, -1, -1).to(context.dtype), context], dim=1)
        mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        return context, mask

    def output(self, q: Tensor) -> Conditioning:
        """Final queries `(B, Q, width)` -> conditioning tokens `(B, Q, cond_dim)`, all real."""
        tokens = self.out_proj(self.out_norm(q))  # (B, Q, C)
        return Conditioning(tokens=tokens, mask=torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device))
