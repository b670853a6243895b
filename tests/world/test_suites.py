from collections import Counter

import pytest

from kit.analysis import anchor_images, score_images, subset
from kit.data.shapes import ShapesDataset
from kit.world.parser import parse_caption
from kit.world.scene import is_held_out
from kit.world.suites import CATEGORIES, build_suite, load_suite, suite_path


@pytest.mark.slow
def test_shipped_suite_is_what_the_code_builds():
    shipped = suite_path("t2i", 1).read_text()
    rebuilt = "".join(e.to_json() + "\n" for e in build_suite())
    assert shipped == rebuilt, "kit/assets/suites/t2i_v1.jsonl is stale: a suite version must not change"


def test_suite_size_categories_and_held_out_scenes():
    entries = load_suite("t2i", 1)
    assert len(entries) >= 500
    counts = Counter(e.category for e in entries)
    assert set(counts) == set(CATEGORIES) and min(counts.values()) >= 50
    assert len({e.id for e in entries}) == len(entries)
    for e in entries:
        assert is_held_out(e.scene)
        assert parse_caption(e.prompt).satisfied_by(e.scene)


def test_training_never_draws_a_held_out_scene():
    from kit.world.scene import HELD_OUT_MODULUS, sample_scene, scene_rng

    # the hash really holds out about one scene in HELD_OUT_MODULUS of the world's raw draws...
    raw = [is_held_out(sample_scene(scene_rng(0, 0, i))) for i in range(3000)]
    assert abs(sum(raw) / len(raw) - 1 / HELD_OUT_MODULUS) < 0.02
    # ...and the training data (read through the dataset, as a run reads it, curricula included) never
    # shows one: no training item has the facts of a held-out scene, so no suite scene is trained on
    suite = {e.scene.facts() for e in load_suite("t2i", 1)}
    for data in (ShapesDataset(3000, "train"), ShapesDataset(600, "train", count_stages=[(300, 1)])):
        facts = [data.scene_and_prompt(i)[0] for i in range(len(data))]
        assert not any(is_held_out(scene) for scene in facts)
        assert not suite & {scene.facts() for scene in facts}
    assert len(ShapesDataset(4, "train")[0]["prompt"]) > 0


@pytest.mark.slow
def test_anchors_bracket_the_scale():
    entries = subset(load_suite(), 15)
    gt = score_images(entries, anchor_images(entries, "gt", 32))
    noise = score_images(entries, anchor_images(entries, "noise", 32))
    assert gt["overall"] >= 0.99 and gt["dpg"]["score"] >= 0.99
    assert noise["overall"] <= 0.05
