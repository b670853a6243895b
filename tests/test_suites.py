from collections import Counter

from kit.analysis import anchor_images, score_images, subset
from kit.tasks.data import ShapesDataset
from kit.world.parser import parse_caption
from kit.world.scene import is_held_out
from kit.world.suites import CATEGORIES, build_suite, load_suite, suite_path


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
    data = ShapesDataset(400, "train")
    from kit.world.scene import sample_training_scene, scene_rng

    assert not any(is_held_out(sample_training_scene(scene_rng(0, 0, i))) for i in range(2000))
    assert len(data[0]["prompt"]) > 0


def test_anchors_bracket_the_scale():
    entries = subset(load_suite(), 15)
    gt = score_images(entries, anchor_images(entries, "gt", 32))
    noise = score_images(entries, anchor_images(entries, "noise", 32))
    assert gt["overall"] >= 0.99 and gt["dpg"]["score"] >= 0.99
    assert noise["overall"] <= 0.05
