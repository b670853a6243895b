"""Named streams: what the diffusion stage noises, predicts and integrates.

A task diffuses one or more named tensors together: `{"image": x}` for text-to-image, `{"image": x,
"text": y}` for a joint image-text model (each stream under its own time in training). Objectives,
samplers and guidance take either a plain tensor (one stream, called "image", and a model called as
`model(x, t, cond) -> Tensor`) or a dict of streams (a model called as `model(xs, ts, cond) -> dict`
with one time `(B,)` per stream, predictions per stream). These helpers turn one form into the other,
so the arithmetic is written once, per stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

IMAGE = "image"
"""The name of the single stream a plain tensor stands for."""

Streams = dict[str, Tensor]
"""Stream name -> tensor `(B, ...)`; every stream has the same batch size."""


def as_streams(x: Tensor | Mapping[str, Tensor]) -> tuple[Streams, bool]:
    """`x` as a dict of streams, and whether it was a plain tensor (one stream, `IMAGE`)."""
    if isinstance(x, Mapping):
        if not x:
            raise ValueError("no streams to diffuse: the dict of streams is empty")
        sizes = {name: v.shape[0] for name, v in x.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"streams differ in batch size: {sizes}")
        return dict(x), False
    return {IMAGE: x}, True


def like_input(streams: Streams, single: bool) -> Tensor | Streams:
    """The inverse of `as_streams`: the `IMAGE` tensor when the input was a plain tensor."""
    return streams[IMAGE] if single else streams


def per_stream(value: Tensor | Mapping[str, Tensor] | None, names: list[str], what: str) -> dict[str, Tensor] | None:
    """A per-stream argument (times, noise): one tensor for every stream, or a dict naming each stream."""
    if value is None or not isinstance(value, Mapping):
        return None if value is None else dict.fromkeys(names, value)
    missing, extra = sorted(set(names) - set(value)), sorted(set(value) - set(names))
    if missing or extra:
        gaps = "; ".join(part for part in (f"missing {missing}" if missing else "", f"extra {extra}" if extra else "") if part)
        raise ValueError(f"{what} names the streams {sorted(value)}; the data has {names} ({gaps})")
    return {name: value[name] for name in names}


def call_streams(model: Callable, xs: Streams, ts: Streams, cond, single: bool) -> Streams:
    """Call a denoiser in its own form: `model(x, t, cond) -> Tensor` for one plain stream,
    `model(xs, ts, cond) -> dict` otherwise; the predictions come back as streams."""
    if single:
        return {IMAGE: model(xs[IMAGE], ts[IMAGE], cond)}
    out = model(xs, ts, cond)
    if not isinstance(out, Mapping) or set(out) != set(xs):
        got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise ValueError(f"a multi-stream denoiser must return one prediction per stream {sorted(xs)}, got {got}")
    return dict(out)
