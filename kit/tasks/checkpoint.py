"""Loading trained modules from Lightning checkpoints, safely.

Checkpoints are read with `weights_only=True` (no pickled code runs); the module is rebuilt
from the config the CLI recorded in the checkpoint, and the frozen encoder is reloaded from
its recorded name (its weights are never in the checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import torch

from kit.tasks.text_to_image import TextToImage


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> TextToImage:
    """Rebuild the module saved in a checkpoint written by `python -m kit fit`.

    Args:
        path: the `.ckpt` file.
        map_location: device to load onto.
    """
    path = Path(path)
    if not path.is_file():
        nearby = sorted(str(p) for p in path.parent.glob("**/*.ckpt"))[:5] if path.parent.is_dir() else []
        hint = f"; checkpoints under {path.parent}: {', '.join(nearby)}" if nearby else ""
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist{hint}")
    module = TextToImage.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    return module.eval()
