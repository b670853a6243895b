"""Run a prompt suite through a model (or an anchor) and score it: shared by `kit evaluate` and the fit callback."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from kit.analysis.scoring import score_images
from kit.world.render import render
from kit.world.suites import SuiteEntry

SOURCES = ("t2i", "gt", "noise")


def subset(entries: Sequence[SuiteEntry], per_category: int | None) -> list[SuiteEntry]:
    """The first `per_category` entries of every category (all when None)."""
    if per_category is None:
        return list(entries)
    taken: dict[str, int] = defaultdict(int)
    out = []
    for e in entries:
        if taken[e.category] < per_category:
            taken[e.category] += 1
            out.append(e)
    return out


@torch.no_grad()
def generate_suite(
    module,
    entries: Sequence[SuiteEntry],
    images_per_prompt: int = 1,
    *,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    references: Sequence[list] | None = None,
    **generate_kwargs,
) -> list[list[torch.Tensor]]:
    """`images[i][j]`: image j `(C, H, W)` in [-1, 1] for entry i, from `module.generate` (a progress bar
    over the images on stderr when `progress`); `references[i]` are entry i's reference images, if any."""
    prompts = [e.prompt for e in entries]
    images: list[list[torch.Tensor]] = [[] for _ in entries]
    with tqdm(total=len(prompts) * images_per_prompt, desc="generating", unit="image", disable=not progress) as bar:
        for j in range(images_per_prompt):
            for start in range(0, len(prompts), batch_size):
                batch = prompts[start : start + batch_size]
                refs = {} if references is None else {"references": list(references[start : start + batch_size])}
                out = module.generate(batch, seed=seed + 1_000_003 * j + start, **refs, **generate_kwargs).cpu()
                for i, image in enumerate(out):
                    images[start + i].append(image)
                bar.update(len(batch))
    return images


def anchor_images(entries: Sequence[SuiteEntry], source: str, image_size: int, images_per_prompt: int = 1, seed: int = 0) -> list[list[np.ndarray]]:
    """Sanity anchors: 'gt' renders each entry's own scene; 'noise' draws uniform random images."""
    if source == "gt":
        return [[render(e.scene, image_size)] * images_per_prompt for e in entries]
    if source == "noise":
        rng = np.random.default_rng(seed)
        return [[rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8) for _ in range(images_per_prompt)] for _ in entries]
    raise ValueError(f"unknown anchor {source!r}; anchors: gt, noise")


def evaluate_module(module, entries: Sequence[SuiteEntry], images_per_prompt: int = 1, **kwargs) -> dict:
    """Generate every prompt `images_per_prompt` times and score the images."""
    return score_images(entries, generate_suite(module, entries, images_per_prompt, **kwargs))
