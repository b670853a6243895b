"""The joint evaluation's instrument: exact caption scores and the anchors that partial scores are read against."""

from kit.data import ShapesDataset
from kit.joint.evaluate import anchor_scores, caption_scores
from kit.world.oracle import Oracle


def test_true_captions_are_exact_and_the_anchors_are_about_zero():
    data = ShapesDataset(32, "held_out", image_size=48, caption_styles=["detailed"])
    scenes, truth = zip(*(data.scene_and_prompt(i) for i in range(32)))
    assert caption_scores(list(truth), list(scenes)) == {"parsed": 1.0, "faithful": 1.0, "exact": 1.0}, "a detailed caption is the scene"
    anchors = anchor_scores(list(scenes), list(truth), 48, Oracle())
    constant, shuffled = anchors["constant_caption"], anchors["shuffled_pairs"]
    assert constant["i2t"]["exact"] <= 2 / 32 and constant["i2t"]["parsed"] == 1.0, "one constant caption describes its own scene only"
    assert shuffled["i2t"]["exact"] == 0.0 and shuffled["joint"]["exact"] <= 1 / 32, "captions of other scenes are not exact"
    assert shuffled["i2t"]["faithful"] < 0.5
    assert caption_scores([truth[0]] * 2, [scenes[0], scenes[1]])["exact"] == 0.5


def test_captions_are_scored_faithful_and_exact_against_their_scenes():
    from kit.data.shapes import ShapesDataset
    from kit.joint.evaluate import caption_scores
    from kit.world.captions import describe

    data = ShapesDataset(4, split="test", caption_styles=["detailed"])
    scenes = [data.scene_and_prompt(i)[0] for i in range(4)]
    complete = [describe(scene) for scene in scenes]
    assert caption_scores(complete, scenes) == {"parsed": 1.0, "faithful": 1.0, "exact": 1.0}
    partial = [f"a {scene.objects[0].shape}" for scene in scenes]  # true, but not the whole scene
    assert caption_scores(partial, scenes) == {"parsed": 1.0, "faithful": 1.0, "exact": 0.0}
    wrong = complete[1:] + complete[:1]  # another scene's description (the four scenes differ)
    assert caption_scores(wrong, scenes)["faithful"] == 0.0
    assert caption_scores(["circle circle of the", complete[1]], scenes[:2]) == {"parsed": 0.5, "faithful": 0.5, "exact": 0.5}
