"""Contracts of the diffusion stage.

An `Objective` owns the noise: it corrupts clean data, calls the denoiser and returns a
dict of loss terms with `"loss"`. A `Sampler` owns inference: it integrates a denoiser
function `fn(x_t, t) -> prediction` from pure noise to data, reading predictions through a
`SamplingObjective` (the schedule, the input scaling and `to_x0_eps`). Guidance is a separate
piece that builds such a function from a conditional model (`kit.diffusion.guidance`).
Data is one tensor or a dict of named streams (`kit.diffusion.streams`), each noised with its
own time in training and integrated together in sampling.
Time is continuous in [0, 1] everywhere; t = 1 is pure noise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from kit.diffusion.schedules import NoiseSchedule
from kit.diffusion.streams import Streams
from kit.types import Conditioning


class Denoiser(Protocol):
    """`model(x (B, ...), t (B,), cond) -> prediction`; for named streams `model(xs, ts, cond) -> {name: prediction}`."""

    def __call__(self, x: Tensor | Streams, t: Tensor | Streams, cond: Conditioning) -> Tensor | Streams: ...


DenoiserFn = Callable[[Tensor | Streams, Tensor], Tensor | Streams]
"""A denoiser with its conditioning (and guidance) already bound: `fn(x_t, t (B,)) -> prediction`, where
`x_t` and the prediction are a tensor `(B, ...)` or a dict of named streams (all at the sampler's time t)."""


@runtime_checkable
class SamplingObjective(Protocol):
    """What a sampler needs of an objective: its schedule, what the network is fed, how a prediction
    turns into `(x0, eps)`, and the smallest time it was trained at. Every `DiffusionObjective` has these."""

    schedule: NoiseSchedule

    @property
    def t_min(self) -> float: ...

    def model_input(self, x_t: Tensor, t: Tensor) -> Tensor: ...

    def to_x0_eps(self, pred: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]: ...


def check_sampling_objective(objective: object) -> None:
    """Raise a one-line `TypeError` when `objective` lacks what samplers read (see `SamplingObjective`)."""
    missing = [name for name in ("schedule", "t_min", "model_input", "to_x0_eps") if not hasattr(objective, name)]
    if missing:
        raise TypeError(f"{type(objective).__name__} cannot be sampled from: it lacks {', '.join(missing)} (see kit.diffusion.base.SamplingObjective)")


class Objective(ABC):
    """A training objective over continuous time in [0, 1]."""

    @abstractmethod
    def sample_time(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """`(n,)` training times drawn from the objective's time distribution."""

    @abstractmethod
    def loss(
        self, model: Denoiser, x0: Tensor | Streams, cond: Conditioning, t: Tensor | Streams | None = None, noise: Tensor | Streams | None = None
    ) -> dict[str, Tensor]:
        """Loss terms for clean data `x0 (B, ...)` or named streams; `t` (per stream) and `noise` are drawn when not given."""


class Sampler(ABC):
    """Integrates a denoiser function from noise (t = 1) to data (t = 0)."""

    num_steps: int

    @abstractmethod
    def sample(self, fn: DenoiserFn, noise: Tensor | Streams, objective: SamplingObjective, num_steps: int | None = None) -> Tensor | Streams:
        """`noise (B, ...)` (or named streams) -> samples of the same shape, reading `fn`'s predictions
        through `objective`, in `num_steps` steps (the sampler's own when None)."""
