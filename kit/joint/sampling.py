"""The sampling modes of the joint image-text model (`kit.joint.task`), all from one network.

Every mode integrates the streams it samples with the task's sampler (DPM-Solver++ in `recipes/unidiffuser.yaml`)
while the other stream is held fixed: clean at time 0 when it is the condition, pure noise at time 1 when it is
marginalised. Guidance combines, in one batched forward per step, the conditional prediction with an
unconditional one: the other stream at time 1 (`guidance="free"`, UniDiffuser's CFG for free) or the learned null
text at time 0 (`guidance="null"`, the baseline; text-to-image only). Joint sampling guides each stream against
its marginal, `marginal + scale * (joint - marginal)` (UniDiffuser's `(1 + s) joint - s marginal` with `scale = 1 + s`).

A masked (discrete) text stream (`kit.joint.masked`) is sampled beside the image: at each of the sampler's
steps its `Unmasker` reveals tokens down to the step's level, and its predictions are guided as log-probabilities;
when no continuous stream is sampled (captions, the text marginal) the steps are the sampler's grid, walked alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import nonmember
from typing import Any

import torch
from torch import Tensor

from kit.diffusion.base import DenoiserFn
from kit.joint.backbone import IMAGE, IMAGE_EMBED, MODALITY, TEXT
from kit.joint.masked import Unmasker
from kit.types import Choice

OTHER = {IMAGE: TEXT, TEXT: IMAGE}
"""The other modality."""


class Mode(Choice):
    """The sampling modes of the joint model (`JointImageText.sample`); a plain string of the same name works too."""

    label = nonmember("sampling mode")
    t2i = "t2i"
    """images given captions: image at t, text at 0"""
    i2t = "i2t"
    """captions given images: text at t, image at 0"""
    joint = "joint"
    """image-caption pairs: both at t"""
    image = "image"
    """the image marginal: text at 1"""
    text = "text"
    """the text marginal: image at 1"""
    image_variation = "image_variation"
    """i2t, then t2i of that caption"""
    text_variation = "text_variation"
    """t2i, then i2t of that image"""
    gibbs = "gibbs"
    """a joint pair, then rounds of (i2t, t2i)"""


class Guidance(Choice):
    """The unconditional branch of guidance: `free`, the other stream marginalised at time 1 (UniDiffuser's CFG
    for free), or `null`, a learned null text at time 0 (the baseline; text-to-image only)."""

    label = nonmember("guidance")
    free = "free"
    null = "null"


TEXT_TO_IMAGE_MODES = (Mode.t2i, Mode.text_variation)
"""The modes that start from captions (and may guide with the learned null text)."""
IMAGE_TO_TEXT_MODES = (Mode.i2t, Mode.image_variation)
"""The modes that start from images."""
UNCONDITIONAL_MODES = (Mode.joint, Mode.image, Mode.text, Mode.gibbs)
"""The modes that draw `num_samples` from nothing."""


@dataclass
class JointSample:
    """What a sampling mode returns: images `(B, 3, H, W)` in [-1, 1], captions, and the text latents `(B, L, d)`
    (the token ids `(B, L)` of a masked text stream) they were decoded from; a mode that produces no images (or no
    captions) leaves that field None."""

    images: Tensor | None = None
    captions: list[str] | None = None
    text_latents: Tensor | None = None


def denoiser(
    task: Any,
    sampled: tuple[str, ...],
    given: dict[str, tuple[Tensor, float]],
    scale: float | dict[str, float],
    guidance: Guidance,
    free_noise: dict[str, Tensor],
    text: Unmasker | None = None,
) -> DenoiserFn:
    """The function the sampler integrates: `fn(xs, t) -> predictions` of the `sampled` streams at time t, the
    `given` streams held at their `(value, time)`; guided by `scale` (one, or one per modality) against the `guidance` branch, whose
    marginalised streams are `free_noise` at time 1. Streams of one modality (`MODALITY`: the image's pixels and
    its embedding) are guided together: their unconditional branch marginalises the other modality. A masked text
    stream being sampled lives in `text`: `fn` feeds it at its level and hands it the guided log-probabilities
    (and returns predictions of the continuous streams only)."""
    backbone = task.backbone
    modalities = list(dict.fromkeys(MODALITY[n] for n in sampled))  # in order, each once
    scales = scale if isinstance(scale, dict) else dict.fromkeys(modalities, scale)
    guided = any(scales[m] != 1.0 for m in modalities)

    def fn(x: dict[str, Tensor], t: Tensor) -> dict[str, Tensor]:
        b = t.shape[0]
        zeros, ones = torch.zeros(b, device=t.device, dtype=t.dtype), torch.ones(b, device=t.device, dtype=t.dtype)
        xs, ts = dict(x), dict.fromkeys(sampled, t)
        if text is not None:
            xs[TEXT], share = text.at(t)  # (B, L), (B,)
            ts[TEXT] = share.to(t.dtype)
        for n, (value, time) in given.items():
            ts[n] = torch.full_like(t, time)
            xs[n] = task.stream_input(n, value, ts[n])
        branches = [(xs, ts)]
        if guided:
            for modality in modalities:  # one unconditional branch per sampled modality: the other one marginalised (or null)
                bx, bt = dict(xs), dict(ts)
                for other in task.streams_of(OTHER[modality]):
                    if guidance == Guidance.free:
                        bx[other], bt[other] = task.stream_input(other, free_noise[other], ones), ones
                    else:
                        bx[other], bt[other] = task.null_text_batch(b), zeros
                branches.append((bx, bt))
        names = list(xs)
        stacked = {n: torch.cat([bx[n] for bx, _ in branches]) for n in names}
        times = {n: torch.cat([bt[n] for _, bt in branches]) for n in names}
        preds = {n: p.split(b) for n, p in backbone(stacked, times, None).items()}
        if text is not None:  # a discrete stream is guided as log-probabilities
            preds[TEXT] = [p.float().log_softmax(dim=-1) for p in preds[TEXT]]
        if not guided:
            out = {n: preds[n][0] for n in sampled}
        else:
            branch = {n: 1 + modalities.index(MODALITY[n]) for n in sampled}
            out = {n: preds[n][branch[n]] + scales[MODALITY[n]] * (preds[n][0] - preds[n][branch[n]]) for n in sampled}
        if text is not None:
            text.update(out.pop(TEXT))
        return out

    return fn


def _noise(task: Any, n: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Fresh noise for every stream, `n` samples."""
    out = {
        IMAGE: torch.randn(n, *task.sample_shape, device=task.device, generator=generator),
        TEXT: task.codec.noise(n, task.device, generator),
    }
    if IMAGE_EMBED in task.image_streams:
        out[IMAGE_EMBED] = torch.randn(n, task.backbone.embed_tokens, task.backbone.embed_dim, device=task.device, generator=generator)
    return out


