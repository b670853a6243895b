"""Contracts of the diffusion stage.

An `Objective` owns the noise: it corrupts clean data, calls the denoiser and returns a
dict of loss terms with `"loss"`. A `Sampler` owns inference: it integrates a denoiser
function `fn(x_t, t) -> prediction` from pure noise to data. Guidance is a separate piece
that builds such a function from a conditional model (`kit.diffusion.guidance`).
Time is continuous in [0, 1] everywhere; t = 1 is pure noise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from kit.types import Conditioning


class Denoiser(Protocol):
    def __call__(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor: ...


DenoiserFn = Callable[[Tensor, Tensor], Tensor]
"""A denoiser with its conditioning (and guidance) already bound: `fn(x_t (B,...), t (B,)) -> prediction`."""


class Objective(ABC):
    """A training objective over continuous time in [0, 1]."""

    @abstractmethod
    def sample_time(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """`(n,)` training times drawn from the objective's time distribution."""

    @abstractmethod
    def loss(self, model: Denoiser, x0: Tensor, cond: Conditioning, t: Tensor | None = None, noise: Tensor | None = None) -> dict[str, Tensor]:
        """Loss terms for clean data `x0 (B, ...)`; `t` and `noise` are drawn when not given."""


class Sampler(ABC):
    """Integrates a denoiser function from noise (t = 1) to data (t = 0)."""

    num_steps: int

    @abstractmethod
    def sample(self, fn: DenoiserFn, noise: Tensor, objective: Objective, num_steps: int | None = None) -> Tensor:
        """`noise (B, ...)` -> samples of the same shape, reading `fn`'s predictions through `objective`,
        in `num_steps` steps (the sampler's own when None)."""
