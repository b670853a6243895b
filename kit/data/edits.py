"""The shapes world's edits as training data: source image(s) + instruction -> target image.

An item is `{"image": target, "prompt": instruction, "references": [source images], "kind": ...}`.
A training stream mixes, item by item, single-reference edits of every kind (`kit.world.edits`),
plain text-to-image items (no references; the paper keeps some so the model stays a generator),
reconstructions (the reference is the target, about 3 % in the paper's recipe) and, when asked,
multi-reference compositions (off by default: the claim is that they work zero-shot).

Every image is a training scene (sources, targets and references: none is held out), so the editing
suites (`kit.analysis.edit_eval`) edit scenes the model never saw, and no text-to-image suite scene is
ever a training image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kit.data.shapes import SceneSplit, ShapesData
from kit.images import image_to_tensor
from kit.world import REGISTERS, caption, render
from kit.world.edits import EDIT_KINDS, sample_composition, sample_edit
from kit.world.scene import Scene, is_held_out, sample_training_scene

RECONSTRUCTION_PROMPTS = ("the same image", "copy the image", "reproduce the image")
EDIT_SPLIT_OFFSET = 20
"""Editing items draw from their own random streams (split ids 20 + the split's; the world's other
streams use ids below 20)."""


def edit_example(rng: np.random.Generator, kinds: Sequence[str] = EDIT_KINDS) -> tuple[str, str, list[Scene], Scene]:
    """A single-reference edit of a training scene into a training scene: `(kind, instruction, [source], target)`."""
    for _ in range(1000):
        scene = sample_training_scene(rng)
        try:
            edit = sample_edit(rng, scene, tuple(kinds))
        except ValueError:  # none of `kinds` applies to this scene (e.g. swap with one object)
            continue
        if not is_held_out(edit.target):  # no held-out scene is ever a training image
            return edit.kind, edit.instruction, [edit.source], edit.target
    raise ValueError(f"no scene of the world takes an edit of kinds {list(kinds)}")


def composition_example(rng: np.random.Generator) -> tuple[str, str, list[Scene], Scene]:
    """A 2-3-reference composition whose references and target are all training scenes."""
    while True:
        composition = sample_composition(rng)
        if not any(is_held_out(s) for s in (*composition.references, composition.target)):
            return f"compose{len(composition.references)}", composition.instruction, list(composition.references), composition.target


class ShapesEditDataset(SceneSplit):
    """Items `index -> {image, prompt, references, kind}` of one split: a deterministic mix of edits,
    text-to-image items, reconstructions and compositions.

    Args:
        length: number of items.
        split: `train`, `val` or `test` (disjoint random streams).
        kinds: the edit kinds drawn.
        text_to_image_fraction: share of plain text-to-image items (a caption, no reference).
        reconstruction_fraction: share of reconstructions (the reference is the target).
        composition_fraction: share of 2-3-reference compositions.
        caption_style: the register of the text-to-image items' captions.
        kwargs: `seed` and `image_size` (`SceneSplit`).
    """

    split_offset = EDIT_SPLIT_OFFSET

    def __init__(
        self,
        length: int,
        split: str = "train",
        *,
        kinds: Sequence[str] = EDIT_KINDS,
        text_to_image_fraction: float = 0.0,
        reconstruction_fraction: float = 0.0,
        composition_fraction: float = 0.0,
        caption_style: str = "detailed",
        **kwargs,
    ) -> None:
        unknown = set(kinds) - set(EDIT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"edit kinds must be a non-empty subset of {', '.join(EDIT_KINDS)}; got {list(kinds)}")
        shares = (text_to_image_fraction, reconstruction_fraction, composition_fraction)
        if any(f < 0 for f in shares) or sum(shares) > 1:
            raise ValueError(f"the text-to-image, reconstruction and composition fractions must be >= 0 and sum to at most 1, got {shares}")
        if caption_style not in REGISTERS:
            raise ValueError(f"unknown caption style {caption_style!r}; known: {', '.join(REGISTERS)}")
        super().__init__(length, split, **kwargs)
        self.kinds = tuple(kinds)
        self.bounds = np.cumsum(shares)
        self.caption_style = caption_style

    def example(self, index: int) -> tuple[str, str, list[Scene], Scene]:
        """Item `index` without renders: `(kind, prompt, reference scenes, target scene)`."""
        rng = self.rng(index)
        draw = rng.random()
        if draw < self.bounds[0]:
            scene = sample_training_scene(rng)
            return "text_to_image", caption(scene, self.caption_style, rng), [], scene
        if draw < self.bounds[1]:
            scene = sample_training_scene(rng)
            return "reconstruction", RECONSTRUCTION_PROMPTS[int(rng.integers(len(RECONSTRUCTION_PROMPTS)))], [scene], scene
        if draw < self.bounds[2]:
            return composition_example(rng)
        return edit_example(rng, self.kinds)

    def __getitem__(self, index: int) -> dict:
        kind, prompt, references, target = self.example(index)
        draw = lambda scene: image_to_tensor(render(scene, self.image_size))  # noqa: E731
        return {"image": draw(target), "prompt": prompt, "references": [draw(s) for s in references], "kind": kind}


class ShapesEditData(ShapesData):
    """The shapes world's edits as a LightningDataModule (validation: edits only).

    Args:
        kinds: the edit kinds trained on.
        text_to_image_fraction: share of plain text-to-image items in training.
        reconstruction_fraction: share of reconstructions in training (the paper's recipe: about 3 %).
        composition_fraction: share of 2-3-reference compositions in training (0: compositions stay zero-shot).
        caption_style: the register of the text-to-image items' captions.
        kwargs: sizes, seed, workers and the feature cache (`ShapesData`; the VLM's processor resizes the references to its own budget).
    """

    def __init__(
        self,
        kinds: tuple[str, ...] = EDIT_KINDS,
        text_to_image_fraction: float = 0.25,
        reconstruction_fraction: float = 0.03,
        composition_fraction: float = 0.0,
        caption_style: str = "detailed",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        mix = dict(text_to_image_fraction=text_to_image_fraction, reconstruction_fraction=reconstruction_fraction, composition_fraction=composition_fraction)
        where = dict(seed=self.seed, image_size=self.image_size)
        self.train_set = ShapesEditDataset(self.train_size, "train", kinds=kinds, caption_style=caption_style, **mix, **where)
        self.val_set = ShapesEditDataset(self.val_size, "val", kinds=kinds, **where)

    def cache_keys(self, train_items: int) -> list[tuple[str, list[np.ndarray]]]:
        """`(instruction, reference renders)` of the first `train_items` training items and of the validation
        set: what `python -m kit cache` encodes (the cache keys each on its prompt and its images' pixels)."""

        def items(dataset: ShapesEditDataset, n: int):
            for i in range(min(n, len(dataset))):
                _, prompt, references, _ = dataset.example(i)
                yield prompt, [render(s, self.image_size) for s in references]

        return [*items(self.train_set, train_items), *items(self.val_set, len(self.val_set))]

    def preview_prompts(self, n: int) -> list[str]:
        """The first `n` validation instructions."""
        return [self.val_set.example(i)[1] for i in range(n)]

    def preview_items(self, n: int) -> list[dict]:
        """The first `n` validation items (instruction, references, target), for sample grids."""
        return [self.val_set[i] for i in range(n)]
