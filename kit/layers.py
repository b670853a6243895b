"""Generic transformer pieces shared by fusion heads and backbones.

Attention and MLP come from timm; what is added here is the boolean key-padding mask
plumbing and a pre-norm block. Diffusion-specific pieces (timestep embedding, adaLN,
patchify) live in `kit.backbones.layers`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Attention, Mlp, RmsNorm
from torch import Tensor, nn


def key_padding_bias(mask: Tensor | None) -> Tensor | None:
    """`(B, S)` bool key mask -> `(B, 1, 1, S)` bool mask for SDPA (True = attend).

    A row with no real key at all (an empty prompt) would make softmax produce NaN that
    leaks through later masking (NaN * 0 is NaN); such rows attend everywhere instead, and
    their outputs are masked out downstream.
    """
    if mask is None:
        return None
    mask = mask | ~mask.any(dim=1, keepdim=True)
    return mask[:, None, None, :]


def rotary_tables(positions: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Rotary position tables for integer `positions` `(B, S)` -> `(cos, sin)`, each `(B, 1, S, head_dim)`."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head width, got {head_dim}")
    half = head_dim // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float32, device=positions.device) / half)  # (half,)
    angles = positions.float()[..., None] * freqs  # (B, S, half)
    angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B, 1, S, head_dim)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate `x` `(B, K, S, d)` by the tables of `rotary_tables` (the rotate-half convention)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # tables are built in fp32; keep q and k in the model's dtype
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class RotaryAttention(Attention):
    """timm's `Attention` (same parameters and state_dict keys) with rotary positions on queries and keys.

    Relative offsets between tokens then enter every attention score, so a block can learn
    "the words just after me" (an object's place phrase) from its first steps.
    """

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """x `(B, S, W)`, attn_mask `(B, 1, 1, S)` bool or None, rope `(cos, sin)` from `rotary_tables` -> `(B, S, W)`."""
        q, k, v = rearrange(self.qkv(x), "b s (three k d) -> three b k s d", three=3, k=self.num_heads)  # (B, K, S, d) each
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop.p if self.training else 0.0)
        out = self.norm(rearrange(out, "b k s d -> b s (k d)"))  # (B, S, W)
        return self.proj_drop(self.proj(out))


class TransformerBlock(nn.Module):
    """Pre-norm block: RMSNorm -> self-attention (QK-norm) -> RMSNorm -> MLP, residual around each.

    Args:
        dim: token width.
        num_heads: attention heads; must divide `dim`.
        mlp_ratio: MLP hidden width as a multiple of `dim`.
        attn_layer: the attention class, timm's `Attention` or a subclass with the same parameters
            (LAP's layer-axis blocks swap in one that runs a fused kernel).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, attn_layer: type[Attention] = Attention) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.norm1 = RmsNorm(dim)
        self.attn = attn_layer(dim, num_heads=num_heads, qkv_bias=True, qk_norm=True, norm_layer=RmsNorm)
        self.norm2 = RmsNorm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: Tensor, mask: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """x: `(B, S, dim)`; mask: `(B, S)` bool key mask or None; rope: rotary tables (with
        `attn_layer=RotaryAttention`) or None. Returns `(B, S, dim)`."""
        extra = {} if rope is None else {"rope": rope}
        x = x + self.attn(self.norm1(x), attn_mask=key_padding_bias(mask), **extra)  # (B, S, dim)
        x = x + self.mlp(self.norm2(x))  # (B, S, dim)
        return x


class CrossAttention(nn.Module):
    """Multi-head attention from query tokens to context tokens of another width, with a key mask.

    Args:
        dim: query (and output) width.
        context_dim: width of the context tokens (keys and values).
        num_heads: attention heads; must divide `dim`.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.q_norm = RmsNorm(dim // num_heads)
        self.k_norm = RmsNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """x `(B, S, dim)`, context `(B, M, context_dim)`, mask `(B, M)` bool -> `(B, S, dim)`."""
        q = rearrange(self.q(x), "b s (h d) -> b h s d", h=self.num_heads)  # (B, H, S, d)
        k, v = rearrange(self.kv(context), "b m (two h d) -> two b h m d", two=2, h=self.num_heads)  # (B, H, M, d) each
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v, attn_mask=key_padding_bias(mask))  # (B, H, S, d)
        return self.proj(rearrange(out, "b h s d -> b s (h d)"))


def init_linear_xavier(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear in `module` (DiT's init)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_linear_trunc_normal(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal weights and zero biases for every Linear in `module` (ViT/BERT init)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def zero_(module: nn.Module) -> nn.Module:
    """Zero every parameter of `module` in place and return it (adaLN-Zero, output layers)."""
    for p in module.parameters():
        p.zero_()
    return module
