"""Small, seeded image corruptions used to test that the oracle is robust (not a lookup of exact bytes)."""

from __future__ import annotations

import numpy as np

PERTURBATIONS = ("noise", "blur", "colour_jitter", "all")


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (5 taps) over the two spatial axes of `(H, W, C)`, edges replicated."""
    taps = np.exp(-0.5 * (np.arange(-2, 3) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (2, 2)
        p = np.pad(x, pad, mode="edge")
        x = sum(w * np.take(p, np.arange(i, i + x.shape[axis]), axis=axis) for i, w in enumerate(taps))
    return x


def perturb(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    noise_std: float = 6.0,
    blur_sigma: tuple[float, float] = (0.4, 0.8),
    gain: float = 0.05,
    offset: float = 8.0,
) -> np.ndarray:
    """Corrupt an `(H, W, 3)` uint8 image.

    Args:
        image: the clean render.
        kind: 'noise' (Gaussian, `noise_std` in 0-255 units), 'blur' (Gaussian, sigma drawn from `blur_sigma` px),
            'colour_jitter' (per-channel gain in 1 +- `gain` and offset in +- `offset`), or 'all' (blur, jitter, noise).
        rng: the random generator.
    """
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")
    x = image.astype(np.float32)
    if kind in ("blur", "all"):
        x = gaussian_blur(x, float(rng.uniform(*blur_sigma)))
    if kind in ("colour_jitter", "all"):
        x = x * rng.uniform(1 - gain, 1 + gain, 3) + rng.uniform(-offset, offset, 3)
    if kind in ("noise", "all"):
        x = x + rng.normal(0.0, noise_std, x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
