"""The shapes world's edits as training data: source image(s) + instruction -> target image.

An item is `{"image": target, "prompt": instruction, "references": [source images], "kind": ...}`.
A training stream mixes, item by item, single-reference edits of every kind (`kit.world.edits`),
plain text-to-image items (no references; the paper keeps some so the model stays a generator),
reconstructions (the reference is the target, about 3 % in the paper's recipe) and, when asked,
multi-reference compositions (off by default: the claim is that they work zero-shot).

Sources are training scenes, never held-out ones, so the editing suites (`kit.analysis.edit_eval`)
edit scenes the model never saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from kit.images import image_to_tensor
from kit.tasks.data import SPLITS, ImageTextData, check_loader_sizes
from kit.world import STYLES, caption, render, scene_rng
from kit.world.edits import EDIT_KINDS, sample_composition, sample_edit
from kit.world.scene import Scene, sample_training_scene

RECONSTRUCTION_PROMPTS = ("the same image", "copy the image", "reproduce the image")
EDIT_SPLIT_OFFSET = 8
"""Editing items draw from their own random streams (`scene_rng` split ids 8 + the split's)."""


def edit_example(rng: np.random.Generator, kinds: Sequence[str] = EDIT_KINDS) -> tuple[str, str, list[Scene], Scene]:
    """A single-reference edit of a fresh training scene: `(kind, instruction, [source], target)`."""
    for _ in range(1000):
        scene = sample_training_scene(rng)
        try:
            edit = sample_edit(rng, scene, tuple(kinds))
        except ValueError:  # none of `kinds` applies to this scene (e.g. swap with one object)
            continue
        return edit.kind, edit.instruction, [edit.source], edit.target
    raise ValueError(f"no scene of the world takes an edit of kinds {list(kinds)}")


class ShapesEditDataset(Dataset):
    """Items `index -> {image, prompt, references, kind}` of one split: a deterministic mix of edits,
    text-to-image items, reconstructions and compositions.

    Args:
        length: number of items.
        split: `train`, `val` or `test` (disjoint random streams).
        seed: world seed.
        image_size: render side of targets and references.
        kinds: the edit kinds drawn.
        text_to_image_fraction: share of plain text-to-image items (a caption, no reference).
        reconstruction_fraction: share of reconstructions (the reference is the target).
        composition_fraction: share of 2-3-reference compositions.
        caption_style: the register of the text-to-image items' captions.
    """

    def __init__(
        self,
        length: int,
        split: str = "train",
        seed: int = 0,
        image_size: int = 48,
        kinds: Sequence[str] = EDIT_KINDS,
        text_to_image_fraction: float = 0.0,
        reconstruction_fraction: float = 0.0,
        composition_fraction: float = 0.0,
        caption_style: str = "detailed",
    ) -> None:
        unknown = set(kinds) - set(EDIT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"edit kinds must be a non-empty subset of {', '.join(EDIT_KINDS)}; got {list(kinds)}")
        shares = (text_to_image_fraction, reconstruction_fraction, composition_fraction)
        if any(f < 0 for f in shares) or sum(shares) > 1:
            raise ValueError(f"the text-to-image, reconstruction and composition fractions must be >= 0 and sum to at most 1, got {shares}")
        if caption_style not in STYLES:
            raise ValueError(f"unknown caption style {caption_style!r}; known: {', '.join(STYLES)}")
        self.length, self.seed, self.image_size = length, seed, image_size
        self.split_id = EDIT_SPLIT_OFFSET + SPLITS[split]
        self.kinds = tuple(kinds)
        self.bounds = np.cumsum(shares)
        self.caption_style = caption_style

    def __len__(self) -> int:
        return self.length

    def example(self, index: int) -> tuple[str, str, list[Scene], Scene]:
        """Item `index` without renders: `(kind, prompt, reference scenes, target scene)`."""
        rng = scene_rng(self.seed, self.split_id, index)
        draw = rng.random()
        if draw < self.bounds[0]:
            scene = sample_training_scene(rng)
            return "text_to_image", caption(scene, self.caption_style, rng), [], scene
        if draw < self.bounds[1]:
            scene = sample_training_scene(rng)
            return "reconstruction", RECONSTRUCTION_PROMPTS[int(rng.integers(len(RECONSTRUCTION_PROMPTS)))], [scene], scene
        if draw < self.bounds[2]:
            composition = sample_composition(rng)
            return f"compose{len(composition.references)}", composition.instruction, list(composition.references), composition.target
        return edit_example(rng, self.kinds)

    def __getitem__(self, index: int) -> dict:
        kind, prompt, references, target = self.example(index)
        draw = lambda scene: image_to_tensor(render(scene, self.image_size))  # noqa: E731
        return {"image": draw(target), "prompt": prompt, "references": [draw(s) for s in references], "kind": kind}


class ShapesEditData(ImageTextData):
    """The shapes world's edits as a LightningDataModule (validation: edits only).

    Args:
        image_size: render size of targets and references (the VLM's processor resizes the references to its own budget).
        batch_size: samples per batch.
        train_size: length of the training split (rendered on the fly).
        val_size: size of the fixed validation split.
        seed: world seed.
        kinds: the edit kinds trained on.
        text_to_image_fraction: share of plain text-to-image items in training.
        reconstruction_fraction: share of reconstructions in training (the paper's recipe: about 3 %).
        composition_fraction: share of 2-3-reference compositions in training (0: compositions stay zero-shot).
        caption_style: the register of the text-to-image items' captions.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        image_size: int = 48,
        batch_size: int = 16,
        train_size: int = 1_000_000,
        val_size: int = 64,
        seed: int = 0,
        kinds: tuple[str, ...] = EDIT_KINDS,
        text_to_image_fraction: float = 0.25,
        reconstruction_fraction: float = 0.03,
        composition_fraction: float = 0.0,
        caption_style: str = "detailed",
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_loader_sizes(batch_size, num_workers)
        self.save_hyperparameters()
        self.seed, self.image_size, self.channels = seed, image_size, 3
        self.batch_size, self.num_workers = batch_size, num_workers
        mix = dict(text_to_image_fraction=text_to_image_fraction, reconstruction_fraction=reconstruction_fraction, composition_fraction=composition_fraction)
        self.train_set = ShapesEditDataset(train_size, "train", seed, image_size, kinds, caption_style=caption_style, **mix)
        self.val_set = ShapesEditDataset(val_size, "val", seed, image_size, kinds)

    def preview_prompts(self, n: int) -> list[str]:
        """The first `n` validation instructions."""
        return [self.val_set.example(i)[1] for i in range(n)]

    def preview_items(self, n: int) -> list[dict]:
        """The first `n` validation items (instruction, references, target), for sample grids."""
        return [self.val_set[i] for i in range(n)]
