"""Cross-attention DiT (PixArt-alpha, Chen et al. 2023).

Image tokens only in the sequence; every block cross-attends to the conditioning tokens.
The timestep drives adaLN through one shared MLP ("adaLN-single"): it produces six
modulation vectors once, and each block adds its own learned table to them, which saves
most of DiT's per-block modulation parameters.
"""

from __future__ import annotations

import torch
from einops import rearrange
from timm.layers import RmsNorm
from torch import Tensor, nn

from kit.backbones.base import BACKBONES, TransformerBackbone
from kit.layers import CrossAttention, ModulatedBlock, TimestepEmbedder, init_linear_xavier, modulate, zero_
from kit.types import Conditioning


class CrossAttnDiTBlock(ModulatedBlock):
    """Self-attention and MLP modulated by adaLN-single, cross-attention to the conditioning between them
    (`ModulatedBlock` has the arguments)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__(width, num_heads, mlp_ratio)
        self.table = nn.Parameter(torch.randn(6, width) / width**0.5)  # this block's offsets to the shared modulation

    def add_between(self, width: int, num_heads: int) -> None:
        """The cross-attention to the conditioning, with its norm."""
        self.norm_cross = nn.LayerNorm(width, eps=1e-6)
        self.cross = CrossAttention(width, width, num_heads)

    def forward(self, x: Tensor, t6: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """x `(B, T, W)`, t6 `(B, 6, W)` shared modulation, context `(B, M, W)`, mask `(B, M)` -> `(B, T, W)`."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (t6 + self.table[None]).unbind(1)  # (B, W) each
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        x = x + self.cross(self.norm_cross(x), context, mask)
        x = x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


@BACKBONES.register("dit_xattn")
class CrossAttnDiT(TransformerBackbone):
    """PixArt-alpha-style DiT: adaLN-single timestep modulation, cross-attention in every block.

    Its settings are those every transformer family shares (`TransformerBackbone`).
    """

    test_settings = (
        {"patch_size": 2, "width": 32, "depth": 2, "num_heads": 2},
        {"patch_size": 4, "width": 32, "depth": 1, "num_heads": 2, "positions": "pixel", "out_channels": 5},
    )

    consumes = frozenset({"tokens", "per_layer"})
    captures = True

    def __init__(self, in_channels: int, input_size: int, **kwargs) -> None:
        super().__init__(in_channels, input_size, **kwargs)
        width, depth, num_heads, mlp_ratio = self.width, self.depth, self.num_heads, self.mlp_ratio
        self.t_embedder = TimestepEmbedder(width)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))  # adaLN-single
        self.cond_norm = RmsNorm(width)
        self.blocks = nn.ModuleList(CrossAttnDiTBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_table = nn.Parameter(torch.randn(2, width) / width**0.5)
        self.final = nn.Linear(width, self.patch_size * self.patch_size * self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears, zero adaLN-single and cross-attention outputs, zero output layer."""
        init_linear_xavier(self)
        self.init_embedders()
        zero_(self.t_block[-1])
        for block in self.blocks:
            zero_(block.cross.proj)
        zero_(self.final)

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        """x `(B, C, H, W)`, t `(B,)`, cond.tokens `(B, M, W)` and/or cond.per_layer `(B, L, M, W)`, + mask
        -> `(B, C, H, W)`. Block i cross-attends to per_layer[:, i] ('replace') or to the tokens plus it ('add')."""
        _, _, h, w = x.shape
        tokens = self.embed_patches(x, x.dtype)  # (B, T, W)
        t_emb = self.t_embedder(t)  # (B, W)
        t6 = rearrange(self.t_block(t_emb), "b (six w) -> b six w", six=6)  # (B, 6, W)
        per_layer = self.per_layer_of(cond)  # (B, L, M, W) or None
        base = cond.tokens if cond.tokens is not None else torch.zeros_like(per_layer[:, 0])  # (B, M, W)
        for i, block in enumerate(self.blocks):
            fed = base if per_layer is None else self.feed_layer(base, per_layer[:, i], cond.per_layer_mode)  # (B, M, W)
            tokens = self.run_block(block, tokens, t6, self.cond_norm(fed), cond.mask)  # (B, T, W)
            self.record(i, tokens)
        shift, scale = (self.final_table[None] + t_emb[:, None]).unbind(1)  # (B, W) each
        out = self.final(modulate(self.final_norm(tokens), shift, scale))  # (B, T, p*p*C_out)
        return self.unpatchify(out, h, w)
