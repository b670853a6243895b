"""Scoring editing and zero-shot multi-reference composition with the oracle.

The suite (`edit`, version `EDIT_SUITE_VERSION`) is built deterministically: for every edit kind,
`per_kind` edits of held-out source scenes (scenes training never draws), and `compositions` 2- and
3-reference compositions. Each output image is read back into a scene by the oracle:

- **success**: the output's scene equals the target scene (every object, attribute and place);
- **preservation**: every object the instruction does not touch (those of the source that the
  target keeps unchanged) is in the output unchanged;
- **composition**: success on the 2- and 3-reference compositions (`compose2`, `compose3`), and
  `compose2` as a fraction of the single-reference success averaged over kinds.

Anchors check the instrument: `target` (the target's own render: success 1) and `source` (the
source returned unchanged: success 0 where the edit changes the scene, preservation 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kit.analysis.evaluate import generate_suite
from kit.images import image_to_tensor
from kit.world.edits import EDIT_KINDS, possible_kinds, sample_composition, sample_edit
from kit.world.oracle import Oracle
from kit.world.render import render
from kit.world.scene import Scene, is_held_out, sample_scene

EDIT_SUITE_VERSION = 1
COMPOSE_KINDS = ("compose2", "compose3")
ANCHORS = ("target", "source")


@dataclass(frozen=True)
class EditCase:
    """One case of the suite: `kind` is an edit kind or `compose2` / `compose3`."""

    kind: str
    instruction: str
    sources: tuple[Scene, ...]
    target: Scene


def _held_out_scene(rng: np.random.Generator) -> Scene:
    while True:
        scene = sample_scene(rng)
        if is_held_out(scene):
            return scene


def build_edit_suite(per_kind: int = 20, compositions: int = 20, seed: int = 0, kinds: Sequence[str] = EDIT_KINDS) -> list[EditCase]:
    """`per_kind` edits of held-out scenes for each of `kinds`, then `compositions` cases of 2 and of 3 references."""
    rng = np.random.default_rng([seed, 71, EDIT_SUITE_VERSION, 0])  # four entries: no scene_rng stream
    cases: list[EditCase] = []
    for kind in kinds:
        made = 0
        while made < per_kind:
            scene = _held_out_scene(rng)
            if kind in possible_kinds(scene):
                edit = sample_edit(rng, scene, (kind,))
                cases.append(EditCase(kind, edit.instruction, (edit.source,), edit.target))
                made += 1
    for n in (2, 3):
        for _ in range(compositions):
            comp = sample_composition(rng, n)
            cases.append(EditCase(f"compose{n}", comp.instruction, comp.references, comp.target))
    return cases


def preserved(source: Scene, target: Scene, output: Scene) -> bool:
    """Whether every object of `source` that `target` keeps unchanged is in `output` unchanged."""
    return (source.facts() & target.facts()) <= output.facts()


def score_edit_scenes(cases: Sequence[EditCase], outputs: Sequence[Sequence[Scene]]) -> dict:
    """Per kind `{success, preservation, n}` over every output image, and the summary figures."""
    per_kind: dict[str, dict] = {}
    for kind in dict.fromkeys(c.kind for c in cases):
        pairs = [(c, o) for c, scenes in zip(cases, outputs) if c.kind == kind for o in scenes]
        success = float(np.mean([o.facts() == c.target.facts() for c, o in pairs]))
        entry = {"success": success, "n": len(pairs)}
        if kind not in COMPOSE_KINDS:
            entry["preservation"] = float(np.mean([preserved(c.sources[0], c.target, o) for c, o in pairs]))
        per_kind[kind] = entry
    edits = [k for k in per_kind if k not in COMPOSE_KINDS]
    success = float(np.mean([per_kind[k]["success"] for k in edits])) if edits else None
    out: dict = {"kinds": per_kind, "success": success}
    out["preservation"] = float(np.mean([per_kind[k]["preservation"] for k in edits])) if edits else None
    composition = {k: per_kind[k]["success"] for k in COMPOSE_KINDS if k in per_kind}
    if composition:
        ratio = composition["compose2"] / success if "compose2" in composition and success else None
        out["composition"] = {**composition, "compose2_over_single": ratio}
    return out


def references_of(cases: Sequence[EditCase], image_size: int) -> list[list]:
    """Each case's source renders, `(3, S, S)` tensors in [-1, 1]."""
    return [[image_to_tensor(render(s, image_size)) for s in c.sources] for c in cases]


def anchor_outputs(cases: Sequence[EditCase], anchor: str, image_size: int) -> list[list[np.ndarray]]:
    """The anchor's image of each case: the target's render, or the (first) source returned unchanged."""
    if anchor not in ANCHORS:
        raise ValueError(f"unknown anchor {anchor!r}; anchors: {', '.join(ANCHORS)}")
    return [[render(c.target if anchor == "target" else c.sources[0], image_size)] for c in cases]


def evaluate_edits(module, cases: Sequence[EditCase], image_size: int, images_per_case: int = 1, oracle: Oracle | None = None, **generate_kwargs) -> dict:
    """Generate every case `images_per_case` times from its instruction and source renders, and score it."""
    images = generate_suite(module, cases_as_entries(cases), images_per_case, references=references_of(cases, image_size), **generate_kwargs)
    return score_edit_images(cases, images, oracle)


def score_edit_images(cases: Sequence[EditCase], images: Sequence[Sequence], oracle: Oracle | None = None) -> dict:
    """Read every output with the oracle, then `score_edit_scenes`."""
    oracle = oracle or Oracle()
    return score_edit_scenes(cases, [[oracle.read(im) for im in imgs] for imgs in images])


@dataclass(frozen=True)
class _Entry:
    prompt: str


def cases_as_entries(cases: Sequence[EditCase]) -> list[_Entry]:
    """The cases as `generate_suite` entries (their instructions)."""
    return [_Entry(c.instruction) for c in cases]
