"""The kit's one module of generic layers, shared by fusion heads, backbones and tasks.

Attention and MLP come from timm; what is added here is the boolean key-padding mask
plumbing, rotary positions, a pre-norm block, the sublayers of an adaLN block and cross-attention, the initialisation helpers,
and the diffusion-transformer pieces every backbone family uses: timestep embedding, adaLN
modulation, 2D sin-cos positions at any grid size, patch embedding and the adaLN-Zero output layer.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Attention, Mlp, RmsNorm
from torch import Tensor, nn


def key_padding_bias(mask: Tensor | None) -> Tensor | None:
    """`(B, S)` bool key mask -> `(B, 1, 1, S)` bool mask for SDPA (True = attend); a `(B, S, S)` query-key
    mask -> `(B, 1, S, S)` (its rows must each allow some key).

    A row with no real key at all (an empty prompt) would make softmax produce NaN that
    leaks through later masking (NaN * 0 is NaN); such rows attend everywhere instead, and
    their outputs are masked out downstream.
    """
    if mask is None:
        return None
    if mask.dim() == 3:  # (B, S, S) query-key mask (a causal or prefix pattern), passed through per head
        return mask[:, None]
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
        """x: `(B, S, dim)`; mask: `(B, S)` bool key mask, `(B, S, S)` query-key mask, or None; rope: rotary tables (with
        `attn_layer=RotaryAttention`) or None. Returns `(B, S, dim)`."""
        extra = {} if rope is None else {"rope": rope}
        x = x + self.attn(self.norm1(x), attn_mask=key_padding_bias(mask), **extra)  # (B, S, dim)
        x = x + self.mlp(self.norm2(x))  # (B, S, dim)
        return x


class ModulatedBlock(nn.Module):
    """The sublayers every adaLN transformer block shares: affine-free pre-norms around a QK-normalised
    self-attention and a tanh-GELU MLP. A block family adds where its shift, scale and gate come from
    (and any further sublayer, `add_between`) and its `forward`.

    Args:
        width: token width.
        num_heads: attention heads.
        mlp_ratio: MLP width multiple.
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, num_heads=num_heads, qkv_bias=True, qk_norm=True, norm_layer=RmsNorm)
        self.add_between(width, num_heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, hidden_features=int(width * mlp_ratio), act_layer=partial(nn.GELU, approximate="tanh"))

    def add_between(self, width: int, num_heads: int) -> None:
        """Build the sublayers that sit between the self-attention and the MLP (none here), in that
        place of the registration order (which optimizer states and init draws follow)."""


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


# ----------------------------------------------------------------- diffusion-transformer pieces
def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x `(B, S, W)`, shift and scale `(B, W)` -> `x * (1 + scale) + shift`."""
    return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    """Continuous time t in [0, 1] -> `(B, width)` via sinusoidal features and an MLP.

    Args:
        width: output width.
        freq_dim: number of sinusoidal features.
        scale: t is multiplied by this before the features (1000 matches discrete-step models).
    """

    def __init__(self, width: int, freq_dim: int = 256, scale: float = 1000.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def features(self, t: Tensor) -> Tensor:
        """`(B,)` -> `(B, freq_dim)` sinusoidal features (cos then sin, log-spaced frequencies)."""
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * self.scale)[:, None] * freqs[None]  # (B, half)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, freq_dim)

    def forward(self, t: Tensor) -> Tensor:
        """t `(B,)` -> `(B, width)`."""
        return self.mlp(self.features(t).to(self.mlp[0].weight.dtype))


def sincos_2d(rows: int, cols: int, width: int, device: torch.device | None = None, spacing: float = 1.0) -> Tensor:
    """Fixed 2D sin-cos positions for a `rows x cols` patch lattice -> `(rows*cols, width)`.

    `spacing` is the distance between neighbouring patches in the coordinates the frequencies
    see: 1 counts patches (DiT's convention), the patch size counts input pixels."""
    if width % 4:
        raise ValueError(f"2D sin-cos positions need a width divisible by 4, got {width}")
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    ys, xs = torch.meshgrid(
        torch.arange(rows, dtype=torch.float32, device=device) * spacing, torch.arange(cols, dtype=torch.float32, device=device) * spacing, indexing="ij"
    )
    out = [f(c.reshape(-1)[:, None] * omega[None]) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    return torch.cat(out, dim=1)  # (rows*cols, width)


class PatchEmbed(nn.Module):
    """`(B, C, H, W)` -> `(B, H/p * W/p, width)` by a strided convolution, with a clear size check.

    Args:
        in_channels: input channels.
        patch_size: patch side p.
        width: token width.
    """

    def __init__(self, in_channels: int, patch_size: int, width: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """x `(B, C, H, W)` -> `(B, T, width)`."""
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"input size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        return rearrange(self.proj(x), "b d h w -> b (h w) d")


class FinalLayer(nn.Module):
    """adaLN-modulated norm and a map from tokens to patches (linear, or a one-hidden-layer MLP); zero-initialised.

    Args:
        width: token width.
        patch_size: patch side p.
        out_channels: channels per output pixel.
        hidden: width of the GELU hidden layers before the output map (0: DiT's single linear map).
        hidden_layers: how many such layers when `hidden` > 0.
    """

    def __init__(self, width: int, patch_size: int, out_channels: int, hidden: int = 0, hidden_layers: int = 1) -> None:
        super().__init__()
        if hidden < 0:
            raise ValueError(f"decoder hidden width must be >= 0 (0: a linear map), got {hidden}")
        if hidden_layers < 1:
            raise ValueError(f"decoder hidden layers must be >= 1 (set the hidden width to 0 for a linear map), got {hidden_layers}")
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        layers: list[nn.Module] = []
        for i in range(hidden_layers if hidden else 0):
            layers += [nn.Linear(width if i == 0 else hidden, hidden), nn.GELU(approximate="tanh")]
        self.hidden = nn.Sequential(*layers) if layers else nn.Identity()
        self.linear = nn.Linear(hidden or width, patch_size * patch_size * out_channels)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x `(B, T, W)`, c `(B, W)` -> `(B, T, p*p*C)`."""
        shift, scale = self.adaLN(c).chunk(2, dim=-1)  # (B, W) each
        return self.linear(self.hidden(modulate(self.norm(x), shift, scale)))
