"""Noise schedules: `x_t = alpha(t) * x0 + sigma(t) * eps` for continuous t in [0, 1] (t = 1 is noise).

`LinearFlow` is rectified flow's straight path (alpha = 1 - t, sigma = t). `DDPMSchedule`
holds a discrete variance-preserving schedule of `num_steps` betas (linear, Ho et al. 2020;
scaled-linear, Stable Diffusion; cosine, Nichol & Dhariwal 2021) and reads it at continuous
t by interpolating log alpha-bar between steps, with t = (i + 1) / num_steps for step i and
alpha-bar = 1 at t = 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor


class NoiseSchedule(ABC):
    """alpha(t), sigma(t) and their time derivatives."""

    @abstractmethod
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """`(alpha, sigma)`, each shaped like `t`."""

    def derivatives(self, t: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
        """`(d alpha / dt, d sigma / dt)` by central differences (schedules with a closed form override this)."""
        lo, hi = (t - eps).clamp(min=0.0), (t + eps).clamp(max=1.0)
        (a0, s0), (a1, s1) = self.alpha_sigma(lo), self.alpha_sigma(hi)
        return (a1 - a0) / (hi - lo), (s1 - s0) / (hi - lo)

    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t) = log(alpha / sigma), +inf at t = 0."""
        alpha, sigma = self.alpha_sigma(t)
        return torch.log(alpha) - torch.log(sigma)


class LinearFlow(NoiseSchedule):
    """Rectified flow's straight path: alpha = 1 - t, sigma = t."""

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1.0 - t, t

    def derivatives(self, t: Tensor, eps: float = 0.0) -> tuple[Tensor, Tensor]:
        return -torch.ones_like(t), torch.ones_like(t)


def betas_for(kind: str, num_steps: int, beta_start: float, beta_end: float) -> Tensor:
    """The discrete betas of a named schedule, in float64."""
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; known: linear, scaled_linear, cosine")


class DDPMSchedule(NoiseSchedule):
    """A discrete variance-preserving schedule read at continuous time.

    Args:
        kind: 'linear' (1e-4 to 0.02 by default), 'scaled_linear' (Stable Diffusion: linear in
            sqrt(beta), 0.00085 to 0.012) or 'cosine' (Nichol & Dhariwal; ignores the beta range).
        num_steps: number of discrete training steps T.
        beta_start: first beta (linear kinds).
        beta_end: last beta (linear kinds).
    """

    def __init__(
        self,
        kind: Literal["linear", "scaled_linear", "cosine"] = "linear",
        num_steps: int = 1000,
        beta_start: float | None = None,
        beta_end: float | None = None,
    ) -> None:
        defaults = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012), "cosine": (0.0, 0.0)}
        if kind not in defaults:
            raise ValueError(f"unknown beta schedule {kind!r}; known: {', '.join(defaults)}")
        start, end = defaults[kind]
        self.kind = kind
        self.num_steps = num_steps
        betas = betas_for(kind, num_steps, beta_start if beta_start is not None else start, beta_end if beta_end is not None else end)
        # log alpha-bar at t = 0, 1/T, 2/T, ..., 1 (alpha-bar = 1 at t = 0)
        self.log_alpha_bar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-betas), 0)])

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        table = self.log_alpha_bar.to(t.device)
        pos = t.double().clamp(0, 1) * self.num_steps
        lo = pos.floor().long().clamp(max=self.num_steps - 1)
        frac = pos - lo
        log_ab = table[lo] * (1 - frac) + table[lo + 1] * frac
        alpha_bar = torch.exp(log_ab)
        return alpha_bar.sqrt().to(t.dtype), (1 - alpha_bar).clamp(min=0).sqrt().to(t.dtype)
