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
from kit.diffusion.streams import Streams, as_streams, call_streams, like_input
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

    `x` is a tensor (the model is called as `model(x, t, cond)`) or a dict of named streams (called as
    `model(xs, ts, cond)` with every stream at time t); guidance applies to every stream's prediction.

    Args:
        model: the conditional denoiser.
        cond: conditioning of the batch.
        null: the head's null conditioning, same batch size.
        scale: guidance scale; 1 is plain conditional sampling (no extra forward), 0 unconditional.
        rescale: guidance-rescale factor phi in [0, 1] (0 = off).
        interval: `(low, high)` times between which guidance applies; outside, the conditional prediction.
    """

    def plain(c: Conditioning) -> DenoiserFn:
        def fn(x: Tensor | Streams, t: Tensor) -> Tensor | Streams:
            xs, single = as_streams(x)
            return like_input(call_streams(model, xs, dict.fromkeys(xs, t), c, single), single)

        return fn

    if scale == 1.0:
        return plain(cond)
    if scale == 0.0:
        return plain(null)
    both = Conditioning.cat([cond, null])
    low, high = interval

    def fn(x: Tensor | Streams, t: Tensor) -> Tensor | Streams:
        xs, single = as_streams(x)
        doubled, tt = {n: torch.cat([v, v]) for n, v in xs.items()}, torch.cat([t, t])
        preds = call_streams(model, doubled, dict.fromkeys(xs, tt), both, single)
        out = {}
        for n, v in xs.items():
            pred_cond, pred_null = preds[n].chunk(2)
            guided = pred_null + scale * (pred_cond - pred_null)
            if rescale > 0:
                guided = rescale_guidance(guided, pred_cond, rescale)
            inside = ((t >= low) & (t <= high)).view(-1, *([1] * (v.dim() - 1)))
            out[n] = torch.where(inside, guided, pred_cond)
        return like_input(out, single)

    return fn