def _integrate(task, sampled, given, scale, guidance, num_steps, generator, n) -> dict[str, Tensor]:
    """Sample the modalities `sampled` ('image', 'text') of `n` samples, every stream of each, with the others `given`."""
    streams = tuple(s for m in sampled for s in task.streams_of(m))
    start, free = _noise(task, n, generator), _noise(task, n, generator)
    text = None
    if TEXT in streams and task.discrete_text:
        text = Unmasker(task.codec, n, task.device, getattr(task.sampler, "shift", 1.0), task.text_temperature, generator)
    fn = denoiser(task, streams, given, scale, guidance, free, text)
    continuous = {s: start[s] for s in streams if text is None or s != TEXT}
    if continuous:
        out = task.sampler.sample(fn, continuous, task.objective, num_steps)
    else:  # the masked text alone: walk the sampler's grid
        out = {}
        for t in task.sampler.timesteps(task.objective, task.device, num_steps)[:-1]:
            fn({}, t.float().expand(n))
    return out | ({TEXT: text.finish()} if text is not None else {})


def _images_in(task: Any, images) -> dict[str, Tensor]:
    """Check user images `(B, 3, H, W)` in [-1, 1] at the task's size and return them as the image modality's streams."""
    size = task.image_size
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (size, size):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, {size}, {size}) tensor in [-1, 1], the size this model was trained at; got {shape}")
    return task.image_streams_of(images.to(task.device))


