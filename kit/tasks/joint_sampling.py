"""The sampling modes of the joint image-text model (`kit.tasks.joint`), all from one network.

Every mode integrates the streams it samples with the task's sampler (DPM-Solver++ in `recipes/unidiffuser.yaml`)
while the other stream is held fixed: clean at time 0 when it is the condition, pure noise at time 1 when it is
marginalised. Guidance combines, in one batched forward per step, the conditional prediction with an
unconditional one: the other stream at time 1 (`guidance="free"`, UniDiffuser's CFG for free) or the learned null
text at time 0 (`guidance="null"`, the baseline; text-to-image only). Joint sampling guides each stream against
its marginal, `marginal + scale * (joint - marginal)` (UniDiffuser's `(1 + s) joint - s marginal` with `scale = 1 + s`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from kit.backbones.joint_uvit import IMAGE, IMAGE_EMBED, TEXT
from kit.diffusion.base import DenoiserFn
from kit.tasks.joint import MODALITY, MODES, JointImageText, JointSample

OTHER = {IMAGE: TEXT, TEXT: IMAGE}
"""The other modality."""


def denoiser(
    task: JointImageText, sampled: tuple[str, ...], given: dict[str, tuple[Tensor, float]], scale: float, guidance: str, free_noise: dict[str, Tensor]
) -> DenoiserFn:
    """The function the sampler integrates: `fn(xs, t) -> predictions` of the `sampled` streams at time t, the
    `given` streams held at their `(value, time)`; guided by `scale` against the `guidance` branch, whose
    marginalised streams are `free_noise` at time 1. Streams of one modality (`MODALITY`: the image's pixels and
    its embedding) are guided together: their unconditional branch marginalises the other modality."""
    objective, backbone = task.objective, task.backbone
    modalities = list(dict.fromkeys(MODALITY[n] for n in sampled))  # in order, each once

    def fn(x: dict[str, Tensor], t: Tensor) -> dict[str, Tensor]:
        b = t.shape[0]
        zeros, ones = torch.zeros(b, device=t.device, dtype=t.dtype), torch.ones(b, device=t.device, dtype=t.dtype)
        xs, ts = dict(x), dict.fromkeys(sampled, t)
        for n, (value, time) in given.items():
            ts[n] = torch.full_like(t, time)
            xs[n] = objective.model_input(value, ts[n])
        branches = [(xs, ts)]
        if scale != 1.0:
            for modality in modalities:  # one unconditional branch per sampled modality: the other one marginalised (or null)
                bx, bt = dict(xs), dict(ts)
                for other in task.streams_of(OTHER[modality]):
                    if guidance == "free":
                        bx[other], bt[other] = objective.model_input(free_noise[other], ones), ones
                    else:
                        bx[other], bt[other] = task.null_text.expand(b, *task.null_text.shape), zeros
                branches.append((bx, bt))
        names = list(xs)
        stacked = {n: torch.cat([bx[n] for bx, _ in branches]) for n in names}
        times = {n: torch.cat([bt[n] for _, bt in branches]) for n in names}
        preds = {n: p.split(b) for n, p in backbone(stacked, times, None).items()}
        if scale == 1.0:
            return {n: preds[n][0] for n in sampled}
        branch = {n: 1 + modalities.index(MODALITY[n]) for n in sampled}
        return {n: preds[n][branch[n]] + scale * (preds[n][0] - preds[n][branch[n]]) for n in sampled}

    return fn


def _noise(task: JointImageText, n: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Fresh noise for every stream, `n` samples."""
    out = {
        IMAGE: torch.randn(n, *task.sample_shape, device=task.device, generator=generator),
        TEXT: torch.randn(n, task.codec.num_latents, task.codec.latent_dim, device=task.device, generator=generator),
    }
    if IMAGE_EMBED in task.image_streams:
        out[IMAGE_EMBED] = torch.randn(n, task.backbone.embed_tokens, task.backbone.embed_dim, device=task.device, generator=generator)
    return out


def _integrate(task, sampled, given, scale, guidance, num_steps, generator, n) -> dict[str, Tensor]:
    """Sample the modalities `sampled` ('image', 'text') of `n` samples, every stream of each, with the others `given`."""
    streams = tuple(s for m in sampled for s in task.streams_of(m))
    start, free = _noise(task, n, generator), _noise(task, n, generator)
    fn = denoiser(task, streams, given, scale, guidance, free)
    return task.sampler.sample(fn, {s: start[s] for s in streams}, task.objective, num_steps)


def _images_in(task: JointImageText, images) -> dict[str, Tensor]:
    """Check user images `(B, 3, H, W)` in [-1, 1] at the task's size and return them as the image modality's streams."""
    size = task.hparams.get("image_size", 32)
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (size, size):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, {size}, {size}) tensor in [-1, 1], the size this model was trained at; got {shape}")
    return task.image_streams_of(images.to(task.device))


