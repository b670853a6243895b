"""Scoring generated images against a prompt suite with the oracle.

GenEval-style: an image is correct when the scene the oracle reads satisfies every
constraint of its prompt; per-category accuracy is the mean over the category's images and
`overall` the mean over categories. DPG-style: for dense prompts, the fraction of atomic
facts (each object's existence, colour, size, place) the image satisfies under the best
matching of described to detected objects, overall and per attribute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from kit.world.oracle import Oracle
from kit.world.parser import parse_caption
from kit.world.scene import Scene
from kit.world.suites import CATEGORIES, SuiteEntry


def score_scenes(entries: Sequence[SuiteEntry], scenes: Sequence[Sequence[Scene]]) -> dict:
    """Score detected scenes: `scenes[i]` holds the scenes read from the images of `entries[i]`.

    Returns a JSON-ready dict: `overall`, `categories` (accuracy per category), `dpg`
    (`score` and `per_attribute` on dense prompts), and counts.
    """
    if len(entries) != len(scenes):
        raise ValueError(f"{len(entries)} entries but {len(scenes)} lists of scenes")
    correct: dict[str, list[float]] = defaultdict(list)
    facts: list[float] = []
    per_attribute: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for entry, detected in zip(entries, scenes):
        spec = parse_caption(entry.prompt)
        for scene in detected:
            correct[entry.category].append(float(spec.satisfied_by(scene)))
            if entry.category == "dense":
                breakdown = spec.fact_breakdown(scene)
                facts.append(sum(g for g, _ in breakdown.values()) / sum(t for _, t in breakdown.values()))
                for name, (got, total) in breakdown.items():
                    per_attribute[name][0] += got
                    per_attribute[name][1] += total
    order = [c for c in CATEGORIES if correct[c]] + sorted(c for c in correct if c not in CATEGORIES)  # suite categories, then a user's own
    categories = {c: float(np.mean(correct[c])) for c in order}
    return {
        "overall": float(np.mean(list(categories.values()))) if categories else 0.0,
        "categories": categories,
        "dpg": {
            "score": float(np.mean(facts)) if facts else None,
            "per_attribute": {k: got / total for k, (got, total) in sorted(per_attribute.items()) if total},
        },
        "num_prompts": len(entries),
        "num_images": sum(len(s) for s in scenes),
    }


def score_images(entries: Sequence[SuiteEntry], images: Sequence[Sequence], oracle: Oracle | None = None, progress: bool = False) -> dict:
    """Read every image with the oracle, then `score_scenes`. `images[i]` are the images of `entries[i]`
    (a progress bar over the images on stderr when `progress`)."""
    oracle = oracle or Oracle()
    with tqdm(total=sum(len(imgs) for imgs in images), desc="reading", unit="image", disable=not progress) as bar:
        scenes = []
        for imgs in images:
            scenes.append([oracle.read(img) for img in imgs])
            bar.update(len(imgs))
    return score_scenes(entries, scenes)
