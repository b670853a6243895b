"""Editing and multi-reference data: source scene + instruction -> target scene.

Edits (one object changes; everything else stays, jitter included):

    recolour  'make the red circle blue'               resize  'make the small red circle large'
    move      'move the red circle to the top left'    remove  'remove the blue square'
    add       'add a small green triangle on the right' swap   'swap the red circle and the blue square'

Compositions take one object from each of 2-3 reference scenes and put them together in
their original cells ('combine the red circle from the first image and the blue square
from the second image'). Targets are scenes, so the oracle scores edits exactly.

Objects are named by the shortest unambiguous description: colour and shape, then with
the size, then with the place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from kit.world.captions import noun_phrase, place
from kit.world.scene import COLOURS, GRID, MAX_OBJECTS, SHAPES, SIZES, Scene, SceneObject, sample_scene

EDIT_KINDS = ("recolour", "move", "add", "remove", "resize", "swap")
ORDINALS = ("first", "second", "third")


@dataclass(frozen=True)
class Edit:
    """An instruction and the scene it turns `source` into."""

    kind: str
    instruction: str
    source: Scene
    target: Scene


@dataclass(frozen=True)
class Composition:
    """Reference scenes, an instruction naming one object from each, and the composed target."""

    references: tuple[Scene, ...]
    instruction: str
    target: Scene


def refer(obj: SceneObject, scene: Scene, rng: np.random.Generator) -> str:
    """'the red circle', 'the small red circle' or 'the red circle in the top left': unique within `scene`."""

    def sharing(keys: tuple[str, ...]) -> int:
        return sum(all(getattr(o, k) == getattr(obj, k) for k in keys) for o in scene.objects)

    if sharing(("colour", "shape")) == 1:
        return f"the {obj.colour} {obj.shape}"
    if sharing(("size", "colour", "shape")) == 1:
        return f"the {obj.size} {obj.colour} {obj.shape}"
    return f"the {obj.colour} {obj.shape} {place(obj, rng)}"


def _free_cells(scene: Scene) -> list[tuple[int, int]]:
    taken = {o.cell for o in scene.objects}
    return [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in taken]


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _without(scene: Scene, obj: SceneObject) -> tuple[SceneObject, ...]:
    return tuple(o for o in scene.objects if o is not obj)


def possible_kinds(scene: Scene) -> list[str]:
    """The edit kinds that apply to `scene` (no 'add' to a full scene, no 'remove' of its only object...)."""
    kinds = ["recolour", "resize"]
    if _free_cells(scene):
        kinds.append("move")
    if len(scene) < MAX_OBJECTS:
        kinds.append("add")
    if len(scene) >= 2:
        kinds += ["remove", "swap"]
    return [k for k in EDIT_KINDS if k in kinds]


def sample_edit(rng: np.random.Generator, scene: Scene, kinds: tuple[str, ...] = EDIT_KINDS) -> Edit:
    """A random applicable edit of `scene`, of one of `kinds`."""
    options = [k for k in possible_kinds(scene) if k in kinds]
    if not options:
        raise ValueError(f"none of the edit kinds {list(kinds)} applies to a scene of {len(scene)} objects")
    kind = _pick(rng, options)
    obj = _pick(rng, list(scene.objects))
    name = refer(obj, scene, rng)
    if kind == "recolour":
        colour = _pick(rng, [c for c in COLOURS if c != obj.colour])
        text = _pick(rng, [f"make {name} {colour}", f"turn {name} {colour}", f"change the colour of {name} to {colour}"])
        return Edit(kind, text, scene, Scene((*_without(scene, obj), replace(obj, colour=colour))))
    if kind == "resize":
        size = _pick(rng, [s for s in SIZES if s != obj.size])
        verb = "enlarge" if size == "large" else "shrink"
        text = _pick(rng, [f"make {name} {size}", f"{verb} {name}"])
        return Edit(kind, text, scene, Scene((*_without(scene, obj), replace(obj, size=size))))
    if kind == "move":
        row, col = _pick(rng, _free_cells(scene))
        moved = replace(obj, row=row, col=col)
        return Edit(kind, f"move {name} {place(moved, rng)}", scene, Scene((*_without(scene, obj), moved)))
    if kind == "add":
        row, col = _pick(rng, _free_cells(scene))
        new = SceneObject(_pick(rng, list(SHAPES)), _pick(rng, list(COLOURS)), _pick(rng, list(SIZES)), row, col)
        text = f"add {noun_phrase([new.size, new.colour, new.shape])} {place(new, rng)}"
        return Edit(kind, text, scene, Scene((*scene.objects, new)))
    if kind == "remove":
        text = _pick(rng, [f"remove {name}", f"delete {name}", f"take away {name}"])
        return Edit(kind, text, scene, Scene(_without(scene, obj)))
    other = _pick(rng, [o for o in scene.objects if o is not obj])  # swap places
    rest = tuple(o for o in scene.objects if o is not obj and o is not other)
    swapped = (replace(obj, row=other.row, col=other.col), replace(other, row=obj.row, col=obj.col))
    return Edit(kind, f"swap {name} and {refer(other, scene, rng)}", scene, Scene((*rest, *swapped)))


def sample_composition(rng: np.random.Generator, num_references: int | None = None) -> Composition:
    """2-3 reference scenes and a target holding one object of each, in its own cell."""
    n = int(rng.integers(2, 4)) if num_references is None else num_references
    if not 2 <= n <= len(ORDINALS):
        raise ValueError(f"a composition takes 2 to {len(ORDINALS)} references, got {n}")
    references, chosen, cells = [], [], set()
    while len(references) < n:
        scene = sample_scene(rng)
        candidates = [o for o in scene.objects if o.cell not in cells]
        if not candidates:
            continue
        obj = _pick(rng, candidates)
        references.append(scene)
        chosen.append(obj)
        cells.add(obj.cell)
    parts = [f"{refer(o, s, rng)} from the {ORDINALS[i]} image" for i, (o, s) in enumerate(zip(chosen, references))]
    joined = ", ".join(parts[:-1]) + " and " + parts[-1]
    text = _pick(rng, [f"combine {joined}", f"put {joined} together", f"a scene with {joined}"])
    return Composition(tuple(references), text, Scene(tuple(chosen)))
