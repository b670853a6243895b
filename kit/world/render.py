"""Deterministic rasteriser for shapes-world scenes (NumPy, anti-aliased by supersampling)."""

from __future__ import annotations

import numpy as np

from kit.world.scene import COLOURS, GRID, Scene, SceneObject

BACKGROUND: tuple[int, int, int] = (24, 24, 28)
"""Background colour (sRGB)."""

SIZE_FRACTION: dict[str, float] = {"small": 0.5, "large": 0.9}
"""Diameter of an object's bounding circle, as a fraction of a grid cell."""

SUPERSAMPLE = 4
"""Sub-pixel samples per axis used for anti-aliasing."""


def object_center(obj: SceneObject, cell: float) -> tuple[float, float]:
    """Centre `(x, y)` of an object in pixels, for a grid cell of side `cell` pixels."""
    margin = cell / 2 - SIZE_FRACTION[obj.size] * cell / 2  # free space between the object and its cell border
    return (obj.col + 0.5) * cell + 0.8 * margin * obj.jitter[0], (obj.row + 0.5) * cell + 0.8 * margin * obj.jitter[1]


def shape_mask(shape: str, radius: float, cx: float, cy: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean mask of the sample points `(xs, ys)` (pixel units) inside `shape` centred at `(cx, cy)`."""
    dx, dy = (xs - cx) / radius, (ys - cy) / radius  # unit-radius coordinates, y down
    if shape == "circle":
        return dx**2 + dy**2 <= 1.0
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.8
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.0
    if shape == "triangle":
        # upright isosceles triangle: apex at (0, -1), base from (-1, 0.8) to (1, 0.8)
        return (dy <= 0.8) & (np.abs(dx) <= (dy + 1.0) / 1.8)
    raise ValueError(f"the renderer cannot draw shape {shape!r}")


def supersample_grid(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel sample coordinates for pixel rows y0..y1-1 and columns x0..x1-1: `(ys, xs)` arrays."""
    ys = y0 + (np.arange((y1 - y0) * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
    xs = x0 + (np.arange((x1 - x0) * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
    return np.meshgrid(ys, xs, indexing="ij")


def box_filter(samples: np.ndarray) -> np.ndarray:
    """Average SUPERSAMPLE x SUPERSAMPLE blocks of a `(h*S, w*S, ...)` array -> `(h, w, ...)`."""
    h, w = samples.shape[0] // SUPERSAMPLE, samples.shape[1] // SUPERSAMPLE
    return samples.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE, *samples.shape[2:]).mean(axis=(1, 3))


def shape_coverage(shape: str, size: str, cx: float, cy: float, cell: float, window: tuple[int, int, int, int]) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one object over the pixel window `(y0, y1, x0, x1)`."""
    ys, xs = supersample_grid(*window)
    return box_filter(shape_mask(shape, SIZE_FRACTION[size] * cell / 2, cx, cy, xs, ys).astype(np.float32))


def render(scene: Scene, size: int = 32) -> np.ndarray:
    """Render a scene to an sRGB image.

    Args:
        scene: the scene to draw.
        size: the side of the square image in pixels (the shapes world uses 32 or 64).

    Returns:
        A `(size, size, 3)` uint8 array. The same scene and size always give the same bytes.
    """
    if size < 3 * GRID:
        raise ValueError(f"image size {size} is too small for a {GRID}x{GRID} grid")
    ys, xs = supersample_grid(0, size, 0, size)
    canvas = np.empty((*xs.shape, 3), dtype=np.float32)
    canvas[:] = BACKGROUND
    cell = size / GRID
    for obj in scene.objects:
        cx, cy = object_center(obj, cell)
        canvas[shape_mask(obj.shape, SIZE_FRACTION[obj.size] * cell / 2, cx, cy, xs, ys)] = COLOURS[obj.colour]
    return np.round(box_filter(canvas)).astype(np.uint8)
