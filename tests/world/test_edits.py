from collections import Counter

import numpy as np
import pytest

from kit.world import Scene, SceneObject, sample_scene, scene_rng
from kit.world.edits import EDIT_KINDS, possible_kinds, refer, sample_composition, sample_edit


def test_every_edit_kind_changes_exactly_what_it_says():
    seen = Counter()
    for i in range(400):
        rng = scene_rng(0, 6, i)
        edit = sample_edit(rng, sample_scene(rng))
        seen[edit.kind] += 1
        src, tgt = edit.source.facts(), edit.target.facts()
        removed, added = src - tgt, tgt - src
        if edit.kind in ("recolour", "resize", "move"):
            assert len(removed) == len(added) == 1
            (old,), (new,) = removed, added
            differing = [k for k, a, b in zip(("shape", "colour", "size", "row", "col"), old, new) if a != b]
            assert set(differing) <= {"recolour": {"colour"}, "resize": {"size"}, "move": {"row", "col"}}[edit.kind] and differing
        elif edit.kind == "add":
            assert not removed and len(added) == 1
        elif edit.kind == "remove":
            assert len(removed) == 1 and not added
        else:  # swap: the same objects, two of them trading places
            assert len(edit.target) == len(edit.source) and len(removed) == 2
            assert sorted(f[:3] for f in removed) == sorted(f[:3] for f in added)
        assert edit.instruction.split()[0] in {"make", "turn", "change", "enlarge", "shrink", "move", "add", "remove", "delete", "take", "swap"}
    assert set(seen) == set(EDIT_KINDS)


def test_inapplicable_edits_are_not_offered():
    single = Scene((SceneObject("circle", "red", "small", 1, 1),))
    assert "remove" not in possible_kinds(single) and "swap" not in possible_kinds(single)
    with pytest.raises(ValueError, match="none of the edit kinds"):
        sample_edit(np.random.default_rng(0), single, kinds=("swap",))


def test_referring_expressions_are_unambiguous():
    a = SceneObject("circle", "red", "small", 0, 0)
    b = SceneObject("circle", "red", "large", 0, 2)
    c = SceneObject("circle", "red", "large", 2, 2)
    rng = np.random.default_rng(0)
    assert refer(a, Scene((a,)), rng) == "the red circle"
    assert refer(a, Scene((a, b)), rng) == "the small red circle"
    assert refer(c, Scene((a, b, c)), rng).startswith("the red circle ") and "bottom right" in refer(c, Scene((a, b, c)), rng)


def test_compositions_take_one_object_from_each_reference():
    for i in range(100):
        comp = sample_composition(scene_rng(0, 8, i))
        assert 2 <= len(comp.references) <= 3 and len(comp.target) == len(comp.references)
        for obj in comp.target.objects:
            assert any(obj in ref.objects for ref in comp.references)
        assert "first image" in comp.instruction and "second image" in comp.instruction
