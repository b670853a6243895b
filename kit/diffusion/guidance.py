"""Classifier-free guidance (Ho & Salimans, 2022) as a piece composed around any denoiser."""

from __future__ import annotations

import torch

from kit.diffusion.base import Denoiser, DenoiserFn
from kit.types import Conditioning


def classifier_free_guidance(model: Denoiser, cond: Conditioning, null: Conditioning, scale: float) -> DenoiserFn:
    """`fn(x, t) = null_pred + scale * (cond_pred - null_pred)`, one batched forward per call.

    Args:
        model: the conditional denoiser `model(x, t, cond)`.
        cond: conditioning of the batch.
        null: the head's null conditioning, same batch size.
        scale: guidance scale; 1 is plain conditional sampling (no extra forward), 0 unconditional.
    """
    if scale == 1.0:
        return lambda x, t: model(x, t, cond)
    if scale == 0.0:
        return lambda x, t: model(x, t, null)
    both = Conditioning.cat([cond, null])

    def fn(x, t):
        pred_cond, pred_null = model(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        return pred_null + scale * (pred_cond - pred_null)

    return fn
