"""Classifier-free guidance (Ho & Salimans, 2022) as a piece composed around any denoiser.

Options from later work: guidance rescale (Lin et al. 2023, "Common diffusion noise schedules
and sample steps are flawed") pulls the guided prediction's standard deviation back towards
the conditional one; a guidance interval (Kynkaanniemi et al. 2024) applies guidance only for
times inside `[low, high]` and plain conditional prediction elsewhere.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kit.diffusion.base import Denoiser, DenoiserFn
from kit.types import Conditioning


def rescale_guidance(guided: Tensor, conditional: Tensor, phi: float) -> Tensor:
    """Mix `guided` with itself rescaled to `conditional`'s per-sample standard deviation, by `phi`."""
    dims = list(range(1, guided.dim()))
    std_cond = conditional.std(dim=dims, keepdim=True)
    std_guided = guided.std(dim=dims, keepdim=True).clamp(min=1e-8)
    return phi * guided * (std_cond / std_guided) + (1 - phi) * guided


def classifier_free_guidance(
    model: Denoiser,
    cond: Conditioning,
    null: Conditioning,
    scale: float,
    rescale: float = 0.0,
    interval: tuple[float, float] = (0.0, 1.0),
) -> DenoiserFn:
    """`fn(x, t) = null_pred + scale * (cond_pred - null_pred)`, one batched forward per call.

    Args:
        model: the conditional denoiser `model(x, t, cond)`.
        cond: conditioning of the batch.
        null: the head's null conditioning, same batch size.
        scale: guidance scale; 1 is plain conditional sampling (no extra forward), 0 unconditional.
        rescale: guidance-rescale factor phi in [0, 1] (0 = off).
        interval: `(low, high)` times between which guidance applies; outside, the conditional prediction.
    """
    if scale == 1.0:
        return lambda x, t: model(x, t, cond)
    if scale == 0.0:
        return lambda x, t: model(x, t, null)
    both = Conditioning.cat([cond, null])
    low, high = interval

    def fn(x: Tensor, t: Tensor) -> Tensor:
        pred_cond, pred_null = model(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        guided = pred_null + scale * (pred_cond - pred_null)
        if rescale > 0:
            guided = rescale_guidance(guided, pred_cond, rescale)
        inside = ((t >= low) & (t <= high)).view(-1, *([1] * (x.dim() - 1)))
        return torch.where(inside, guided, pred_cond)

    return fn
