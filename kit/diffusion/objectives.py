"""Training objectives over a noise schedule, with four parameterisations of the model's output.

Every objective corrupts `x_t = alpha(t) x0 + sigma(t) eps` and regresses one of:

    eps        the noise                                    (DDPM, Ho et al. 2020)
    x0         the clean sample
    v          alpha * eps - sigma * x0                     (Salimans & Ho 2022)
    velocity   d x_t / dt = alpha' * x0 + sigma' * eps      (flow matching; eps - x0 on the straight path)

`to_x0_eps` turns any prediction back into (x0, eps), which is all the samplers need, so
every sampler runs with every objective. The loss compares the prediction with its own
target by default; `loss_space='velocity'` converts the prediction to a velocity first and
regresses the velocity, so that e.g. an x0-predicting network trains with a flow-matching
loss (Li & He 2025, "Back to Basics: Let Denoising Generative Models Denoise").
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from kit.diffusion.base import Denoiser, Objective
from kit.diffusion.schedules import DDPMSchedule, LinearFlow, NoiseSchedule
from kit.diffusion.streams import IMAGE, Streams, as_streams, call_streams, per_stream
from kit.types import Conditioning

Prediction = Literal["eps", "x0", "v", "velocity"]
LossSpace = Literal["prediction", "velocity"]
InputScaling = Literal["none", "signal"]
_TINY = 1e-8


def _bcast(t: Tensor, like: Tensor) -> Tensor:
    """`(B,)` -> `(B, 1, ..., 1)` to broadcast against `like`."""
    return t.view(-1, *([1] * (like.dim() - 1)))


def shift_time(t: Tensor, shift: float) -> Tensor:
    """SD3's resolution shift: `shift * t / (1 + (shift - 1) * t)`; > 1 spends more time near noise."""
    return shift * t / (1 + (shift - 1) * t)


