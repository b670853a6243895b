"""DataModules. `ShapesDataModule` serves the shapes world: rendered scenes with captions.

Every item is a function of (seed, split, index), so runs are reproducible, workers need
no shared state, and the validation set is fixed. Items are dicts `{"image": (3, H, W), "prompt": str}`;
batches are `kit.types.Batch`: `images (B, 3, H, W)` in [-1, 1] and `prompts` (B strings); with a
feature cache (`python -m kit cache`) also `encoded`, the frozen encoder's output read from the
cache, so training never runs the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from kit.encoders.cache import FeatureCache, cache_key, collate_entries
from kit.images import image_to_tensor
from kit.types import Batch, EncoderOutput
from kit.world import REGISTERS, STYLES, caption, render, scene_rng
from kit.world.scene import MAX_OBJECTS, Scene, sample_held_out_scene, sample_training_scene

SPLITS = {"train": 0, "val": 1, "test": 2, "held_out": 3}
"""The splits' random streams. `train`, `val` and `test` draw training-distribution scenes (never a held-out
one); `held_out` draws only held-out scenes (`kit.world.scene.is_held_out`), which no training split contains."""


def batch_size(batch: Batch) -> int:
    """Items a batch drew, decoded or skipped (for Lightning's `ThroughputMonitor`, which needs at least
    one a batch: a batch whose every image failed to decode still counts what the loader read)."""
    return len(batch) + batch.skipped


def collate_items(items: list[dict], *, skipped: int = 0, encoded: EncoderOutput | None = None, channels: int = 3) -> Batch:
    """`{"image", "prompt"}` items (with `"references"`, a list of images, in tasks that have them) -> a
    `Batch` (images stacked; an empty list gives an empty batch)."""
    images = torch.stack([it["image"] for it in items]) if items else torch.zeros(0, channels, 1, 1)
    references = [it.get("references", []) for it in items] if any("references" in it for it in items) else None
    targets = [it["target"] for it in items] if items and all("target" in it for it in items) else None
    return Batch(images=images, prompts=[it["prompt"] for it in items], references=references, encoded=encoded, skipped=skipped, targets=targets)


def check_count_stages(stages: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Validate `(end_item, max_objects)` stages of a count curriculum; a clear error names the bad one."""
    out, last_end = [], 0
    for stage in stages:
        if not isinstance(stage, Sequence) or len(stage) != 2:
            raise ValueError(f"count_curriculum: each stage is [end_item, max_objects], got {stage!r}")
        end, most = int(stage[0]), int(stage[1])
        if end <= last_end:
            raise ValueError(f"count_curriculum: stage ends must increase and be > 0, got {end} after {last_end}")
        if not 1 <= most <= MAX_OBJECTS:
            raise ValueError(f"count_curriculum: max_objects must be in 1..{MAX_OBJECTS}, got {most}")
        out.append((end, most))
        last_end = end
    return tuple(out)


