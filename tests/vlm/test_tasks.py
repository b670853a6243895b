"""The shapes VLM's tasks and scoring: every conversation is true of its scene, and the scorer
gives full marks to the right answers and none to wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

from kit.vlm.evaluate import read_description, score
from kit.vlm.tasks import TASKS, make_conversation
from kit.world.captions import describe
from kit.world.parser import parse_caption
from kit.world.questions import QUESTION_KINDS, ask
from kit.world.scene import Scene, SceneObject, is_held_out, sample_scene, scene_rng


@pytest.mark.parametrize("held_out", [False, True])
def test_conversations_are_true_of_their_scenes(held_out):
    rng = np.random.default_rng(0)
    for task in TASKS:
        for _ in range(60):
            c = make_conversation(task, rng, held_out=held_out)
            assert is_held_out(c.scene) == held_out, f"{task}: training never answers with a held-out scene"
            assert all(is_held_out(s) == held_out for s in c.image_scenes), f"{task}: nor shows one"
            if task == "qa":
                continue
            assert read_description(c.answer).facts() == c.scene.facts(), "the canonical description reads back to its scene"
            if task == "rewrite":
                assert parse_caption(c.user).satisfied_by(c.scene), f"the rewrite target satisfies its prompt: {c.user!r}"
            if task in ("describe", "edit"):
                assert len(c.images) == 1 and c.images[0].shape == (32, 32, 3)


def test_questions_have_the_right_answers():
    scene = Scene((SceneObject("circle", "red", "large", 0, 0), SceneObject("circle", "blue", "small", 2, 2), SceneObject("square", "blue", "large", 1, 1)))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        q = ask(scene, QUESTION_KINDS[int(rng.integers(len(QUESTION_KINDS)))], rng)
        seen.add(q.kind)
        if q.question == "how many circles are there?":
            assert q.answer == "two"
        if q.question == "how many objects are there?":
            assert q.answer == "three"
        if q.question == "what colour is the square?":
            assert q.answer == "blue"
        if q.question == "what is in the center?":
            assert q.answer == "a large blue square"
        if q.question == "is there a red square?":
            assert q.answer == "no"
    assert seen == set(QUESTION_KINDS)


def test_scoring_rewards_right_answers_only():
    rng = np.random.default_rng(1)
    convs = [make_conversation(t, rng, held_out=True) for t in TASKS for _ in range(8)]
    perfect = score(convs, [c.answer for c in convs])
    assert perfect["describe"]["exact"] == perfect["edit"]["exact"] == perfect["qa"]["accuracy"] == perfect["rewrite"]["consistency"] == 1.0
    assert perfect["describe"]["attr/colour"] == 1.0
    wrong = score(convs, ["a small red circle in the center" if c.task != "qa" else "maybe" for c in convs])
    assert wrong["qa"]["accuracy"] == 0.0
    assert wrong["describe"]["exact"] < 0.5
    garbage = score(convs, ["circle circle" for _ in convs])
    assert garbage["describe"]["parsed"] == 0.0 and garbage["rewrite"]["consistency"] == 0.0


def test_describe_is_canonical_and_parses_exhaustively():
    scene = sample_scene(scene_rng(0, 5, 3), 4)
    text = describe(scene)
    spec = parse_caption(text)
    assert spec.exhaustive and spec.satisfied_by(scene)
    assert text == describe(Scene(tuple(reversed(scene.objects)))), "object order does not change the description"


def test_cell_labels_and_probe():
    import torch

    from kit.vlm.cells import IGNORE, CellProbe, cell_labels

    scene = Scene((SceneObject("triangle", "green", "small", 0, 2), SceneObject("circle", "red", "large", 2, 0)))
    shape, colour, size = cell_labels(scene)
    assert shape.tolist() == [0, 0, 3, 0, 0, 0, 1, 0, 0], "reading order; 0 is an empty cell, then 1 + SHAPES index"
    assert colour[2] == 1 and colour[6] == 0 and (colour[[0, 1, 3, 4, 5, 7, 8]] == IGNORE).all()
    assert size[2] == 0 and size[6] == 1
    loss, accuracy = CellProbe(16)(torch.randn(18, 16), [scene, scene])
    assert loss > 0 and set(accuracy) == {"shape", "colour", "size"}


@pytest.mark.slow
def test_cell_supervision_needs_one_token_per_cell():
    from kit.pretrain.vlm import ShapesVLMPretraining

    with pytest.raises(ValueError, match="one merged token per grid cell"):
        ShapesVLMPretraining(
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            intermediate_size=32,
            vision_width=32,
            vision_depth=1,
            vision_heads=2,
            image_size=48,
            patch_size=4,
            cell_supervision=1.0,
        )


def test_rewrites_list_objects_in_the_prompts_order():
    scene = Scene((SceneObject("circle", "red", "large", 0, 0), SceneObject("square", "blue", "small", 2, 2)))
    order = parse_caption("a blue square and a red circle").match(scene)
    assert [o.shape for o in order] == ["square", "circle"]
    assert describe(scene, order) == "a small blue square in the bottom right and a large red circle in the top left"
    assert parse_caption("a green square").match(scene) is None
    rng = np.random.default_rng(2)
    for _ in range(100):
        c = make_conversation("rewrite", rng)
        mentioned = [o.shape for o in parse_caption(c.user).objects for _ in range(o.count)]
        written = [o.shape for o in parse_caption(c.answer).objects]
        assert written == mentioned, (c.user, c.answer)
