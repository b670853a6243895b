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

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: `(B, S, dim)`; mask: `(B, S)` bool key mask or None. Returns `(B, S, dim)`."""
        x = x + self.attn(self.norm1(x), attn_mask=key_padding_bias(mask))  # (B, S, dim)
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
