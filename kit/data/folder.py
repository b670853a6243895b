"""`ImageFolderData`: real images with captions from a folder, for recipes beyond the shapes world.

Layouts, tried in this order:

- a `captions.jsonl` with one `{"file": ..., "caption": ...}` per line (paths relative to `root`);
- Hugging Face `imagefolder`: `metadata.jsonl` files (at `root` or in split folders such as `train/`),
  one `{"file_name": ..., "<caption column>": ...}` per line, paths relative to the metadata file's
  folder; the caption column is `caption_column`, else the first of `caption`, `text`, `prompt` present;
- a `.txt` caption beside each image.

Images are decoded with PIL, converted to RGB, resized on the short side and centre-cropped.

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

from kit.data.shapes import ImageTextData, check_loader_sizes, collate_items
from kit.images import image_to_tensor
from kit.types import Batch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


CAPTION_COLUMNS = ("caption", "text", "prompt")
"""Caption columns looked for, in order, in a Hugging Face `metadata.jsonl` when none is named."""


def read_jsonl(path: Path):
    """`(line number, object)` for each non-empty line; a line that is not a JSON object is an error naming it."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e})") from None
            if not isinstance(entry, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object, got {type(entry).__name__}")
            yield n, entry


def read_metadata(path: Path, caption_column: str | None = None) -> list[tuple[Path, str]]:
    """`(image path, caption)` pairs of a Hugging Face imagefolder `metadata.jsonl` (`file_name` relative to its folder)."""
    pairs = []
    for n, entry in read_jsonl(path):
        column = caption_column or next((c for c in CAPTION_COLUMNS if c in entry), None)
        if "file_name" not in entry or column is None or column not in entry:
            wanted = repr(caption_column) if caption_column else " or ".join(repr(c) for c in CAPTION_COLUMNS)
            raise ValueError(f"{path}:{n}: expected 'file_name' and a caption column ({wanted}), got the keys {sorted(entry)}")
        pairs.append((path.parent / entry["file_name"], str(entry[column])))
    return pairs


def read_captions(root: Path, caption_column: str | None = None) -> list[tuple[Path, str]]:
    """`(image path, caption)` pairs from `captions.jsonl`, Hugging Face `metadata.jsonl` files, or `.txt` files beside the images."""
    index = root / "captions.jsonl"
    if index.is_file():
        pairs = []
        for n, entry in read_jsonl(index):
            if "file" not in entry or "caption" not in entry:
                raise ValueError(f"{index}:{n}: expected a JSON object with 'file' and 'caption', got the keys {sorted(entry)}")
            pairs.append((root / entry["file"], str(entry["caption"])))
        return pairs
    metadata = sorted(root.rglob("metadata.jsonl"))
    if metadata:
        return [pair for path in metadata for pair in read_metadata(path, caption_column)]
    pairs = [
        (p, p.with_suffix(".txt").read_text().strip())
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(".txt").is_file()
    ]
    if not pairs:
        raise FileNotFoundError(
            f"no captioned images under {root}: add a captions.jsonl, a Hugging Face metadata.jsonl (file_name + caption/text) or a .txt caption beside each image"
        )
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

    def decode(self, path: Path):
        """`path` as a `(3, S, S)` tensor in [-1, 1], or None (with a warning for the first five) when it cannot be decoded."""
        try:
            return image_to_tensor(load_image(path, self.image_size))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
            if self._warned < 5:
                self._warned += 1
                warnings.warn(f"skipping an image that cannot be decoded: {path} ({type(e).__name__}: {e})", stacklevel=3)
            return None

    def __getitem__(self, index: int) -> dict | None:
        path, prompt = self.pairs[index]
        image = self.decode(path)
        return None if image is None else {"image": image, "prompt": prompt}


def split_off_validation(records: list, val_fraction: float) -> tuple[list, list]:
    """`(train, val)`: the last `val_fraction` of the records (at least one, when there are two or more) held out."""
    n_val = max(1, int(len(records) * val_fraction)) if len(records) > 1 else 0
    return records[: len(records) - n_val], records[len(records) - n_val :]


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
        caption_column: the caption column of a Hugging Face `metadata.jsonl` (the first of `caption`, `text`,
            `prompt` present when None).
    """

    def __init__(
        self, root: str, image_size: int = 64, batch_size: int = 16, val_fraction: float = 0.05, num_workers: int = 0, caption_column: str | None = None
    ) -> None:
        check_loader_sizes(batch_size, num_workers)
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.image_size, self.channels, self.batch_size, self.num_workers = image_size, 3, batch_size, num_workers
        train, val = split_off_validation(self.read(caption_column), val_fraction)
        self.train_set, self.val_set = self.dataset_type(train, image_size), self.dataset_type(val, image_size)

    dataset_type = ImageFolderDataset

    def read(self, caption_column: str | None) -> list:
        """The folder's records (here `(image path, caption)` pairs)."""
        return read_captions(self.root, caption_column)

    def preview_prompts(self, n: int) -> list[str]:
        """The first `n` validation captions (for sample grids)."""
        return [c for _, c in self.val_set.pairs[:n]]

    def collate(self, items: list[dict | None]) -> Batch:
        return collate_skipping(items)
