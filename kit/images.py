"""Image <-> tensor conversions, the kit's one convention for them (low level: numpy, torch and PIL only).

Images are `(H, W, 3)` uint8 arrays; tensors are `(3, H, W)` float in [-1, 1] (what the data
loaders serve and the models generate). Every stage that crosses the boundary calls these.
"""

from __future__ import annotations

import numpy as np
import torch


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """`(H, W, 3)` uint8 -> `(3, H, W)` float in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """`(3, H, W)` float in [-1, 1] (values outside are clipped) -> `(H, W, 3)` uint8."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def read_image(path: str) -> np.ndarray:
    """The image file at `path` as `(H, W, 3)` uint8 (any mode or size PIL reads is converted to RGB);
    a missing or undecodable file is a `ValueError` that names it."""
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise ValueError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image {path!r} cannot be decoded: {e}") from None
