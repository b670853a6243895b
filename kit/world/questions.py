"""Questions about a scene and their one-word or one-phrase answers (the VLM's QA task).

Every answer is a fact of the scene, so a VLM's answers are scored by exact match:

    count       'how many circles are there?'             -> 'two'   ('none' for zero)
    total       'how many objects are there?'             -> 'three'
    colour      'what colour is the circle in the top left?' -> 'red'
    shape       'what shape is the red object on the left?'  -> 'circle'
    size        'what size is the blue square?'           -> 'small'
    where       'where is the blue square?'               -> 'in the top left'
    exists      'is there a green triangle?'              -> 'yes' / 'no'
    cell        'what is on the left?'                    -> 'a large red circle' / 'nothing'

Objects are named so that the name picks exactly one object of the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.world.captions import NUMBERS, canonical_place, noun_phrase, plural
from kit.world.scene import COLOURS, GRID, SHAPES, Scene, SceneObject

QUESTION_KINDS = ("count", "total", "colour", "shape", "size", "where", "exists", "cell")


@dataclass(frozen=True)
class Question:
    """A question about a scene and its answer."""

    kind: str
    question: str
    answer: str


def _number(n: int) -> str:
    return "none" if n == 0 else NUMBERS[n]


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _unique_name(obj: SceneObject, scene: Scene, leave_out: str) -> str:
    """'the red circle', 'the circle in the top left', ...: names `obj` uniquely without the attribute `leave_out`."""
    for keys in (("colour", "shape"), ("size", "colour", "shape"), ("shape",), ("size", "shape")):
        keys = tuple(k for k in keys if k != leave_out)
        if keys and sum(all(getattr(o, k) == getattr(obj, k) for k in keys) for o in scene.objects) == 1:
            words = [getattr(obj, k) for k in ("size", "colour") if k in keys]
            return "the " + " ".join([*words, obj.shape if "shape" in keys else "object"])
    noun = "object" if leave_out == "shape" else obj.shape
    return f"the {noun} {canonical_place(obj)}"


def ask(scene: Scene, kind: str, rng: np.random.Generator) -> Question:
    """A random question of `kind` (one of `QUESTION_KINDS`) about `scene`."""
    if kind == "count":
        shape = _pick(rng, list(SHAPES))
        n = sum(o.shape == shape for o in scene.objects)
        return Question(kind, f"how many {plural(shape)} are there?", _number(n))
    if kind == "total":
        return Question(kind, "how many objects are there?", _number(len(scene)))
    if kind == "exists":
        colour, shape = _pick(rng, list(COLOURS)), _pick(rng, list(SHAPES))
        if rng.random() < 0.5:  # half the time ask about an object that is there
            obj = _pick(rng, list(scene.objects))
            colour, shape = obj.colour, obj.shape
        present = any(o.colour == colour and o.shape == shape for o in scene.objects)
        return Question(kind, f"is there {noun_phrase([colour, shape])}?", "yes" if present else "no")
    if kind == "cell":
        row, col = int(rng.integers(GRID)), int(rng.integers(GRID))
        if rng.random() < 0.7:  # mostly ask about an occupied cell
            row, col = _pick(rng, list(scene.objects)).cell
        found = [o for o in scene.objects if o.cell == (row, col)]
        answer = noun_phrase([found[0].size, found[0].colour, found[0].shape]) if found else "nothing"
        return Question(kind, f"what is {canonical_place((row, col))}?", answer)
    obj = _pick(rng, list(scene.objects))
    if kind == "colour":
        return Question(kind, f"what colour is {_unique_name(obj, scene, 'colour')}?", obj.colour)
    if kind == "shape":
        return Question(kind, f"what shape is {_unique_name(obj, scene, 'shape')}?", obj.shape)
    if kind == "size":
        return Question(kind, f"what size is {_unique_name(obj, scene, 'size')}?", obj.size)
    if kind == "where":
        name = _unique_name(obj, scene, "place")
        if " in the " in name or " at the " in name or " on the " in name:  # the only unique name uses the place
            return ask(scene, "cell", rng)
        return Question(kind, f"where is {name}?", canonical_place(obj))
    raise ValueError(f"unknown question kind {kind!r}; known: {', '.join(QUESTION_KINDS)}")
