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

from kit.images import tensor_to_image
from kit.world.perturb import gaussian_blur
from kit.world.render import SIZE_FRACTION, shape_coverage
from kit.world.scene import COLOURS, GRID, SHAPES, SIZES, Scene, SceneObject

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)  # (K, 3)
_NAMES = list(COLOURS)


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue angle in degrees of `(..., 3)` RGB colours, in the opponent plane (R - (G+B)/2, (G - B) sqrt(3)/2)."""
    a = rgb[..., 0] - 0.5 * (rgb[..., 1] + rgb[..., 2])
    b = (np.sqrt(3) / 2) * (rgb[..., 1] - rgb[..., 2])
    return np.degrees(np.arctan2(b, a))


_PALETTE_HUES = _hue(_PALETTE)  # (K,)
# centroid of each shape's coverage relative to its centre, in units of its radius
_CENTROID_OFFSET = {"circle": 0.0, "square": 0.0, "diamond": 0.0, "triangle": 0.2}


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
        image = tensor_to_image(image)
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
        max_hue_distance: largest hue difference (degrees) between an object's core colour and the palette
            colour read by its hue when no background->palette line passes close enough (desaturated colours).
        min_iou: smallest soft IoU between the coverage map and the best template for an object to count.
        read_size: images smaller than this are read after a bicubic up-sampling by the smallest
            integer factor that reaches it, so that templates have enough pixels to tell shapes apart
            in soft images (0 reads every image at its own size).
        template_blurs: Gaussian blurs (sigma in pixels of the image as given) of the extra templates
            matched beside the sharp one: generated samples are softer than renders.
        template_scales: extra template sizes (multiples of each size's radius) tried when no template at
            the rendered size reaches `rescale_below`: a generated square drawn 10 % too large covers
            about what the circle template covers, and would be read as a circle without them.
        rescale_below: soft IoU under which the extra scales are tried (clean renders never need them).
        rescale_margin: how much higher a rescaled template's IoU must be to replace the rendered size's best.
    """

    min_area: float = 0.35
    max_colour_distance: float = 70.0
    max_hue_distance: float = 12.0
    min_iou: float = 0.5
    read_size: int = 64
    template_blurs: tuple[float, ...] = (0.7,)
    template_scales: tuple[float, ...] = (0.88, 1.12)
    rescale_below: float = 0.85
    rescale_margin: float = 0.01

    def read(self, image) -> Scene:
        """Detect the objects of an image (see `to_rgb_array` for accepted formats); jitter is left at 0."""
        img = to_rgb_array(image)
        factor = -(-self.read_size // img.shape[0]) if img.shape[0] < self.read_size else 1  # ceil
        if factor > 1:
            side = img.shape[0] * factor
            img = np.clip(np.asarray(Image.fromarray(img).resize((side, side), Image.BICUBIC)), 0, 255)
        img = img.astype(np.float32)
        size = img.shape[0]
        cell = size / GRID
        background = np.median(img.reshape(-1, 3), axis=0)  # (3,)
        blurs = tuple(factor * b for b in self.template_blurs)
        objects = []
        for row in range(GRID):
            for col in range(GRID):
                found = self._read_cell(img, background, row, col, cell, blurs)
                if found is not None:
                    objects.append(found)
        return Scene(tuple(objects))

    def _read_cell(self, img: np.ndarray, background: np.ndarray, row: int, col: int, cell: float, blurs: tuple[float, ...]) -> SceneObject | None:
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
        # compression and soft edges desaturate a colour (towards grey) but keep its hue, so a
        # colour off every background->palette line is still read by its hue when it is unambiguous
        hue_gaps = np.abs((_hue(mean + background) - _PALETTE_HUES + 180.0) % 360.0 - 180.0)  # (K,) degrees
        nearest, second = np.argsort(gaps)[:2]
        k = int(nearest)
        direction = directions[k]  # (3,): coverage is measured along the background->colour line
        # a colour a little off its palette colour (a generated image's colours are) keeps the nearest
        # line when no other line is close, within twice the hue tolerance; an ambiguous one must agree in hue
        unambiguous = gaps[second] > 2.0 * gaps[k]
        hue_limit = 2.0 * self.max_hue_distance if unambiguous else self.max_hue_distance
        if gaps[k] > self.max_colour_distance or hue_gaps[k] > hue_limit:
            k = int(np.argmin(hue_gaps))
            if hue_gaps[k] > self.max_hue_distance:
                return None
            direction = mean  # read by hue: measure coverage along the colour the object actually shows
        alpha = np.clip(patch @ direction / (direction @ direction), 0.0, 1.0)  # (h, w)
        residual = np.linalg.norm(patch - alpha[..., None] * direction, axis=-1)
        coverage = np.where(residual < self.max_colour_distance, alpha, 0.0)  # (h, w)
        mass = coverage.sum()
        if mass < self.min_area * small_area:
            return None
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        cy, cx = (coverage * ys).sum() / mass, (coverage * xs).sum() / mass
        window = (y0, y1, x0, x1)
        best, best_iou = self._match(coverage, cx, cy, cell, window, blurs, 1.0)
        if best_iou < self.rescale_below:  # perhaps drawn a little too small or too large
            for scale in self.template_scales:
                shape_size, iou = self._match(coverage, cx, cy, cell, window, blurs, scale)
                if iou > best_iou + self.rescale_margin:
                    best, best_iou = shape_size, iou
        if best_iou < self.min_iou:
            return None
        return SceneObject(shape=best[0], colour=_NAMES[k], size=best[1], row=row, col=col)

    def _match(
        self, coverage: np.ndarray, cx: float, cy: float, cell: float, window: tuple[int, int, int, int], blurs: tuple[float, ...], scale: float
    ) -> tuple[tuple[str, str], float]:
        """The `(shape, size)` whose template, at `scale` times its radius and centred on the coverage's
        centroid, has the highest soft IoU with the coverage map `(h, w)`, and that IoU."""
        best, best_iou = ("circle", "small"), -1.0
        for shape in SHAPES:
            for size in SIZES:
                radius = SIZE_FRACTION[size] * cell * scale / 2
                sharp = shape_coverage(shape, size, cx, cy - _CENTROID_OFFSET[shape] * radius, cell * scale, window)
                for template in (sharp, *(gaussian_blur(sharp, b, radius=None) for b in blurs)):  # a soft image matches a blurred template
                    iou = np.minimum(coverage, template).sum() / np.maximum(coverage, template).sum()
                    if iou > best_iou:
                        best, best_iou = (shape, size), iou
        return best, float(best_iou)