def sample(
    task: JointImageText,
    mode: str,
    *,
    prompts: list[str] | None = None,
    images: Tensor | None = None,
    num_samples: int | None = None,
    guidance_scale: float | None = None,
    guidance: str | None = None,
    num_steps: int | None = None,
    gibbs_steps: int | None = None,
    seed: int = 0,
) -> JointSample:
    """Sample from the joint model in `mode` (one of `MODES`, see `kit.tasks.joint`).

    Args:
        task: the trained joint model.
        mode: what to sample.
        prompts: the captions of `t2i` and `text_variation`.
        images: `(B, 3, H, W)` in [-1, 1], the images of `i2t` and `image_variation`.
        num_samples: how many pairs (or marginal samples) `joint`, `image`, `text` and `gibbs` draw.
        guidance_scale: the guidance scale of the conditional and joint steps (the task's default when None).
        guidance: 'free' or 'null'; 'null' guides text-to-image only. None: the task's default in t2i and
            text_variation, 'free' in the other modes.
        num_steps: sampler steps (the sampler's own when None).
        gibbs_steps: (i2t, t2i) rounds of `gibbs` (the task's default when None).
        seed: seed of every noise draw.
    """
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; modes: {', '.join(MODES)}")
    scale = task.guidance_scale if guidance_scale is None else guidance_scale
    text_to_image = mode in ("t2i", "text_variation")
    guidance = (task.guidance if text_to_image else "free") if guidance is None else guidance  # a null default guides t2i only
    task.check_guidance(guidance)
    if guidance == "null" and scale != 1.0:
        if task.null_text is None:
            raise ValueError("guidance='null' needs a model trained with a learned null text (null_text_prob > 0); this one guides for free")
        if not text_to_image:
            raise ValueError(f"guidance='null' guides text-to-image only (a learned null text); mode {mode!r} guides for free")
    needs = {"prompts": ("t2i", "text_variation"), "images": ("i2t", "image_variation")}
    given = {"prompts": prompts, "images": images}
    for what, modes in needs.items():
        if mode in modes and not (given[what] is not None and len(given[what])):
            raise ValueError(f"mode {mode!r} samples from {what}: pass {what}=...")
    if mode in ("joint", "image", "text", "gibbs") and not (num_samples and num_samples > 0):
        raise ValueError(f"mode {mode!r} draws unconditional samples: pass num_samples >= 1")
    generator = torch.Generator(device=task.device).manual_seed(seed)

    def t2i(y: Tensor) -> dict[str, Tensor]:
        return _integrate(task, (IMAGE,), {TEXT: (y, 0.0)}, scale, guidance, num_steps, generator, y.shape[0])

    def i2t(x: dict[str, Tensor]) -> Tensor:
        given = {n: (v, 0.0) for n, v in x.items()}
        return _integrate(task, (TEXT,), given, scale, "free", num_steps, generator, x[IMAGE].shape[0])[TEXT]

    with task.sampling():
        x = y = None
        if mode in ("t2i", "text_variation"):
            task.codec.captions.encode(list(prompts))  # a caption the text decoder cannot write is a clear error here
            x = t2i(task.text_latents(list(prompts)))
            y = i2t(x) if mode == "text_variation" else None
        elif mode in ("i2t", "image_variation"):
            y = i2t(_images_in(task, images))
            x = t2i(y) if mode == "image_variation" else None
        elif mode in ("image", "text"):
            noise = _noise(task, num_samples, generator)
            given = {n: (noise[n], 1.0) for n in task.streams_of(OTHER[mode])}
            out = _integrate(task, (mode,), given, 1.0, "free", num_steps, generator, num_samples)
            x, y = (out, None) if mode == IMAGE else (None, out[TEXT])
        else:  # joint, gibbs
            out = _integrate(task, (IMAGE, TEXT), {}, scale, "free", num_steps, generator, num_samples)
            x, y = {n: out[n] for n in task.image_streams}, out[TEXT]
            for _ in range(task.gibbs_steps if gibbs_steps is None else gibbs_steps) if mode == "gibbs" else ():
                y = i2t(x)
                x = t2i(y)
        return JointSample(
            images=None if x is None else task.from_model_space(x[IMAGE]),
            captions=None if y is None else task.codec.decode(y),
            text_latents=y,
        )


def load_joint(path: str | Path, **kwargs) -> JointImageText:
    """A joint model from its checkpoint (`kit.tasks.checkpoint.load_checkpoint`); another task's checkpoint is a
    one-line error naming both tasks."""
    from kit.tasks.checkpoint import load_checkpoint

    module = load_checkpoint(path, **kwargs)
    if not isinstance(module, JointImageText):
        name = getattr(type(module), "registry_name", type(module).__name__)
        raise ValueError(
            f"checkpoint {str(path)!r} holds a {name} model ({type(module).__name__}); the joint sampler needs a joint_image_text one (kit.tasks.JointImageText)"
        )
    return module
