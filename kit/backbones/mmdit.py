"""MMDiT (Stable Diffusion 3, Esser et al. 2024): two streams with their own weights, one joint attention.

Text and image tokens keep separate norms, projections and MLPs, each modulated by adaLN
from the timestep plus a pooled conditioning vector; the attention runs once over the
concatenation of both streams' queries, keys and values. Only the image stream is decoded.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp, RmsNorm
from torch import Tensor, nn

from kit.backbones.base import BACKBONES, TransformerBackbone
from kit.layers import FinalLayer, TimestepEmbedder, init_linear_xavier, key_padding_bias, modulate, zero_
from kit.types import Conditioning


class StreamHalf(nn.Module):
    """One stream's weights in an MMDiT block: modulation, norms, QKV (with QK-norm), output projection, MLP.

    Args:
        width: token width.
        num_heads: attention heads.
        mlp_ratio: MLP width multiple.
        pre_only: only feed the attention (SD3's last text half, whose output nobody reads).
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, pre_only: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(width, (2 if pre_only else 6) * width))
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = RmsNorm(width // num_heads)
        self.k_norm = RmsNorm(width // num_heads)
        if not pre_only:
            self.proj = nn.Linear(width, width)
            self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
            self.mlp = Mlp(width, hidden_features=int(width * mlp_ratio), act_layer=partial(nn.GELU, approximate="tanh"))

    def pre_attention(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...]]:
        """x `(B, S, W)`, c `(B, W)` -> q, k, v `(B, H, S, d)` and the remaining modulation."""
        shift1, scale1, *rest = self.adaLN(c).chunk(self.adaLN[-1].out_features // x.shape[-1], dim=-1)  # (B, W) each
        q, k, v = rearrange(self.qkv(modulate(self.norm1(x), shift1, scale1)), "b s (three h d) -> three b h s d", three=3, h=self.num_heads)
        return self.q_norm(q), self.k_norm(k), v, tuple(rest)

    def post_attention(self, x: Tensor, attn: Tensor, mod: tuple[Tensor, ...]) -> Tensor:
        """Residual updates of one stream from its slice of the joint attention `(B, S, W)`."""
        gate1, shift2, scale2, gate2 = mod
        x = x + gate1[:, None] * self.proj(attn)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class MMDiTBlock(nn.Module):
    """Joint attention over [text, image] with separate weights per stream.

    Args:
        width: token width.
        num_heads: attention heads.
        mlp_ratio: MLP width multiple.
        context_pre_only: the last block: the text stream only feeds the attention.
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0, context_pre_only: bool = False) -> None:
        super().__init__()
        self.context_pre_only = context_pre_only
        self.txt = StreamHalf(width, num_heads, mlp_ratio, pre_only=context_pre_only)
        self.img = StreamHalf(width, num_heads, mlp_ratio)

    def forward(self, txt: Tensor, img: Tensor, c: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """txt `(B, M, W)`, img `(B, T, W)`, c `(B, W)`, mask `(B, M + T)` -> updated txt, img."""
        tq, tk, tv, tmod = self.txt.pre_attention(txt, c)
        iq, ik, iv, imod = self.img.pre_attention(img, c)
        q, k, v = (torch.cat(pair, dim=2) for pair in ((tq, iq), (tk, ik), (tv, iv)))  # (B, H, M + T, d)
        out = rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=key_padding_bias(mask)), "b h s d -> b s (h d)")  # (B, M + T, W)
        m = txt.shape[1]
        txt = txt if self.context_pre_only else self.txt.post_attention(txt, out[:, :m], tmod)
        return txt, self.img.post_attention(img, out[:, m:], imod)


@BACKBONES.register("mmdit")
class MMDiT(TransformerBackbone):
    """SD3-style MMDiT: separate text and image weights, joint attention, pooled conditioning in adaLN.

    The pooled vector is the head's `pooled` when it provides one, else the masked mean of its tokens. Its settings are `TransformerBackbone`'s.
    """

    test_settings = (
        {"patch_size": 2, "width": 32, "depth": 2, "num_heads": 2},
        {"patch_size": 4, "width": 32, "depth": 1, "num_heads": 2, "positions": "pixel", "out_channels": 6},
    )

    consumes = frozenset({"tokens", "pooled", "per_layer"})
    captures = True

    def __init__(self, in_channels: int, input_size: int, **kwargs) -> None:
        super().__init__(in_channels, input_size, **kwargs)
        width, depth, num_heads, mlp_ratio = self.width, self.depth, self.num_heads, self.mlp_ratio
        self.t_embedder = TimestepEmbedder(width)
        self.pooled_embedder = nn.Sequential(RmsNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.context_embedder = nn.Sequential(RmsNorm(width), nn.Linear(width, width))
        self.blocks = nn.ModuleList(MMDiTBlock(width, num_heads, mlp_ratio, context_pre_only=i == depth - 1) for i in range(depth))
        self.final = FinalLayer(width, self.patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears, normal(0.02) timestep MLP, adaLN-Zero in both streams, zero output layer."""
        init_linear_xavier(self)
        self.init_embedders()
        for block in self.blocks:
            zero_(block.txt.adaLN[-1])
            zero_(block.img.adaLN[-1])
        zero_(self.final.adaLN[-1])
        zero_(self.final.linear)

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        """x `(B, C, H, W)`, t `(B,)`, cond.tokens `(B, M, W)` and/or cond.per_layer `(B, L, M, W)`, + mask
        (+ pooled `(B, W)`) -> `(B, C, H, W)`. Before block i the text stream is replaced by per_layer[:, i]
        ('replace', key-value fusion) or has it added ('add', hidden-state injection)."""
        b, _, h, w = x.shape
        img = self.embed_patches(x, x.dtype)  # (B, T, W)
        per_layer = self.per_layer_of(cond)  # (B, L, M, W) or None
        tokens = cond.tokens if cond.tokens is not None else per_layer[:, -1]  # (B, M, W)
        txt = self.context_embedder(tokens)  # (B, M, W)
        if cond.pooled is not None:
            pooled = cond.pooled  # (B, W)
        else:
            weights = cond.mask[..., None].to(tokens.dtype)
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, W)
        c = self.t_embedder(t) + self.pooled_embedder(pooled)  # (B, W)
        mask = torch.cat([cond.mask, cond.mask.new_ones(b, img.shape[1])], dim=1)  # (B, M + T)
        for i, block in enumerate(self.blocks):
            if per_layer is not None:
                txt = self.feed_layer(txt, self.context_embedder(per_layer[:, i]), cond.per_layer_mode)  # (B, M, W)
            txt, img = self.run_block(block, txt, img, c, mask)  # (B, M, W), (B, T, W)
            self.record(i, img)
        out = self.final(img, c)  # (B, T, p*p*C_out)
        return self.unpatchify(out, h, w)
