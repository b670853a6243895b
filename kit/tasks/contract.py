"""What a task declares about itself, beside `kit.tasks.base.DiffusionTask`: its capabilities, the settings of
its evaluation and the per-layer weights it can log. Verbs, callbacks and `kit.testing.check_task` read these."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from torch import Tensor


class Capability(StrEnum):
    """What a task can be asked to do (`DiffusionTask.capabilities`)."""

    TEXT_TO_IMAGE = "text_to_image"
    """`generate(prompts)` draws an image per prompt."""
    REFERENCES = "references"
    """`generate(prompts, references=...)` reads reference images (editing, multi-reference generation)."""
    IMAGE_TO_TEXT = "image_to_text"
    """The task writes captions of images (`sample("i2t", images=...)`)."""


@dataclass(frozen=True)
class EvaluationSettings:
    """How `DiffusionTask.evaluate` samples and scores.

    Args:
        images_per_prompt: images generated per prompt.
        batch_size: prompts per generation batch.
        seed: seed of the first batch's noise.
        guidance_scale: guidance scale (the task's default when None).
        num_steps: sampler steps (the sampler's own when None).
        num_scenes: test scenes for what starts from an image (captions, joint pairs); tasks without it ignore it.
        progress: progress bars on stderr.
    """

    images_per_prompt: int = 1
    batch_size: int = 64
    seed: int = 0
    guidance_scale: float | None = None
    num_steps: int | None = None
    num_scenes: int = 128
    progress: bool = False


class LayerWeights(NamedTuple):
    """A task's per-layer weights for logging: one weight per encoder layer, named by `source` (the head's class)."""

    layers: tuple[int, ...]
    weights: Tensor
    source: str
