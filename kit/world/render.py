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


def _coverage(obj: SceneObject, xs: np.ndarray, ys: np.ndarray, cell: float) -> np.ndarray:
    """Boolean mask of the sub-pixel samples `(xs, ys)` (pixel units) covered by `obj`."""
    radius = SIZE_FRACTION[obj.size] * cell / 2
    margin = cell / 2 - radius  # free space between the object and its cell border
    cx = (obj.col + 0.5) * cell + 0.8 * margin * obj.jitter[0]
    cy = (obj.row + 0.5) * cell + 0.8 * margin * obj.jitter[1]
    dx, dy = (xs - cx) / radius, (ys - cy) / radius  # unit-radius coordinates, y down
    if obj.shape == "circle":
        return dx**2 + dy**2 <= 1.0
    if obj.shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.8
    if obj.shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.0
    if obj.shape == "triangle":
        # upright isosceles triangle: apex at (0, -1), base from (-1, 0.8) to (1, 0.8)
        return (dy <= 0.8) & (np.abs(dx) <= (dy + 1.0) / 1.8)
    raise ValueError(f"the renderer cannot draw shape {obj.shape!r}")


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
    n = size * SUPERSAMPLE
    coords = (np.arange(n, dtype=np.float32) + 0.5) / SUPERSAMPLE
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    canvas = np.empty((n, n, 3), dtype=np.float32)
    canvas[:] = BACKGROUND
    cell = size / GRID
    for obj in scene.objects:
        canvas[_coverage(obj, xs, ys, cell)] = COLOURS[obj.colour]
    # box filter: average each SUPERSAMPLE x SUPERSAMPLE block to one pixel
    pixels = canvas.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.round(pixels).astype(np.uint8)
