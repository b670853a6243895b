"""Scene specifications: what a caption asks for, and whether (or how far) a scene satisfies it.

A `SceneSpec` is a partial description: objects with some attributes left open, counts,
spatial relations, and whether the list is exhaustive. The parser (`kit.world.parser`)
reads captions into specs; the scorers check specs against scenes read back by the oracle.

Semantics, fixed here once for every scorer:

- an `ObjectSpec` with `count=k` asks for k distinct scene objects that match all of its
  given attributes; with `exact=True` (a number word, "two circles") the scene must hold
  exactly k objects of that kind (its shape and, if given, colour);
- a relation holds between the objects matched to its two ends ("left of": a smaller grid
  column; "above": a smaller grid row);
- `exhaustive=True` (a detailed description) forbids objects beyond the listed ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.world.scene import Scene, SceneObject

RELATIONS = ("left of", "right of", "above", "below")


def relation_holds(a: SceneObject, rel: str, b: SceneObject) -> bool:
    """Whether `a rel b` is true of two scene objects on the grid."""
    if rel == "left of":
        return a.col < b.col
    if rel == "right of":
        return a.col > b.col
    if rel == "above":
        return a.row < b.row
    if rel == "below":
        return a.row > b.row
    raise ValueError(f"unknown relation {rel!r}; known: {', '.join(RELATIONS)}")


@dataclass(frozen=True)
class ObjectSpec:
    """Constraints on one kind of object; None leaves an attribute open.

    Args:
        shape: required shape.
        colour: required colour.
        size: required size.
        cell: required grid cell (row, col).
        count: how many such objects.
        exact: the scene must hold exactly `count` objects of this shape (and colour, if given).
    """

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    cell: tuple[int, int] | None = None
    count: int = 1
    exact: bool = False

    def attributes(self) -> dict[str, object]:
        """The constrained attributes, by name."""
        values = {"shape": self.shape, "colour": self.colour, "size": self.size, "cell": self.cell}
        return {k: v for k, v in values.items() if v is not None}

    def matches(self, obj: SceneObject) -> bool:
        return all(getattr(obj, k) == v for k, v in self.attributes().items())

    def same_kind(self, obj: SceneObject) -> bool:
        """Whether `obj` counts towards an exact count (same shape and, if given, colour)."""
        return obj.shape == self.shape and (self.colour is None or obj.colour == self.colour)


@dataclass(frozen=True)
class Relation:
    """`objects[a] rel objects[b]` (indices into `SceneSpec.objects`, whose counts are 1)."""

    a: int
    rel: str
    b: int


@dataclass(frozen=True)
class SceneSpec:
    """What a caption asks of a scene.

    Args:
        objects: the object kinds asked for.
        relations: spatial relations between single objects.
        exhaustive: no objects beyond the listed ones.
    """

    objects: tuple[ObjectSpec, ...]
    relations: tuple[Relation, ...] = ()
    exhaustive: bool = False

    def slots(self) -> list[int]:
        """One entry per requested object instance: the index of its `ObjectSpec`."""
        return [i for i, o in enumerate(self.objects) for _ in range(o.count)]

    def _assignments(self, scene: Scene, allow_missing: bool):
        """Injective maps from instance slots to scene objects, by backtracking.

        With `allow_missing`, a slot may stay unmatched (None); without it, a slot only takes
        objects that match all of its attributes.
        """
        slots = self.slots()
        chosen: list[SceneObject | None] = []
        used: set[int] = set()

        def extend(k: int):
            if k == len(slots):
                yield slots, list(chosen)
                return
            spec = self.objects[slots[k]]
            for i, obj in enumerate(scene.objects):
                if i in used or not (allow_missing or spec.matches(obj)):
                    continue
                used.add(i)
                chosen.append(obj)
                yield from extend(k + 1)
                chosen.pop()
                used.discard(i)
            if allow_missing:
                chosen.append(None)
                yield from extend(k + 1)
                chosen.pop()

        yield from extend(0)

    def _first_of(self, slots: list[int]) -> dict[int, int]:
        return {spec_index: slots.index(spec_index) for spec_index in set(slots)}

    def satisfied_by(self, scene: Scene) -> bool:
        """Whether the scene meets every constraint (GenEval-style correctness)."""
        for spec in self.objects:
            if spec.exact and sum(spec.same_kind(o) for o in scene.objects) != spec.count:
                return False
        if self.exhaustive and len(scene.objects) != len(self.slots()):
            return False
        for slots, chosen in self._assignments(scene, allow_missing=False):
            first = self._first_of(slots)
            if all(relation_holds(chosen[first[r.a]], r.rel, chosen[first[r.b]]) for r in self.relations):
                return True
        return False

    def match(self, scene: Scene) -> list[SceneObject] | None:
        """The scene objects that satisfy the spec, one per requested instance in the spec's order
        (the first assignment that meets every constraint), or None when the scene does not satisfy it."""
        if not self.satisfied_by(scene):
            return None
        for slots, chosen in self._assignments(scene, allow_missing=False):
            first = self._first_of(slots)
            if all(relation_holds(chosen[first[r.a]], r.rel, chosen[first[r.b]]) for r in self.relations):
                return list(chosen)
        return None

    def fact_breakdown(self, scene: Scene) -> dict[str, tuple[int, int]]:
        """Satisfied and total atomic facts per kind (object, colour, size, position, relation), DPG-style.

        An object fact holds when a distinct detected object of the right shape is matched
        to the described one; its colour, size and place facts only count for such a match.
        The matching is the one that satisfies the most facts.
        """
        totals: dict[str, int] = {}
        for spec in self.objects:
            totals["object"] = totals.get("object", 0) + spec.count
            for name in ("colour", "size", "cell"):
                if getattr(spec, name) is not None:
                    key = "position" if name == "cell" else name
                    totals[key] = totals.get(key, 0) + spec.count
        if self.relations:
            totals["relation"] = len(self.relations)
        best: dict[str, int] = {k: 0 for k in totals}
        for slots, chosen in self._assignments(scene, allow_missing=True):
            got = {k: 0 for k in totals}
            kept = list(chosen)
            for i, (s, obj) in enumerate(zip(slots, chosen)):
                spec = self.objects[s]
                if obj is None or (spec.shape is not None and obj.shape != spec.shape):
                    kept[i] = None  # a wrong shape is a different object: none of its facts count
                    continue
                got["object"] += 1
                got["colour"] = got.get("colour", 0) + (spec.colour is not None and obj.colour == spec.colour)
                got["size"] = got.get("size", 0) + (spec.size is not None and obj.size == spec.size)
                got["position"] = got.get("position", 0) + (spec.cell is not None and obj.cell == spec.cell)
            first = self._first_of(slots)
            for r in self.relations:
                a, b = kept[first[r.a]], kept[first[r.b]]
                got["relation"] += a is not None and b is not None and relation_holds(a, r.rel, b)
            if sum(got.get(k, 0) for k in totals) > sum(best.values()):
                best = {k: got.get(k, 0) for k in totals}
                if best == totals:
                    break
        return {k: (best[k], totals[k]) for k in totals}

    def fact_score(self, scene: Scene) -> float:
        """Fraction of all atomic facts satisfied (see `fact_breakdown`)."""
        breakdown = self.fact_breakdown(scene)
        return sum(g for g, _ in breakdown.values()) / sum(t for _, t in breakdown.values())