class DiffusionObjective(Objective):
    """Regression of a parameterised prediction under a noise schedule.

    Args:
        schedule: the noise schedule.
        prediction: what the model outputs: 'eps', 'x0', 'v' or 'velocity'.
        loss_space: 'prediction' regresses the output on its own target; 'velocity' turns the
            output into a velocity (through `to_x0_eps`) and regresses the true velocity.
        sigma_min: in the velocity loss, sigma is clipped below at this value when the noise is
            recovered from an x0 prediction (the loss weight of x0 errors then stays finite at t -> 0).
        input_scaling: what the network is fed: 'none' gives it x_t; 'signal' gives it
            `x_t * alpha / sqrt(alpha^2 + sigma^2)`, which fades the input out as it becomes noise (0 at
            pure noise), so an x0-predicting network is not swamped by noise features where only the
            prompt can tell it what to draw. Training and every sampler apply the same scaling.
        stream_weights: the weight of each named stream's loss when several streams are diffused
            together (a stream not named weighs 1; one plain tensor is not weighted).
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        prediction: Prediction,
        loss_space: LossSpace = "prediction",
        sigma_min: float = 0.05,
        input_scaling: InputScaling = "none",
        stream_weights: dict[str, float] | None = None,
    ) -> None:
        if prediction not in ("eps", "x0", "v", "velocity"):
            raise ValueError(f"unknown prediction {prediction!r}; known: eps, x0, v, velocity")
        if loss_space not in ("prediction", "velocity"):
            raise ValueError(f"unknown loss_space {loss_space!r}; known: prediction, velocity")
        if input_scaling not in ("none", "signal"):
            raise ValueError(f"unknown input_scaling {input_scaling!r}; known: none, signal")
        if not 0.0 < sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in (0, 1), got {sigma_min}")
        self.schedule = schedule
        self.prediction = prediction
        self.loss_space = loss_space
        self.sigma_min = sigma_min
        self.input_scaling = input_scaling
        self.stream_weights = dict(stream_weights or {})
        if any(w < 0 for w in self.stream_weights.values()):
            raise ValueError(f"stream weights must be >= 0, got {self.stream_weights}")

    def model_input(self, x_t: Tensor, t: Tensor) -> Tensor:
        """What the network is fed at `(x_t, t)` (see `input_scaling`); the samplers call it too."""
        if self.input_scaling == "none":
            return x_t
        alpha, sigma, _, _ = self.coefficients(t, x_t)
        return x_t * alpha / (alpha**2 + sigma**2).sqrt()

    @property
    def t_min(self) -> float:
        """The smallest training time (samplers evaluate no later than this); 0 for continuous time."""
        return 0.0

    def coefficients(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """alpha, sigma, alpha', sigma' at `t`, broadcast against `like`."""
        alpha, sigma = self.schedule.alpha_sigma(t)
        d_alpha, d_sigma = self.schedule.derivatives(t)
        return tuple(_bcast(c.to(like.dtype), like) for c in (alpha, sigma, d_alpha, d_sigma))

    def from_x0_eps(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The prediction target for given clean data and noise."""
        alpha, sigma, d_alpha, d_sigma = self.coefficients(t, x0)
        if self.prediction == "eps":
            return eps
        if self.prediction == "x0":
            return x0
        if self.prediction == "v":
            return alpha * eps - sigma * x0
        return d_alpha * x0 + d_sigma * eps

    def to_x0_eps(self, pred: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Invert a prediction at `(x_t, t)` into `(x0, eps)`."""
        alpha, sigma, d_alpha, d_sigma = self.coefficients(t, x_t)
        if self.prediction == "eps":
            return (x_t - sigma * pred) / alpha.clamp(min=_TINY), pred
        if self.prediction == "x0":
            return pred, (x_t - alpha * pred) / sigma.clamp(min=_TINY)
        if self.prediction == "v":  # v = alpha eps - sigma x0
            det = alpha**2 + sigma**2
            return (alpha * x_t - sigma * pred) / det, (sigma * x_t + alpha * pred) / det
        det = alpha * d_sigma - sigma * d_alpha  # velocity = alpha' x0 + sigma' eps
        return (d_sigma * x_t - sigma * pred) / det, (alpha * pred - d_alpha * x_t) / det

    def loss(
        self,
        model: Denoiser,
        x0: Tensor | Streams,
        cond: Conditioning,
        t: Tensor | Streams | None = None,
        noise: Tensor | Streams | None = None,
    ) -> dict[str, Tensor]:
        """MSE between prediction and target, per stream.

        Args:
            model: the denoiser: `model(x, t, cond) -> Tensor` when `x0` is a tensor, `model(xs, ts, cond)
                -> dict` when it is a dict of named streams (`kit.diffusion.streams`).
            x0: clean data `(B, ...)`, or `{name: (B, ...)}`.
            cond: the conditioning, passed through to the model.
            t: times `(B,)`, one for every stream, or `{name: (B,)}` (independent times per stream);
                drawn per stream from the time distribution when None.
            noise: the noise, shaped like `x0` (or a dict like it); drawn when None.

        Returns `loss` (scalar: the weighted sum over streams of each stream's mean), `loss_per_sample`
        `(B,)` (the same sum per sample) and, with several streams, `loss/<name>` (scalar) and
        `loss_per_sample/<name>` `(B,)` per stream, unweighted (a task that masks some samples' streams
        out of the loss, as the joint model does for a stream given clean, weighs these itself).
        """
        streams, single = as_streams(x0)
        names = list(streams)
        times = per_stream(t, names, "t") or {n: self.sample_time(streams[n].shape[0], streams[n].device) for n in names}
        noises = per_stream(noise, names, "noise") or {n: torch.randn_like(x) for n, x in streams.items()}
        x_ts, inputs = {}, {}
        for n, x in streams.items():
            alpha, sigma, _, _ = self.coefficients(times[n], x)
            x_ts[n] = alpha * x + sigma * noises[n]  # (B, ...)
            inputs[n] = self.model_input(x_ts[n], times[n])
        preds = call_streams(model, inputs, times, cond, single)
        per_sample = {n: self._per_sample_error(preds[n], streams[n], x_ts[n], noises[n], times[n]) for n in names}  # (B,) each
        if single:
            return {"loss": per_sample[IMAGE].mean(), "loss_per_sample": per_sample[IMAGE]}
        weights = {n: self.stream_weights.get(n, 1.0) for n in names}
        terms = {f"loss/{n}": per_sample[n].mean() for n in names} | {f"loss_per_sample/{n}": per_sample[n] for n in names}
        terms["loss"] = sum(weights[n] * terms[f"loss/{n}"] for n in names)
        terms["loss_per_sample"] = sum(weights[n] * per_sample[n] for n in names)
        return terms

    def _per_sample_error(self, pred: Tensor, x0: Tensor, x_t: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """`(B,)` mean squared error of one stream's prediction against its target (see `loss_space`)."""
        if self.loss_space == "velocity" and self.prediction != "velocity":
            pred, target = self._velocity(pred.float(), x_t.float(), t), self._velocity(x0.float(), x_t.float(), t, x0_given=True)
        else:
            target = self.from_x0_eps(x0, noise, t)
        return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)

    def _velocity(self, pred: Tensor, x_t: Tensor, t: Tensor, x0_given: bool = False) -> Tensor:
        """The velocity `alpha' x0 + sigma' eps` implied by a prediction (or by the true x0 when
        `x0_given`) at `(x_t, t)`; with x0 predictions the noise is `(x_t - alpha x0) / max(sigma, sigma_min)`,
        so prediction and target are clipped alike and their difference is a weighted x0 error."""
        alpha, sigma, d_alpha, d_sigma = self.coefficients(t, x_t)
        if x0_given or self.prediction == "x0":
            x0 = pred
            eps = (x_t - alpha * x0) / sigma.clamp(min=self.sigma_min)
        else:
            x0, eps = self.to_x0_eps(pred, x_t, t)
        return d_alpha * x0 + d_sigma * eps


class RectifiedFlow(DiffusionObjective):
    """Flow matching on the straight path (Liu et al. 2022; Esser et al. 2024).

    Args:
        prediction: what the network outputs: 'velocity' (the usual flow-matching model) or 'x0'
            (the clean image; Li & He 2025). The samplers read either through `to_x0_eps`.
        loss_space: 'velocity' regresses the velocity implied by the output (for x0 predictions an
            x0 error weighted by about 1/t^2: low-noise detail dominates); 'prediction' regresses
            the output itself (for x0 predictions the plain x0 error, every time weighted alike).
        sigma_min: the clip of t in the velocity loss of x0 predictions.
        input_scaling: 'none' feeds the network x_t; 'signal' feeds it `x_t (1 - t) / sqrt((1 - t)^2 + t^2)`
            (see `DiffusionObjective`).
        time_sampling: 'uniform' on [0, 1], or 'logit_normal' (sigmoid of a normal; SD3's default).
        logit_mean: mean of the normal before the sigmoid.
        logit_std: standard deviation of the normal before the sigmoid.
        shift: time shift applied after sampling (1 = none; SD3 uses more for larger images).
        terminal_fraction: the share of each batch trained at t = 1 exactly (pure noise, where the
            network sees nothing but the prompt): the prompt -> layout regression that the rest of
            the time distribution teaches only slowly (docs/efficiency.md). 0 is off.
        stream_weights: the loss weight of each named stream (see `DiffusionObjective`).
    """

    def __init__(
        self,
        time_sampling: Literal["uniform", "logit_normal"] = "logit_normal",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        shift: float = 1.0,
        prediction: Literal["velocity", "x0"] = "velocity",
        loss_space: LossSpace = "velocity",
        sigma_min: float = 0.05,
        input_scaling: InputScaling = "none",
        terminal_fraction: float = 0.0,
        stream_weights: dict[str, float] | None = None,
    ) -> None:
        if prediction not in ("velocity", "x0"):
            raise ValueError(f"RectifiedFlow predicts 'velocity' or 'x0', got {prediction!r}")
        super().__init__(LinearFlow(), prediction, loss_space=loss_space, sigma_min=sigma_min, input_scaling=input_scaling, stream_weights=stream_weights)
        self.time_sampling = time_sampling
        self.logit_mean = logit_mean
        self.logit_std = logit_std
        self.shift = shift
        if not 0.0 <= terminal_fraction < 1.0:
            raise ValueError(f"terminal_fraction must be in [0, 1), got {terminal_fraction}")
        self.terminal_fraction = terminal_fraction

    def sample_time(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        if self.time_sampling == "uniform":
            t = torch.rand(n, device=device, generator=generator)
        else:
            t = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(n, device=device, generator=generator))
        t = shift_time(t, self.shift)  # (n,)
        if self.terminal_fraction > 0:
            terminal = torch.rand(n, device=device, generator=generator) < self.terminal_fraction  # (n,)
            t = torch.where(terminal, torch.ones_like(t), t)
        return t


class DDPM(DiffusionObjective):
    """Denoising diffusion on a discrete variance-preserving schedule, steps drawn uniformly.

    Args:
        schedule: beta schedule: 'linear', 'scaled_linear' or 'cosine'.
        prediction: 'eps', 'v' or 'x0'.
        num_train_steps: number of discrete steps T.
        stream_weights: the loss weight of each named stream (see `DiffusionObjective`).
    """

    def __init__(
        self,
        schedule: Literal["linear", "scaled_linear", "cosine"] = "linear",
        prediction: Literal["eps", "v", "x0"] = "eps",
        num_train_steps: int = 1000,
        stream_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__(DDPMSchedule(schedule, num_train_steps), prediction, stream_weights=stream_weights)
        self.num_train_steps = num_train_steps

    @property
    def t_min(self) -> float:
        return 1.0 / self.num_train_steps

    def sample_time(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        steps = torch.randint(0, self.num_train_steps, (n,), device=device, generator=generator)
        return (steps + 1).float() / self.num_train_steps
