"""Image <-> tensor conversions, the kit's one convention for them (low level: numpy and torch only).

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
