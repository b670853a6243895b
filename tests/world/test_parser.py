import pytest

from kit.world import REGISTERS, Scene, SceneObject, caption, sample_scene, scene_rng
from kit.world.parser import CaptionParseError, parse_caption
from kit.world.spec import ObjectSpec


def test_parser_inverts_the_captioner_in_every_register():
    for i in range(500):
        rng = scene_rng(0, 4, i)
        scene = sample_scene(rng)
        for style in REGISTERS:
            text = caption(scene, style, rng)
            spec = parse_caption(text)
            assert spec.satisfied_by(scene), (text, spec)
            assert spec.fact_score(scene) == 1.0


def test_detailed_description_pins_the_scene():
    scene = Scene((SceneObject("circle", "red", "large", 0, 0), SceneObject("square", "blue", "small", 1, 2)))
    spec = parse_caption("a large red circle in the top left and a small blue square on the right")
    assert spec.exhaustive and spec.satisfied_by(scene)
    extra = Scene((*scene.objects, SceneObject("circle", "red", "small", 2, 2)))
    assert not spec.satisfied_by(extra), "a detailed description lists the whole scene"
    moved = Scene((SceneObject("circle", "red", "large", 0, 1), scene.objects[1]))
    assert not spec.satisfied_by(moved)
    breakdown = spec.fact_breakdown(moved)
    assert breakdown["position"] == (1, 2) and breakdown["colour"] == (2, 2) and breakdown["object"] == (2, 2)


def test_counts_relations_and_binding():
    two = Scene((SceneObject("circle", "red", "small", 0, 0), SceneObject("circle", "red", "large", 2, 2)))
    assert parse_caption("two red circles").satisfied_by(two)
    assert not parse_caption("three red circles").satisfied_by(two)
    assert not parse_caption("one circle").satisfied_by(two), "number words are exact counts"
    assert parse_caption("a red circle").satisfied_by(two), "'a' asks for at least one"
    assert parse_caption("a red circle above a red circle").satisfied_by(two)
    assert not parse_caption("a red circle to the right of a blue square").satisfied_by(two)
    swapped = Scene((SceneObject("circle", "blue", "small", 0, 0), SceneObject("square", "red", "small", 0, 2)))
    assert not parse_caption("a red circle and a blue square").satisfied_by(swapped), "colours bind to their shapes"
    assert parse_caption("a blue square to the right of ... ".replace(" ... ", " a blue circle")).objects[1] == ObjectSpec("circle", "blue")


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("a red hexagon", "a red hexagon"),
        ("a red circle and a teal square", "a teal square"),
        ("two red circle", "two red circle"),
        ("a red circle next to a blue square", "a red circle next to a blue square"),
        ("", ""),
    ],
)
def test_unparseable_captions_name_the_phrase(text, phrase):
    with pytest.raises(CaptionParseError) as info:
        parse_caption(text)
    assert repr(phrase) in str(info.value) or "names no object" in str(info.value)
