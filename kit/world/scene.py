"""Scenes of the shapes world: objects on a 3x3 grid, sampled deterministically.

A scene holds 1-4 objects. Each object has a shape, a colour, a size and a cell of a 3x3
grid (row 0 is the top, column 0 the left). Positions are discrete so that every caption
word ("top left", "left of") is exactly true of the rendered image and can be checked by
an oracle. A small jitter inside the cell keeps renders varied without changing any fact.

Scenes are pure data (frozen dataclasses): the renderer and the captioner read them, and
nothing in this file depends on NumPy beyond the random generator used for sampling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
"""Shape vocabulary; the renderer knows how to draw each of them."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 210),
    "orange": (245, 140, 25),
}
"""Colour names and their sRGB values; hues are far apart so the oracle can tell them apart."""

SIZES: tuple[str, ...] = ("small", "large")
"""Size vocabulary. The fraction of a grid cell each size fills is set in the renderer."""

GRID = 3
"""Objects sit on a GRID x GRID lattice of cells."""

MAX_OBJECTS = 4


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene.

    Args:
        shape: one of `SHAPES`.
        colour: one of the keys of `COLOURS`.
        size: one of `SIZES`.
        row: grid row, 0 (top) to GRID-1 (bottom).
        col: grid column, 0 (left) to GRID-1 (right).
        jitter: offset of the centre inside its cell, as fractions of the free margin in
            [-1, 1] for (x, y); it changes the pixels, never a fact about the scene.
    """

    shape: str
    colour: str
    size: str
    row: int
    col: int
    jitter: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; known: {', '.join(COLOURS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; known: {', '.join(SIZES)}")
        if not (0 <= self.row < GRID and 0 <= self.col < GRID):
            raise ValueError(f"cell ({self.row}, {self.col}) is outside the {GRID}x{GRID} grid")

    @property
    def cell(self) -> tuple[int, int]:
        return (self.row, self.col)

    def facts(self) -> tuple[str, str, str, int, int]:
        """The object without its jitter: what captions and the oracle talk about."""
        return (self.shape, self.colour, self.size, self.row, self.col)


@dataclass(frozen=True)
class Scene:
    """A set of objects in distinct cells, kept sorted in reading order (row, then column).

    Args:
        objects: the objects; at most one per cell.
    """

    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        cells = [o.cell for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a cell: {sorted(cells)}")
        ordered = tuple(sorted(self.objects, key=lambda o: o.cell))
        object.__setattr__(self, "objects", ordered)

    def __len__(self) -> int:
        return len(self.objects)

    def facts(self) -> frozenset[tuple[str, str, str, int, int]]:
        """The scene without jitter, as a set: two scenes with equal facts look the same."""
        return frozenset(o.facts() for o in self.objects)


def sample_scene(
    rng: np.random.Generator,
    num_objects: int | None = None,
    *,
    shapes: tuple[str, ...] = SHAPES,
    colours: tuple[str, ...] = tuple(COLOURS),
) -> Scene:
    """Draw a random scene.

    Args:
        rng: the random generator; the same generator state always gives the same scene.
        num_objects: how many objects (1..MAX_OBJECTS); drawn uniformly when None.
        shapes: the shapes to draw from.
        colours: the colours to draw from.
    """
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if num_objects is None else num_objects
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"num_objects must be in 1..{MAX_OBJECTS}, got {n}")
    cells = rng.choice(GRID * GRID, size=n, replace=False)
    objects = []
    for cell in cells:
        objects.append(
            SceneObject(
                shape=shapes[int(rng.integers(len(shapes)))],
                colour=colours[int(rng.integers(len(colours)))],
                size=SIZES[int(rng.integers(len(SIZES)))],
                row=int(cell) // GRID,
                col=int(cell) % GRID,
                jitter=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
            )
        )
    return Scene(tuple(objects))


HELD_OUT_MODULUS = 10
"""One scene in HELD_OUT_MODULUS (by a hash of its facts) is held out: training never draws it."""


def is_held_out(scene: Scene) -> bool:
    """Whether a scene belongs to the held-out split (decided by its facts, not by how it was drawn).

    The evaluation suites are built from held-out scenes only, so no suite scene, with all its
    objects, attributes and places, is ever a training image. (Short prompts such as 'a red
    circle' still describe many training scenes: the held-out unit is the scene.)
    """
    key = repr(sorted(scene.facts())).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % HELD_OUT_MODULUS == 0


def sample_training_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    """`sample_scene`, redrawing held-out scenes."""
    while True:
        scene = sample_scene(rng, num_objects)
        if not is_held_out(scene):
            return scene


def sample_held_out_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    """`sample_scene`, redrawing until the scene is held out (about one draw in `HELD_OUT_MODULUS`): the scenes
    that evaluation reads and training never draws."""
    while True:
        scene = sample_scene(rng, num_objects)
        if is_held_out(scene):
            return scene


def scene_rng(seed: int, split: int, index: int) -> np.random.Generator:
    """The generator for scene `index` of a split: deterministic, and disjoint across splits.

    Args:
        seed: the world seed.
        split: a small integer naming the split (train, validation, ...).
        index: the item's index within the split.
    """
    return np.random.default_rng([seed, split, index])
