"""Rectified flow / flow matching with velocity prediction (Liu et al. 2022; Esser et al. 2024).

    x_t = (1 - t) * x0 + t * eps,      target v = eps - x0,      dx/dt = v

so integrating from t = 1 (noise) to t = 0 with the predicted velocity gives data.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from kit.diffusion.base import Denoiser, DenoiserFn, Objective, Sampler
from kit.types import Conditioning


def shift_time(t: Tensor, shift: float) -> Tensor:
    """SD3's resolution shift: `shift * t / (1 + (shift - 1) * t)`; > 1 spends more time near noise."""
    return shift * t / (1 + (shift - 1) * t)


class RectifiedFlow(Objective):
    """Flow matching on the straight path between data and Gaussian noise.

    Args:
        time_sampling: 'uniform' on [0, 1], or 'logit_normal' (sigmoid of a normal; SD3's default).
        logit_mean: mean of the normal before the sigmoid.
        logit_std: standard deviation of the normal before the sigmoid.
        shift: time shift applied after sampling (1 = none).
    """

    def __init__(
        self,
        time_sampling: Literal["uniform", "logit_normal"] = "logit_normal",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        shift: float = 1.0,
    ) -> None:
        self.time_sampling = time_sampling
        self.logit_mean = logit_mean
        self.logit_std = logit_std
        self.shift = shift

    def sample_time(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        if self.time_sampling == "uniform":
            t = torch.rand(n, device=device, generator=generator)
        else:
            t = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(n, device=device, generator=generator))
        return shift_time(t, self.shift)

    def loss(self, model: Denoiser, x0: Tensor, cond: Conditioning, t: Tensor | None = None, noise: Tensor | None = None) -> dict[str, Tensor]:
        """MSE between predicted and true velocity. Returns `loss` (scalar) and `loss_per_sample` `(B,)`."""
        t = self.sample_time(x0.shape[0], x0.device) if t is None else t  # (B,)
        noise = torch.randn_like(x0) if noise is None else noise  # (B, C, H, W)
        tb = t.view(-1, *([1] * (x0.dim() - 1)))
        x_t = (1 - tb) * x0 + tb * noise  # (B, C, H, W)
        v = model(x_t, t, cond)  # (B, C, H, W)
        per_sample = (v.float() - (noise - x0).float()).pow(2).flatten(1).mean(dim=1)  # (B,)
        return {"loss": per_sample.mean(), "loss_per_sample": per_sample}


class EulerSampler(Sampler):
    """First-order integration of the flow ODE from t = 1 to t = 0.

    Args:
        num_steps: number of model evaluations.
        shift: time shift of the step grid (1 = uniform steps).
    """

    def __init__(self, num_steps: int = 50, shift: float = 1.0) -> None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.num_steps = num_steps
        self.shift = shift

    def timesteps(self, device: torch.device | None = None, num_steps: int | None = None) -> Tensor:
        """`(num_steps + 1,)` decreasing times from 1 to 0."""
        return shift_time(torch.linspace(1.0, 0.0, (num_steps or self.num_steps) + 1, device=device), self.shift)

    @torch.no_grad()
    def sample(self, fn: DenoiserFn, noise: Tensor, num_steps: int | None = None) -> Tensor:
        ts = self.timesteps(noise.device, num_steps)
        x = noise
        for t, t_next in zip(ts[:-1], ts[1:], strict=False):
            v = fn(x, t.expand(x.shape[0]))  # (B, C, H, W)
            x = x + (t_next - t) * v
        return x
