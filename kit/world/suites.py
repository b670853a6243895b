"""Evaluation prompt suites, built from held-out scenes and stored as versioned JSONL files.

Each entry is a prompt, its category and a ground-truth scene that satisfies it (the
`--suite gt` anchor renders these). Categories follow GenEval, with DPG-style dense prompts:

    single_object       'a large circle in the top left'            shape, size, place
    two_objects         'a small square and a large triangle'       two shapes (with or without sizes)
    counting            'three red circles'                         exact count of a kind
    colours             'a small blue diamond', 'a red circle'      colour of one object (others may be present)
    position            'a red circle to the left of a blue square' spatial relation
    colour_attribution  'a red circle and a blue square'            binding colours to shapes
    dense               4 objects with size, colour, shape, place   16 attributes (DPG-style)

`build_suite` is deterministic; the shipped file is its output (a test checks they agree),
so a suite version never changes under a researcher's feet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.world.captions import detailed as detailed_caption
from kit.world.captions import join, noun_phrase, place, relation
from kit.world.parser import parse_caption
from kit.world.scene import Scene, SceneObject, is_held_out, sample_scene, scene_rng

SUITES_DIR = Path(__file__).resolve().parent.parent / "assets" / "suites"
CATEGORIES = ("single_object", "two_objects", "counting", "colours", "position", "colour_attribution", "dense")
SUITE_SPLIT = 9
"""Scene split the suites draw from (then filtered to held-out scenes)."""


@dataclass(frozen=True)
class SuiteEntry:
    """One evaluation prompt.

    Args:
        id: stable identifier, `<category>-<number>`.
        category: one of `CATEGORIES`.
        prompt: the text given to the model.
        scene: a ground-truth scene that satisfies the prompt.
    """

    id: str
    category: str
    prompt: str
    scene: Scene

    def to_json(self) -> str:
        objects = [[o.shape, o.colour, o.size, o.row, o.col, round(o.jitter[0], 4), round(o.jitter[1], 4)] for o in self.scene.objects]
        return json.dumps({"id": self.id, "category": self.category, "prompt": self.prompt, "scene": objects})

    @staticmethod
    def from_json(line: str) -> SuiteEntry:
        d = json.loads(line)
        scene = Scene(tuple(SceneObject(s, c, z, r, k, (jx, jy)) for s, c, z, r, k, jx, jy in d["scene"]))
        return SuiteEntry(d["id"], d["category"], d["prompt"], scene)


def _same_kind_scene(rng: np.random.Generator) -> Scene:
    """2-4 objects of one shape and colour (sizes free) for counting prompts."""
    n = int(rng.integers(2, 5))
    base = sample_scene(rng, n)
    shape, colour = base.objects[0].shape, base.objects[0].colour
    return Scene(tuple(SceneObject(shape, colour, o.size, o.row, o.col, o.jitter) for o in base.objects))


def _prompt(category: str, scene: Scene, rng: np.random.Generator) -> str | None:
    """The category's prompt for `scene`, or None when the scene does not fit the category."""
    objs = scene.objects
    if category == "single_object":
        return f"{noun_phrase([objs[0].size, objs[0].shape])} {place(objs[0], rng)}"
    if category == "two_objects":
        if objs[0].shape == objs[1].shape:
            return None
        sized = bool(rng.integers(2))
        return join([noun_phrase([o.size, o.shape] if sized else [o.shape]) for o in objs])
    if category == "counting":
        return noun_phrase([objs[0].colour, objs[0].shape], len(objs))
    if category == "colours":
        sized = bool(rng.integers(2))
        return noun_phrase([objs[0].size, objs[0].colour, objs[0].shape] if sized else [objs[0].colour, objs[0].shape])
    if category == "position":
        text = relation(scene, rng)
        return text if " of " in text or " above " in text or " below " in text or " over " in text else None
    if category == "colour_attribution":
        if objs[0].shape == objs[1].shape or objs[0].colour == objs[1].colour:
            return None
        return join([noun_phrase([o.colour, o.shape]) for o in objs])
    if category == "dense":
        return detailed_caption(scene, rng)
    raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")