class SceneSplit(Dataset):
    """`length` items of one split of the shapes world, item `index` drawn from its own random stream
    (`scene_rng(seed, split id, index)`: deterministic, disjoint across splits and item kinds).

    Args:
        length: number of items.
        split: `train`, `val`, `test` or `held_out` (see `SPLITS`).
        seed: world seed.
        image_size: render side in pixels.
    """

    split_offset: int = 0
    """Added to the split's id, so that another kind of item draws from other streams."""

    def __init__(self, length: int, split: str = "train", seed: int = 0, image_size: int = 32) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        self.length, self.split, self.seed, self.image_size = length, split, seed, image_size
        self.split_id = self.split_offset + SPLITS[split]

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of item `index`."""
        return scene_rng(self.seed, self.split_id, index)


class ShapesDataset(SceneSplit):
    """Scenes `index -> (image, caption)` of one split of the shapes world.

    Args:
        length: number of items.
        split: 'train', 'val', 'test' (training-distribution scenes) or 'held_out' (only scenes that training never
            draws); splits draw from disjoint random streams.
        seed: world seed.
        image_size: render size in pixels.
        caption_styles: caption registers to draw from.
        caption_weights: probability of each register (uniform when None).
        curriculum_items: items `0 .. curriculum_items - 1` are captioned in the first register only
            (a curriculum when the items are read in order; see `ShapesDataModule`).
        count_stages: `(end_item, max_objects)` pairs in increasing `end_item`: an item before a
            stage's end holds 1..max_objects objects (uniformly), the first stage that applies wins;
            later items draw from the whole world. A curriculum over object counts.
        target_style: a register (any of `REGISTERS`) in which every item also carries a second caption, its
            `"target"`: the text a task that writes captions learns to write (the joint model), while the
            prompts of `caption_styles` are what it reads. None: no second caption.
    """

    def __init__(
        self,
        length: int,
        split: str = "train",
        *,
        seed: int = 0,
        image_size: int = 32,
        caption_styles: Sequence[str] = STYLES,
        caption_weights: Sequence[float] | None = None,
        curriculum_items: int = 0,
        count_stages: Sequence[tuple[int, int]] = (),
        target_style: str | None = None,
    ) -> None:
        unknown = set(caption_styles) - set(REGISTERS) | ({target_style} - set(REGISTERS) if target_style else set())
        if unknown:
            raise ValueError(f"unknown caption styles {sorted(unknown)}; known: {', '.join(REGISTERS)}")
        if caption_weights is not None and len(caption_weights) != len(caption_styles):
            raise ValueError(f"{len(caption_weights)} caption weights for {len(caption_styles)} styles")
        super().__init__(length, split, seed, image_size)
        self.styles = list(caption_styles)
        weights = np.ones(len(self.styles)) if caption_weights is None else np.asarray(caption_weights, dtype=float)
        self.weights = weights / weights.sum()
        self.curriculum_items = curriculum_items
        self.count_stages = check_count_stages(count_stages)
        self.target_style = target_style

    @property
    def ordered(self) -> bool:
        """Whether the items must be read in index order (a caption or count curriculum)."""
        return bool(self.curriculum_items or self.count_stages)

    def scene_and_prompt(self, index: int) -> tuple[Scene, str]:
        """Item `index` without its render."""
        rng = self.rng(index)
        stage = next((most for end, most in self.count_stages if index < end), None)
        num_objects = None if stage is None else int(rng.integers(1, stage + 1))
        draw = sample_held_out_scene if self.split == "held_out" else sample_training_scene
        scene = draw(rng, num_objects)  # a training split never holds a held-out (evaluation) scene
        style = self.styles[int(rng.choice(len(self.styles), p=self.weights))]
        if index < self.curriculum_items:
            style = self.styles[0]
        return scene, caption(scene, style, rng)

    def __getitem__(self, index: int) -> dict:
        scene, prompt = self.scene_and_prompt(index)
        item = {"image": image_to_tensor(render(scene, self.image_size)), "prompt": prompt}
        if self.target_style is not None:  # drawn after the prompt, from its own stream: the prompts do not change
            item["target"] = caption(scene, self.target_style, np.random.default_rng((self.seed, self.split_id, index, 7)))
        return item


class ResumableSampler(DistributedSampler):
    """Training indices that a resumed run continues exactly, and that ranks share without overlap.

    The order is a function of `(seed, epoch)` alone (a seeded permutation, or index order when
    `shuffle` is off), never of the global RNG; rank `r` of `R` reads every R-th index; and the
    first `start` indices of this rank's share are skipped in the next epoch entered (a resumed run
    sets it from its step; `len` stays the whole epoch's, as Lightning's batch count expects).
    Subclassing `DistributedSampler` keeps Lightning from wrapping it again under DDP.

    Args:
        dataset: the dataset (only its length is read).
        shuffle: permute the indices each epoch.
        seed: seed of the permutation.
        num_replicas: R, the world size.
        rank: r, this process's rank.
        drop_last: drop the tail that does not divide among the ranks.
    """

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0, drop_last: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def __iter__(self):
        indices = list(super().__iter__())  # this rank's share of the (seed, epoch) order
        start, self.start = self.start, 0  # only the resumed epoch is entered part-way
        return iter(indices[start:])


def items_drawn(trainer, batch_size: int) -> int:
    """Training items a run draws: max_steps x batch size x gradient accumulation x ranks (every DDP rank its own share)."""
    return max(trainer.max_steps, 1) * batch_size * trainer.accumulate_grad_batches * trainer.num_devices * trainer.num_nodes


def check_loader_sizes(batch_size: int, num_workers: int) -> None:
    """A one-line error for a batch size or worker count no loader can use (raised when the data is built, before any run folder)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be 0 (load in the training process) or more, got {num_workers!r}")


