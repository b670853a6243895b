"""`ImageFolderData`: real images with captions from a folder, for recipes beyond the shapes world.

Layout: images anywhere under `root` and a `captions.jsonl` with one `{"file": ..., "caption": ...}`
per line (paths relative to `root`), or a `.txt` caption beside each image. Images are
decoded with PIL, converted to RGB, resized on the short side and centre-cropped.

An image that cannot be decoded is skipped, not a crash: its item comes back empty, the
collation drops it and reports how many it dropped in the batch's `skipped` count, which the
module adds up and logs as `data/skipped_images` (and the first few are named in a warning).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from kit.images import image_to_tensor
from kit.tasks.data import ImageTextData, check_loader_sizes, collate_items
from kit.types import Batch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def read_captions(root: Path) -> list[tuple[Path, str]]:
    """`(image path, caption)` pairs from `captions.jsonl`, or from `.txt` files beside the images."""
    index = root / "captions.jsonl"
    if index.is_file():
        pairs = []
        for n, line in enumerate(index.read_text().splitlines(), 1):
            if line.strip():
                try:
                    entry = json.loads(line)
                    pairs.append((root / entry["file"], str(entry["caption"])))
                except (json.JSONDecodeError, KeyError) as e:
                    raise ValueError(f"{index}:{n}: expected a JSON object with 'file' and 'caption' ({e})") from None
        return pairs
    pairs = [
        (p, p.with_suffix(".txt").read_text().strip())
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(".txt").is_file()
    ]
    if not pairs:
        raise FileNotFoundError(f"no captioned images under {root}: add a captions.jsonl or a .txt caption beside each image")
    return pairs


def load_image(path: Path, size: int) -> np.ndarray:
    """Decode, convert to RGB, resize the short side to `size` and centre-crop -> `(size, size, 3)` uint8."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = size / min(im.size)
        im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.Resampling.BICUBIC)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        return np.array(im.crop((left, top, left + size, top + size)))


class ImageFolderDataset(Dataset):
    """Captioned images from a folder; undecodable images come back as None.

    Args:
        pairs: `(image path, caption)` pairs.
        image_size: output side.
    """

    def __init__(self, pairs: list[tuple[Path, str]], image_size: int) -> None:
        self.pairs, self.image_size = pairs, image_size
        self._warned = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict | None:
        path, prompt = self.pairs[index]
        try:
            image = load_image(path, self.image_size)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
            if self._warned < 5:
                self._warned += 1
                warnings.warn(f"skipping an image that cannot be decoded: {path} ({type(e).__name__}: {e})", stacklevel=2)
            return None
        return {"image": image_to_tensor(image), "prompt": prompt}


def collate_skipping(items: list[dict | None]) -> Batch:
    """Collate the decodable items; `skipped` counts the others (a batch may end up empty)."""
    good = [it for it in items if it is not None]
    return collate_items(good, skipped=len(items) - len(good))


class ImageFolderData(ImageTextData):
    """A folder of captioned images as a LightningDataModule (undecodable images skipped and counted).

    Args:
        root: the folder.
        image_size: training resolution (short side resized, centre crop).
        batch_size: items per batch (before skipping).
        val_fraction: fraction of the items held out for validation (the last ones, in file order).
        num_workers: DataLoader worker processes.
    """

    def __init__(self, root: str, image_size: int = 64, batch_size: int = 16, val_fraction: float = 0.05, num_workers: int = 0) -> None:
        check_loader_sizes(batch_size, num_workers)
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        pairs = read_captions(self.root)
        n_val = max(1, int(len(pairs) * val_fraction)) if len(pairs) > 1 else 0
        self.image_size, self.channels, self.batch_size, self.num_workers = image_size, 3, batch_size, num_workers
        self.train_set = ImageFolderDataset(pairs[: len(pairs) - n_val], image_size)
        self.val_set = ImageFolderDataset(pairs[len(pairs) - n_val :], image_size)

    def preview_prompts(self, n: int) -> list[str]:
        """The first `n` validation captions (for sample grids)."""
        return [c for _, c in self.val_set.pairs[:n]]

    def collate(self, items: list[dict | None]) -> Batch:
        return collate_skipping(items)
