"""The oracle: a deterministic detector that reads a shapes-world image back into a scene.

No learned weights. For each of the 3x3 grid cells it

1. estimates the background as the image's per-channel median (robust to colour jitter),
2. takes the pixels that differ from the background and, from the most saturated half of
   them, the object's colour as the nearest palette colour (refusing colours far from any),
3. computes a soft coverage map for that colour (each pixel as a background/colour mix),
4. matches the map against the renderer's own anti-aliased templates of every shape and
   size placed at the map's centroid, and keeps the best match if its soft IoU is high
   enough.

So a clean render is read back exactly, and an image whose blobs do not look like any
shape of the world (noise, smears) yields no object rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from kit.world.render import SIZE_FRACTION, shape_coverage
from kit.world.scene import COLOURS, GRID, SHAPES, SIZES, Scene, SceneObject

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)  # (K, 3)
_NAMES = list(COLOURS)
# centroid of each shape's coverage relative to its centre, in units of its radius
_CENTROID_OFFSET = {"circle": 0.0, "square": 0.0, "diamond": 0.0, "triangle": 0.2}


def _blur(x: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur of a 2D map, edges replicated: the oracle's 'slightly blurred' template."""
    p = np.pad(x, 1, mode="edge")
    x = 0.25 * p[:-2, 1:-1] + 0.5 * p[1:-1, 1:-1] + 0.25 * p[2:, 1:-1]
    p = np.pad(x, 1, mode="edge")
    return 0.25 * p[1:-1, :-2] + 0.5 * p[1:-1, 1:-1] + 0.25 * p[1:-1, 2:]


class ImageFormatError(ValueError):
    """An image the oracle refuses to score (wrong shape, channels or value range)."""


def to_rgb_array(image) -> np.ndarray:
    """Accept what generators and files give and return `(H, W, 3)` uint8, or raise `ImageFormatError`.

    Accepted: a PIL image (converted to RGB), a `(H, W, 3)` uint8 array, a `(3, H, W)` float
    tensor in [-1, 1] (what the models produce). Images must be square.
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ImageFormatError(f"a tensor image must be float (3, H, W) in [-1, 1], got {image.dtype} {tuple(image.shape)}")
        lo, hi = float(image.min()), float(image.max())
        if lo < -1.05 or hi > 1.05:
            raise ImageFormatError(f"a tensor image must lie in [-1, 1], got values in [{lo:.2f}, {hi:.2f}]")
        image = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageFormatError(f"expected an (H, W, 3) uint8 RGB image, got {desc}")
    if image.shape[0] != image.shape[1] or image.shape[0] < 3 * GRID:
        raise ImageFormatError(f"expected a square image of at least {3 * GRID} px, got {image.shape[1]}x{image.shape[0]}")
    return image


@dataclass(frozen=True)
class Oracle:
    """Image -> `Scene` reader for the shapes world.

    Args:
        min_area: smallest object, as a fraction of a small object's area, below which a cell is empty.
        max_colour_distance: largest RGB distance between an object's mean core colour and its palette colour.
        min_iou: smallest soft IoU between the coverage map and the best template for an object to count.
    """

    min_area: float = 0.35
    max_colour_distance: float = 70.0
    min_iou: float = 0.5

    def read(self, image) -> Scene:
        """Detect the objects of an image (see `to_rgb_array` for accepted formats); jitter is left at 0."""
        img = to_rgb_array(image).astype(np.float32)
        size = img.shape[0]
        cell = size / GRID
        background = np.median(img.reshape(-1, 3), axis=0)  # (3,)
        objects = []
        for row in range(GRID):
            for col in range(GRID):
                found = self._read_cell(img, background, row, col, cell)
                if found is not None:
                    objects.append(found)
        return Scene(tuple(objects))

    def _read_cell(self, img: np.ndarray, background: np.ndarray, row: int, col: int, cell: float) -> SceneObject | None:
        # pixels whose centres fall inside the cell
        y0, y1 = int(np.ceil(row * cell - 0.5)), int(np.ceil((row + 1) * cell - 0.5))
        x0, x1 = int(np.ceil(col * cell - 0.5)), int(np.ceil((col + 1) * cell - 0.5))
        patch = img[y0:y1, x0:x1] - background  # (h, w, 3)
        distance = np.linalg.norm(patch, axis=-1)  # (h, w)
        small_area = np.pi * (SIZE_FRACTION["small"] * cell / 2) ** 2
        changed = distance > 40.0
        if changed.sum() < self.min_area * small_area:
            return None
        core = distance >= np.median(distance[changed])  # the more saturated half of the changed pixels
        mean = patch[core & changed].mean(axis=0)  # (3,) relative to the background
        # the palette colour whose background->colour line passes closest to the mean: blur and
        # anti-aliasing move a colour along that line (towards the background), never off it
        directions = _PALETTE - background  # (K, 3)
        alphas = np.clip(directions @ mean / (directions * directions).sum(-1), 0.25, 1.1)  # (K,)
        gaps = np.linalg.norm(mean[None] - alphas[:, None] * directions, axis=-1)  # (K,)
        k = int(np.argmin(gaps))
        if gaps[k] > self.max_colour_distance:
            return None
        direction = directions[k]  # (3,)
        alpha = np.clip(patch @ direction / (direction @ direction), 0.0, 1.0)  # (h, w)
        residual = np.linalg.norm(patch - alpha[..., None] * direction, axis=-1)
        coverage = np.where(residual < self.max_colour_distance, alpha, 0.0)  # (h, w)
        mass = coverage.sum()
        if mass < self.min_area * small_area:
            return None
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        cy, cx = (coverage * ys).sum() / mass, (coverage * xs).sum() / mass
        best, best_iou = None, -1.0
        for shape in SHAPES:
            for size in SIZES:
                radius = SIZE_FRACTION[size] * cell / 2
                sharp = shape_coverage(shape, size, cx, cy - _CENTROID_OFFSET[shape] * radius, cell, (y0, y1, x0, x1))
                for template in (sharp, _blur(sharp)):  # a slightly blurred image matches the blurred template
                    iou = np.minimum(coverage, template).sum() / np.maximum(coverage, template).sum()
                    if iou > best_iou:
                        best, best_iou = (shape, size), iou
        if best_iou < self.min_iou:
            return None
        return SceneObject(shape=best[0], colour=_NAMES[k], size=best[1], row=row, col=col)