class ImageTextData(L.LightningDataModule):
    """Shared loaders of the image-text DataModules: subclasses set `train_set`, `val_set`,
    `batch_size` and `num_workers`, and may override `collate`."""

    train_set: Dataset
    val_set: Dataset
    batch_size: int
    num_workers: int

    def collate(self, items: list) -> Batch:
        return collate_items(items)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        sampler = None
        if shuffle:  # training: a sampler that a resumed run continues from its step, sharded over ranks
            trainer = self.trainer
            world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            seed = getattr(self, "seed", 0)
            sampler = ResumableSampler(
                dataset, shuffle=not getattr(dataset, "ordered", False), seed=seed, num_replicas=world, rank=rank
            )  # a curriculum is read in order
            per_epoch = (sampler.num_samples // self.batch_size) * self.batch_size or sampler.num_samples  # items a rank trains on per epoch
            if trainer is not None and per_epoch:
                sampler.start = (trainer.global_step * trainer.accumulate_grad_batches * self.batch_size) % per_epoch  # already trained on, this epoch
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(dataset) > self.batch_size,  # full training batches, unless there is only one
            collate_fn=self.collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


class ShapesData(ImageTextData):
    """What the shapes-world DataModules share: render size, batch size, split sizes, seed, workers.

    Args:
        image_size: render size in pixels (32, 48 or 64 in the shipped recipes).
        batch_size: samples per batch.
        train_size: length of the training split (items are rendered on the fly, so this is cheap).
        val_size: size of the fixed validation split.
        seed: world seed.
        num_workers: DataLoader worker processes.
        feature_cache: a feature-cache directory built by `python -m kit cache` for this recipe:
            batches then carry the encoder's outputs (looked up by prompt and reference images), and
            training covers the cached items.
    """

    def __init__(
        self,
        image_size: int = 32,
        *,
        batch_size: int = 32,
        train_size: int = 1_000_000,
        val_size: int = 256,
        seed: int = 0,
        num_workers: int = 0,
        feature_cache: str | None = None,
    ) -> None:
        super().__init__()
        check_loader_sizes(batch_size, num_workers)
        if val_size < 1:
            raise ValueError(f"val_size must be at least 1 (the validation loss and sample grids read it), got {val_size}")
        self.save_hyperparameters()
        self.feature_cache = FeatureCache(feature_cache) if feature_cache else None
        if self.feature_cache is not None:  # train on the items whose features are cached
            train_size = min(train_size, self.feature_cache.manifest.get("data", {}).get("train_items", train_size))
        self.image_size, self.batch_size, self.train_size, self.val_size = image_size, batch_size, train_size, val_size
        self.seed, self.num_workers, self.channels = seed, num_workers, 3

    def setup(self, stage: str) -> None:
        """Warn when a feature cache covers fewer training items than the run will draw (it would cycle over them)."""
        trainer = self.trainer
        if self.feature_cache is None or trainer is None or stage != "fit" or trainer.max_steps <= 0:
            return
        needed = trainer.max_steps * self.batch_size * trainer.accumulate_grad_batches * trainer.world_size
        if len(self.train_set) < needed:
            rank_zero_warn(
                f"the feature cache covers {len(self.train_set)} training items but this run draws {needed} "
                f"({trainer.world_size} rank(s)): it will cycle over them; rebuild it with `python -m kit cache` and this run's settings"
            )

    def collate(self, items: list[dict]) -> Batch:
        """A `Batch`, with the cached encoder outputs of the items (prompt and reference images) when there is a cache."""
        if self.feature_cache is None:
            return collate_items(items)
        cached = collate_entries([self.feature_cache.get(cache_key(it["prompt"], it.get("references", ()))) for it in items])
        return collate_items(items, encoded=cached)


class ShapesDataModule(ShapesData):
    """The shapes world as a LightningDataModule, with a fixed validation set.

    Args:
        caption_styles: registers used for training captions (any of `kit.world.REGISTERS`; the default is the five of `STYLES`).
        caption_weights: probability of each training register (uniform when None).
        val_caption_style: the register of validation and preview captions.
        caption_curriculum: the first this many training items are captioned in the first register
            of `caption_styles` only (detailed: every attribute and place given), then the weighted mix.
            With a curriculum the training items are read in index order (each index is an independent
            random scene, so no shuffle is needed). A model learns to bind prompts to places far
            sooner from unambiguous captions; the mix then teaches it partial prompts.
        target_style: a register in which every item also carries the caption a task that writes text learns to
            write (`Batch.targets`; the joint model's text target, `canonical` in `recipes/unidiffuser.yaml`); the
            prompts stay the `caption_styles` mix, what it reads. None: none.
        count_curriculum: a curriculum over object counts, `[[end_item, max_objects], ...]` with
            increasing ends: a training item before a stage's end holds 1..max_objects objects
            (e.g. `[[3200, 1], [9600, 2]]`: one object for 200 steps at batch 16, then up to two
            until step 600, then the whole world). Items are then read in index order.
        kwargs: sizes, seed, workers and the feature cache (`ShapesData`).
    """

    def __init__(
        self,
        caption_styles: tuple[str, ...] = STYLES,
        caption_weights: list[float] | None = None,
        val_caption_style: str = "detailed",
        caption_curriculum: int = 0,
        count_curriculum: list[list[int]] | None = None,
        target_style: str | None = None,
        **kwargs,
    ) -> None:
        if caption_curriculum < 0:
            raise ValueError(f"caption_curriculum must be >= 0 items, got {caption_curriculum}")
        super().__init__(**kwargs)
        seed, image_size, train_size = self.seed, self.image_size, self.train_size
        self.train_set = ShapesDataset(
            train_size,
            "train",
            seed=seed,
            image_size=image_size,
            caption_styles=caption_styles,
            caption_weights=caption_weights,
            curriculum_items=caption_curriculum,
            count_stages=count_curriculum or (),
            target_style=target_style,
        )
        self.val_set = ShapesDataset(self.val_size, "val", seed=seed, image_size=image_size, caption_styles=[val_caption_style], target_style=target_style)

    def preview_prompts(self, n: int) -> list[str]:
        """The first `n` validation prompts: fixed prompts for sample grids."""
        return [self.val_set[i]["prompt"] for i in range(n)]

    def cache_keys(self, train_items: int) -> list[str]:
        """The prompts of the first `train_items` training items and of the validation set: what `python -m kit cache` encodes."""
        train = [self.train_set.scene_and_prompt(i)[1] for i in range(min(train_items, len(self.train_set)))]
        return train + [self.val_set.scene_and_prompt(i)[1] for i in range(len(self.val_set))]
