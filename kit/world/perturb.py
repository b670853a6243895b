"""Small, seeded image corruptions used to test that the oracle is robust (not a lookup of exact bytes),
and `redraw`: a scene drawn by another rasteriser, as a model draws it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from kit.world.render import BACKGROUND, SIZE_FRACTION, object_center
from kit.world.scene import COLOURS, GRID, Scene

PERTURBATIONS = ("noise", "blur", "colour_jitter", "all", "strong_blur", "resample", "jpeg")


def gaussian_blur(x: np.ndarray, sigma: float, radius: int | None = 2) -> np.ndarray:
    """Separable Gaussian blur over the first two (spatial) axes of `(H, W)` or `(H, W, C)`, edges replicated;
    `radius` taps each side (5 taps by default; None: 3 sigma, at least 1)."""
    radius = max(1, int(np.ceil(3 * sigma))) if radius is None else radius
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        p = np.pad(x, pad, mode="edge")
        x = sum(w * np.take(p, np.arange(i, i + x.shape[axis]), axis=axis) for i, w in enumerate(taps))
    return x


def resample(x: np.ndarray, factor: float) -> np.ndarray:
    """Down-scale `(H, W, 3)` uint8 by `factor` (bilinear, antialiased) and back up (bicubic): resampling blur."""
    h, w = x.shape[:2]
    small = Image.fromarray(x).resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BILINEAR)
    return np.asarray(small.resize((w, h), Image.BICUBIC))


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip `(H, W, 3)` uint8 through JPEG at `quality` (block artefacts, chroma subsampling)."""
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def perturb(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    noise_std: float = 6.0,
    blur_sigma: tuple[float, float] = (0.4, 0.8),
    gain: float = 0.05,
    offset: float = 8.0,
    strong_blur_sigma: tuple[float, float] = (0.8, 1.2),
    resample_factor: tuple[float, float] = (0.5, 0.75),
    jpeg_quality: tuple[int, int] = (50, 80),
) -> np.ndarray:
    """Corrupt an `(H, W, 3)` uint8 image.

    Args:
        image: the clean render.
        kind: 'noise' (Gaussian, `noise_std` in 0-255 units), 'blur' (Gaussian, sigma drawn from `blur_sigma` px),
            'colour_jitter' (per-channel gain in 1 +- `gain` and offset in +- `offset`), 'all' (blur, jitter, noise),
            'strong_blur' (sigma from `strong_blur_sigma`, the softness of generated samples), 'resample' (down by a
            factor from `resample_factor` and back up) or 'jpeg' (a quality from `jpeg_quality`).
        rng: the random generator.
    """
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")
    if kind == "resample":
        return resample(image, float(rng.uniform(*resample_factor)))
    if kind == "jpeg":
        return jpeg(image, int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1)))
    x = image.astype(np.float32)
    if kind == "strong_blur":
        x = gaussian_blur(x, float(rng.uniform(*strong_blur_sigma)))
    if kind in ("blur", "all"):
        x = gaussian_blur(x, float(rng.uniform(*blur_sigma)))
    if kind in ("colour_jitter", "all"):
        x = x * rng.uniform(1 - gain, 1 + gain, 3) + rng.uniform(-offset, offset, 3)
    if kind in ("noise", "all"):
        x = x + rng.normal(0.0, noise_std, x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


REDRAWN = "redrawn"
"""The oracle-check condition whose images come from `redraw` instead of the renderer."""

_OUTLINES = {  # unit-radius outlines, y down, as `kit.world.render.shape_mask` defines the shapes
    "square": ((-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)),
    "diamond": ((0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)),
    "triangle": ((0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)),
}


def redraw(
    scene: Scene,
    size: int,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.88, 1.12),
    shift: float = 1.5,
    turn: float = 8.0,
    colour_offset: float = 12.0,
) -> np.ndarray:
    """The scene drawn by another rasteriser than the renderer (PIL polygons and ellipses at 4x, then
    Lanczos down-sampling), with a generated image's sloppiness: nothing in it comes from the
    templates the oracle matches -> `(size, size, 3)` uint8.

    Args:
        scene: what to draw.
        size: image side in pixels.
        rng: the random generator.
        scale: range of each object's size as a multiple of its nominal size.
        shift: largest offset of each object from its place, in pixels per axis.
        turn: largest rotation of a polygon, in degrees.
        colour_offset: largest offset of each colour channel (0-255 units).
    """
    k = 4
    canvas = Image.new("RGB", (size * k, size * k), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        cx, cy = object_center(obj, size / GRID)
        cx, cy = (cx + rng.uniform(-shift, shift)) * k, (cy + rng.uniform(-shift, shift)) * k
        r = SIZE_FRACTION[obj.size] * size / GRID / 2 * rng.uniform(*scale) * k
        colour = tuple(int(np.clip(c + rng.uniform(-colour_offset, colour_offset), 0, 255)) for c in COLOURS[obj.colour])
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            continue
        a = np.deg2rad(rng.uniform(-turn, turn))
        outline = [(x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)) for x, y in _OUTLINES[obj.shape]]
        draw.polygon([(cx + r * x, cy + r * y) for x, y in outline], fill=colour)
    return np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS))