_SCENES: dict[str, Callable[[np.random.Generator], Scene]] = {
    "single_object": lambda rng: sample_scene(rng, 1),
    "two_objects": lambda rng: sample_scene(rng, 2),
    "counting": _same_kind_scene,
    "colours": lambda rng: sample_scene(rng, int(rng.integers(1, 3))),
    "position": lambda rng: sample_scene(rng, 2),
    "colour_attribution": lambda rng: sample_scene(rng, 2),
    "dense": lambda rng: sample_scene(rng, 4),
}


def build_suite(per_category: int = 80, seed: int = 0) -> list[SuiteEntry]:
    """Draw held-out scenes per category until `per_category` distinct prompts (or the category's supply) are found."""
    entries = []
    for c_index, category in enumerate(CATEGORIES):
        seen: set[str] = set()
        misses = 0
        index = 0
        while len(seen) < per_category and misses < 20000:
            rng = scene_rng(seed, SUITE_SPLIT, c_index * 1_000_000 + index)
            index += 1
            scene = _SCENES[category](rng)
            prompt = _prompt(category, scene, rng) if is_held_out(scene) else None
            if prompt is None or prompt in seen:
                misses += 1
                continue
            if not parse_caption(prompt).satisfied_by(scene):  # the suite must be consistent with its own scorer
                raise AssertionError(f"suite prompt {prompt!r} is not satisfied by its scene {scene}")
            seen.add(prompt)
            entries.append(SuiteEntry(f"{category}-{len(seen):03d}", category, prompt, scene))
    return entries


def suite_path(name: str, version: int) -> Path:
    return SUITES_DIR / f"{name}_v{version}.jsonl"


def write_suite(entries: list[SuiteEntry], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(e.to_json() + "\n" for e in entries))


def load_suite(name: str = "t2i", version: int = 1) -> list[SuiteEntry]:
    """A shipped suite. Raise with the available names if it does not exist."""
    path = suite_path(name, version)
    if not path.is_file():
        shipped = sorted(p.stem for p in SUITES_DIR.glob("*.jsonl")) if SUITES_DIR.is_dir() else []
        raise FileNotFoundError(f"no suite {name!r} version {version} ({path}); shipped suites: {', '.join(shipped) or 'none'}")
    return [SuiteEntry.from_json(line) for line in path.read_text().splitlines() if line.strip()]


class PromptFileError(ValueError):
    """A user prompt file that cannot be read at all (missing, empty, or not one prompt a line)."""


def load_prompt_file(path: str | Path) -> tuple[list[SuiteEntry], list[str]]:
    """A user's prompts -> (entries, problems), scored like a suite.

    The file holds one prompt a line (`.txt`), or JSON objects one a line (`.jsonl`) with a
    `prompt` and optionally a `category` (one of `CATEGORIES` or any name; 'custom' when absent)
    and an `id`. Blank lines and lines starting with '#' are skipped. A prompt the parser cannot
    read is not an entry: it is reported in `problems` as 'line N: reason', and the rest is kept.
    Entries have no ground-truth scene (an empty one), so the `gt` anchor cannot score them.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"no prompt file {str(path)!r}")
    entries, problems = [], []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        category, ident = "custom", None
        if path.suffix == ".jsonl" or line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f'line {number}: not JSON ({e.msg}); expected {{"prompt": ..., "category": ...}}')
                continue
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                problems.append(f"line {number}: a JSON line needs a string 'prompt'")
                continue
            line, category, ident = record["prompt"], str(record.get("category", "custom")), record.get("id")
        try:
            parse_caption(line)
        except ValueError as e:  # CaptionParseError names the phrase
            problems.append(f"line {number}: {e}")
            continue
        entries.append(SuiteEntry(str(ident or f"{category}-{len(entries) + 1:03d}"), category, line, Scene(())))
    if not entries:
        raise PromptFileError(f"{path} has no prompt the shapes-world parser can read" + (f" ({problems[0]})" if problems else ""))
    return entries, problems
