"""Diffusion-transformer building blocks shared by the backbone families.

Timestep embedding, adaLN modulation, 2D sin-cos positions at any grid size, and the
adaLN-Zero output layer. Generic attention/MLP blocks are in `kit.layers`.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


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