def sample(
    task: Any,
    mode: Mode | str,
    *,
    prompts: list[str] | None = None,
    images: Tensor | None = None,
    num_samples: int | None = None,
    guidance_scale: float | None = None,
    guidance: Guidance | str | None = None,
    num_steps: int | None = None,
    gibbs_steps: int | None = None,
    seed: int = 0,
) -> JointSample:
    """Sample from the joint model in `mode` (a `Mode` or its name; see `kit.joint.task`).

    Args:
        task: the trained joint model.
        mode: what to sample.
        prompts: the captions of `t2i` and `text_variation`.
        images: `(B, 3, H, W)` in [-1, 1], the images of `i2t` and `image_variation`.
        num_samples: how many pairs (or marginal samples) `joint`, `image`, `text` and `gibbs` draw.
        guidance_scale: the guidance scale of the conditional and joint steps, both streams (None: the task's
            defaults, `guidance_scale` for the image and `text_guidance_scale` for the text).
        guidance: 'free' or 'null'; 'null' guides text-to-image only. None: the task's default in t2i and
            text_variation, 'free' in the other modes.
        num_steps: sampler steps (the sampler's own when None).
        gibbs_steps: (i2t, t2i) rounds of `gibbs` (the task's default when None).
        seed: seed of every noise draw.
    """
    mode = Mode.of(mode)
    scale = task.guidance_scale if guidance_scale is None else guidance_scale
    text_scale = task.text_guidance_scale if guidance_scale is None else guidance_scale
    text_to_image = mode in TEXT_TO_IMAGE_MODES
    guidance = Guidance.of((task.guidance if text_to_image else Guidance.free) if guidance is None else guidance)  # a null default guides t2i only
    if guidance == Guidance.null and scale != 1.0:
        if not task.has_null_text:
            raise ValueError("guidance='null' needs a model trained with a learned null text (null_text_prob > 0); this one guides for free")
        if not text_to_image:
            raise ValueError(f"guidance='null' guides text-to-image only (a learned null text); mode {str(mode)!r} guides for free")
    needs = {"prompts": TEXT_TO_IMAGE_MODES, "images": IMAGE_TO_TEXT_MODES}
    given = {"prompts": prompts, "images": images}
    for what, modes in needs.items():
        if mode in modes and not (given[what] is not None and len(given[what])):
            raise ValueError(f"mode {str(mode)!r} samples from {what}: pass {what}=...")
    if mode in TEXT_TO_IMAGE_MODES and not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"mode {str(mode)!r} got an empty caption: pass a caption for every sample (an unconditional image is mode 'image')")
    if mode in UNCONDITIONAL_MODES and not (num_samples and num_samples > 0):
        raise ValueError(f"mode {str(mode)!r} draws unconditional samples: pass num_samples >= 1")
    generator = torch.Generator(device=task.device).manual_seed(seed)

    def t2i(y: Tensor) -> dict[str, Tensor]:
        return _integrate(task, (IMAGE,), {TEXT: (y, 0.0)}, scale, guidance, num_steps, generator, y.shape[0])

    def i2t(x: dict[str, Tensor]) -> Tensor:
        given = {n: (v, 0.0) for n, v in x.items()}
        return _integrate(task, (TEXT,), given, text_scale, Guidance.free, num_steps, generator, x[IMAGE].shape[0])[TEXT]

    with task.sampling():
        x = y = None
        if mode in TEXT_TO_IMAGE_MODES:
            task.codec.captions.encode(list(prompts))  # a caption the text decoder cannot write is a clear error here
            x = t2i(task.text_latents(list(prompts)))
            y = i2t(x) if mode == Mode.text_variation else None
        elif mode in IMAGE_TO_TEXT_MODES:
            y = i2t(_images_in(task, images))
            x = t2i(y) if mode == Mode.image_variation else None
        elif mode in (Mode.image, Mode.text):
            noise = _noise(task, num_samples, generator)
            given = {n: (noise[n], 1.0) for n in task.streams_of(OTHER[mode])}
            out = _integrate(task, (mode,), given, 1.0, Guidance.free, num_steps, generator, num_samples)
            x, y = (out, None) if mode == IMAGE else (None, out[TEXT])
        else:  # joint, gibbs
            out = _integrate(task, (IMAGE, TEXT), {}, {IMAGE: scale, TEXT: text_scale}, Guidance.free, num_steps, generator, num_samples)
            x, y = {n: out[n] for n in task.image_streams}, out[TEXT]
            for _ in range(task.gibbs_steps if gibbs_steps is None else gibbs_steps) if mode == Mode.gibbs else ():
                y = i2t(x)
                x = t2i(y)
        return JointSample(
            images=None if x is None else task.from_model_space(x[IMAGE]),
            captions=None if y is None else task.codec.decode(y),
            text_latents=y,
        )
