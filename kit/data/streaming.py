"""Streaming image-caption data over litdata shards (Lightning's streaming format), optionally with cached features.

A streaming dataset is a folder (or an object-store URI that litdata reads) of litdata chunks:

    index.json             litdata's chunk index
    chunk-0-0.bin ...      items {"image": (H, W, 3) uint8, "prompt": str[, "hidden": (N, S, D), "kinds": (S,)]}
    kit.json               what the kit wrote: format, item count, image size, and, when the items carry a
                           frozen encoder's features, its fingerprint and the storage dtype

Items are read chunk by chunk as the loader reaches them (never the whole dataset in memory); under
DDP litdata gives every rank its own share, and `StreamingDataLoader` resumes mid-epoch from a
checkpoint. Write one with `write_streaming` (or `python -m kit shard` for an image folder, `python -m
kit cache --format litdata` for a recipe's data with its encoder's features) and train from it with
`--data=kit.data.StreamingImageTextData --data.input_dir=DIR`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kit.data.shapes import ImageTextData, check_loader_sizes, collate_items
from kit.encoders.cache import collate_entries
from kit.images import image_to_tensor
from kit.types import Batch

FORMAT = 1
META = "kit.json"
_VIEWS = {"bfloat16": torch.int16}  # dtypes litdata cannot serialise are stored as a same-width integer view


class StreamingFeatures:
    """What a streaming dataset says about the features it carries: `path` and the encoder `fingerprint`
    (the task checks it against its own encoder before the first step)."""

    def __init__(self, path: str, fingerprint: dict, storage_dtype: str) -> None:
        self.path, self.fingerprint, self.storage_dtype = path, fingerprint, storage_dtype


def write_streaming(
    items: Iterable[dict],
    out: str | Path,
    *,
    chunk_bytes: str | int = "64MB",
    fingerprint: dict | None = None,
    storage_dtype: str = "bfloat16",
) -> int:
    """Write items `{"image": (H, W, 3) uint8, "prompt": str}` (plus `"hidden": (N, S, D)` and `"kinds": (S,)`
    when `fingerprint` names the encoder that made them) as litdata chunks under `out`; returns the item count.

    `out` must not hold a dataset already (litdata appends chunks; a half-overwritten dataset would mix two)."""
    from litdata.streaming.writer import BinaryWriter

    out = Path(out)
    if (out / "index.json").exists() or (out / META).exists():
        raise FileExistsError(f"{out} already holds a streaming dataset; write to a new folder or remove it first")
    if storage_dtype not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"storage_dtype must be bfloat16, float16 or float32, got {storage_dtype!r}")
    out.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, storage_dtype)
    writer = BinaryWriter(str(out), chunk_bytes=chunk_bytes)
    count, size = 0, None
    for item in items:
        image = np.ascontiguousarray(item["image"], dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"item {count}: expected an (H, W, 3) uint8 image, got shape {image.shape}")
        size = size or image.shape[0]
        record = {"image": image, "prompt": str(item["prompt"])}
        if fingerprint is not None:
            hidden = item["hidden"].to(dtype)
            record["hidden"] = hidden.view(_VIEWS[storage_dtype]) if storage_dtype in _VIEWS else hidden
            record["kinds"] = item["kinds"].to(torch.uint8)
        writer.add_item(count, record)
        count += 1
    if count == 0:
        raise ValueError(f"no items to write to {out}")
    writer.done()
    writer.merge()
    meta = {"format": FORMAT, "items": count, "image_size": size, "fingerprint": fingerprint, "storage_dtype": storage_dtype if fingerprint else None}
    (out / META).write_text(json.dumps(meta, indent=2))
    return count


def read_meta(path: str | Path) -> dict:
    """The kit's description of a streaming dataset; a clear error when `path` is not one."""
    meta = Path(path) / META
    if not meta.is_file():
        raise FileNotFoundError(
            f"{path} is not a streaming dataset written by the kit (no {META}); write one with `python -m kit shard` or `python -m kit cache --format litdata`"
        )
    info = json.loads(meta.read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{path} has streaming format {info.get('format')}, this kit reads format {FORMAT}: rewrite it")
    return info


def decode_item(item: dict, storage_dtype: str | None) -> dict:
    """A litdata item -> the kit's item: image `(3, H, W)` in [-1, 1], prompt, and the features (float32) if any."""
    out = {"image": image_to_tensor(np.asarray(item["image"])), "prompt": item["prompt"]}
    if "hidden" in item:
        hidden: Tensor = item["hidden"]
        if storage_dtype in _VIEWS:
            hidden = hidden.view(getattr(torch, storage_dtype))
        out["features"] = (hidden.float(), item["kinds"])
    return out


class StreamingImageTextData(ImageTextData):
    """Image-caption pairs streamed from litdata chunks, for corpora that do not fit on one disk or in memory.

    Args:
        input_dir: the training dataset (a folder, or an `s3://` / `gs://` URI litdata can read).
        val_dir: a validation dataset (None: validation reads the first `val_items` items of `input_dir`).
        val_items: items of `input_dir` used for validation and sample-grid prompts when `val_dir` is None.
        batch_size: items per batch on each rank.
        num_workers: DataLoader worker processes.
        shuffle: shuffle the training chunks and the items within them (litdata's shuffle, seeded).
        seed: the shuffle's seed.
        max_cache_size: local space litdata may fill with downloaded chunks of a remote dataset.
        image_size: the images' side; read from `kit.json` for a local dataset, required for a remote one
            (whose `kit.json` is not fetched; remote datasets carry no stored features).
    """

    def __init__(
        self,
        input_dir: str,
        val_dir: str | None = None,
        val_items: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        max_cache_size: str = "25GB",
        image_size: int | None = None,
    ) -> None:
        check_loader_sizes(batch_size, num_workers)
        super().__init__()
        self.input_dir, self.val_dir, self.val_items = input_dir, val_dir, val_items
        self.batch_size, self.num_workers, self.shuffle, self.seed, self.max_cache_size = batch_size, num_workers, shuffle, seed, max_cache_size
        if "://" in input_dir:
            if image_size is None:
                raise ValueError(f"a remote streaming dataset ({input_dir}) needs its image side: set data.init_args.image_size")
            self.meta = {"image_size": image_size, "fingerprint": None, "storage_dtype": None}
        else:
            self.meta = read_meta(input_dir)
        self.image_size, self.channels = image_size or self.meta["image_size"], 3
        fp = self.meta.get("fingerprint")
        self.feature_cache = StreamingFeatures(input_dir, fp, self.meta["storage_dtype"]) if fp is not None else None

    def _dataset(self, path: str, shuffle: bool):
        from litdata import StreamingDataset

        return StreamingDataset(path, shuffle=shuffle, seed=self.seed, drop_last=shuffle, max_cache_size=self.max_cache_size)

    @cached_property
    def train_set(self):
        return self._dataset(self.input_dir, self.shuffle)

    @cached_property
    def val_set(self):
        if self.val_dir is not None:
            return self._dataset(self.val_dir, False)
        from torch.utils.data import Subset

        full = self._dataset(self.input_dir, False)
        return Subset(full, range(min(self.val_items, len(full))))

    def collate(self, items: list[dict]) -> Batch:
        """Decoded items -> a `Batch`, with the stored encoder outputs when the dataset carries them."""
        decoded = [decode_item(it, self.meta.get("storage_dtype")) for it in items]
        encoded = collate_entries([d.pop("features") for d in decoded]) if decoded and "features" in decoded[0] else None
        return collate_items(decoded, encoded=encoded)

    def train_dataloader(self):
        """litdata's loader: every rank and worker reads its own chunks, and the loader's state resumes mid-epoch."""
        from litdata import StreamingDataLoader

        return StreamingDataLoader(self.train_set, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.collate, drop_last=True)

    def preview_prompts(self, n: int) -> list[str]:
        """The first `n` validation prompts (for sample grids)."""
        val = self.val_set
        return [val[i]["prompt"] for i in range(min(n, len(val)))]
