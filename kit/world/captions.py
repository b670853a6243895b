"""Captions of shapes-world scenes in several registers and many phrasings.

Every caption is true of its scene. Registers:

- ``detailed``: every object with all of its attributes and its place ("a large red
  circle in the top left and a small blue square in the center").
- ``short``: colours and shapes only, identical objects counted ("two red circles and a
  blue square").
- ``relation``: two objects and a spatial relation that holds between them ("a red circle
  to the left of a blue square"); falls back to ``short`` for one-object scenes.
- ``count``: how many objects of each shape ("three circles and a square").
- ``partial``: every object, each with a random subset of its size, colour and place (the
  shape always), in a random order ("a large square at the bottom and a red circle"): the
  prompts that leave some attributes of an object open and give others.
- ``canonical``: the one detailed description of a scene, no prefix, first phrasings, reading
  order (`describe`): the caption is a function of the scene. Not in the default mix (`STYLES`);
  `REGISTERS` lists every register a dataset may name.

The phrasings are drawn from a random generator, so one scene gets many captions.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from kit.world.scene import Scene, SceneObject

STYLES: tuple[str, ...] = ("detailed", "short", "relation", "count", "partial")
"""The registers of the default training mix, in the order `caption_weights` follow."""
REGISTERS: tuple[str, ...] = (*STYLES, "canonical")
"""Every register `caption` writes."""

NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}

CELL_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "center",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}
"""The name of each grid cell, as used in captions."""

PLACE_PHRASES: dict[str, tuple[str, ...]] = {
    "corner": ("in the {}", "at the {}", "in the {} corner"),
    "top": ("at the {}",),
    "bottom": ("at the {}",),
    "left": ("on the {}",),
    "right": ("on the {}",),
    "center": ("in the center", "in the middle"),
}
"""Prepositional phrases for each kind of cell; `{}` is the cell's name."""
DETAILED_PREFIXES = ("", "there is ", "an image of ", "a picture showing ", "a scene with ")
RELATION_TEMPLATES = {
    "left of": ("{a} to the left of {b}", "{a} left of {b}", "{b} to the right of {a}"),
    "above": ("{a} above {b}", "{b} below {a}", "{a} over {b}"),
}


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[0] in "aeiou" else "a"


def plural(shape: str) -> str:
    return shape + "s"


def noun_phrase(words: list[str], count: int = 1) -> str:
    """'a large red circle' or 'two red circles' from adjectives followed by a shape."""
    *adjectives, shape = words
    if count == 1:
        phrase = " ".join([*adjectives, shape])
        return f"{article(phrase)} {phrase}"
    return " ".join([NUMBERS[count], *adjectives, plural(shape)])


def join(phrases: list[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def place(obj: SceneObject, rng: np.random.Generator) -> str:
    """Where the object is: 'in the top left', 'on the right', 'in the middle', ..."""
    name = CELL_NAMES[obj.cell]
    kind = "corner" if " " in name else name
    return _pick(rng, PLACE_PHRASES[kind]).format(name)


def detailed(scene: Scene, rng: np.random.Generator) -> str:
    """Every object with size, colour, shape and place, in reading order."""
    parts = [f"{noun_phrase([o.size, o.colour, o.shape])} {place(o, rng)}" for o in scene.objects]
    return _pick(rng, DETAILED_PREFIXES) + join(parts)


def canonical_place(obj: SceneObject | tuple[int, int]) -> str:
    """The first phrasing of `place` for an object or a cell: 'in the top left', 'at the top', 'on the left', 'in the center'."""
    name = CELL_NAMES[obj if isinstance(obj, tuple) else obj.cell]
    kind = "corner" if " " in name else name
    return PLACE_PHRASES[kind][0].format(name)


def describe(scene: Scene, order: list[SceneObject] | None = None) -> str:
    """The canonical detailed description of a scene: no prefix, first phrasings, reading order
    (or the given order of its objects).

    What the shapes VLM is trained to write: a deterministic target is easier to learn than a
    random phrasing, and the parser reads it back as an exhaustive specification.
    """
    objects = scene.objects if order is None else order
    if not objects:
        return "an empty scene"
    return join([f"{noun_phrase([o.size, o.colour, o.shape])} {canonical_place(o)}" for o in objects])


def short(scene: Scene, rng: np.random.Generator) -> str:
    """Colours and shapes, identical objects grouped and counted, in a random order."""
    groups = Counter((o.colour, o.shape) for o in scene.objects)
    keys = list(groups)
    rng.shuffle(keys)
    return join([noun_phrase([colour, shape], groups[(colour, shape)]) for colour, shape in keys])


def relation(scene: Scene, rng: np.random.Generator) -> str:
    """A true spatial relation between two objects; `short` when there is only one object."""
    pairs = [(a, b) for a in scene.objects for b in scene.objects if a is not b]
    facts = [(a, "left of", b) for a, b in pairs if a.col < b.col]
    facts += [(a, "above", b) for a, b in pairs if a.row < b.row]
    if not facts:
        return short(scene, rng)
    a, rel, b = facts[int(rng.integers(len(facts)))]
    phrase_a = noun_phrase([a.colour, a.shape])
    phrase_b = noun_phrase([b.colour, b.shape])
    return _pick(rng, RELATION_TEMPLATES[rel]).format(a=phrase_a, b=phrase_b)


def count(scene: Scene, rng: np.random.Generator) -> str:
    """How many objects of each shape, shapes in a random order."""
    groups = Counter(o.shape for o in scene.objects)
    keys = list(groups)
    rng.shuffle(keys)
    return join([noun_phrase([shape], groups[shape]) for shape in keys])


def partial_phrase(obj: SceneObject, rng: np.random.Generator) -> str:
    """The object with a random subset of size (p 0.5), colour (p 0.6) and place (p 0.4): 'a red circle on the left', 'a large square'."""
    words = [w for w, keep in ((obj.size, rng.random() < 0.5), (obj.colour, rng.random() < 0.6)) if keep]
    phrase = noun_phrase([*words, obj.shape])
    return f"{phrase} {place(obj, rng)}" if rng.random() < 0.4 else phrase


def partial(scene: Scene, rng: np.random.Generator) -> str:
    """Every object in a random order, each as a `partial_phrase`."""
    objects = list(scene.objects)
    rng.shuffle(objects)
    return join([partial_phrase(o, rng) for o in objects])


def canonical(scene: Scene, rng: np.random.Generator) -> str:
    """The scene's canonical description (`describe`); draws nothing from `rng`."""
    return describe(scene)


_CAPTIONERS = {"detailed": detailed, "short": short, "relation": relation, "count": count, "partial": partial, "canonical": canonical}


def caption(scene: Scene, style: str, rng: np.random.Generator) -> str:
    """A caption of `scene` in the register `style` (one of `REGISTERS`)."""
    try:
        captioner = _CAPTIONERS[style]
    except KeyError:
        raise ValueError(f"unknown caption style {style!r}; known: {', '.join(REGISTERS)}") from None
    return captioner(scene, rng)
