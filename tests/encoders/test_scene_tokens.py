"""The scene-token encoder: one learned token per requested object, free values where the prompt is silent."""

import pytest
import torch

from kit.encoders import SceneTokenEncoder
from kit.encoders.scene_tokens import ATTRIBUTES, object_attributes
from kit.fusion import LAPHead
from kit.world.parser import CaptionParseError, parse_caption


def test_one_token_per_object_instance_with_free_values():
    rows = object_attributes(parse_caption("three red circles"))
    assert len(rows) == 3 and all(r == rows[0] for r in rows)
    assert rows[0]["shape"] == 1 + ATTRIBUTES["shape"].index("circle") and rows[0]["colour"] == 1 + ATTRIBUTES["colour"].index("red")
    assert rows[0]["size"] == 0 and rows[0]["row"] == 0 and rows[0]["exact"] == 1  # size and place left open; an exact count
    a, b = object_attributes(parse_caption("a red circle to the left of a blue square"))
    assert a["role"] != b["role"] and a["role"] and b["role"]  # subject and object of the relation differ
    (dense,) = object_attributes(parse_caption("a large red circle in the top left"))
    assert dense["exhaustive"] == 1 and (dense["row"], dense["col"]) == (1, 1)


def test_forward_shapes_mask_and_gradients():
    enc = SceneTokenEncoder(width=32)
    out = enc(["a red circle", "a large blue square in the center and two green triangles"])
    assert out.hidden_states.shape == (2, 1, 3, 32) and out.mask.tolist() == [[True, False, False], [True, True, True]]
    assert torch.all(out.hidden_states[0, 0, 1:] == 0)  # padding is zero
    assert enc.spec.num_taps == 1 and enc.fingerprint() is None  # trains, so no feature cache
    head = LAPHead(enc.spec, 48)
    head(out).tokens.sum().backward()
    assert enc.tables["shape"].weight.grad.abs().sum() > 0  # the embeddings learn with the model
    # the same attributes give the same token whatever the wording
    same = enc(["a red circle on the left", "a red circle on the left"]).hidden_states
    assert torch.equal(same[0], same[1])
    other = enc(["a red circle on the right"]).hidden_states
    assert not torch.equal(same[0], other[0])


def test_unparseable_prompt_names_the_phrase():
    with pytest.raises(CaptionParseError, match="purple elephant"):
        SceneTokenEncoder(width=16)(["a purple elephant"])


def test_scene_token_recipe_trains(tmp_path):
    from kit.cli import run_cli

    cli = run_cli(
        [
            "fit",
            "-c",
            "recipes/lap.yaml",
            "-c",
            "recipes/diagnostics/scene_tokens.yaml",
            "-c",
            "recipes/smoke.yaml",
            "--trainer.callbacks=[]",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
        ]
    )
    assert isinstance(cli.model.encoder, SceneTokenEncoder)
    assert cli.trainer.global_step == 3
    trained = {n for n, p in cli.model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.tables.") for n in trained)


def test_a_trainable_encoder_cannot_be_cached(tmp_path, capsys):
    from kit.cli import main

    args = ["cache", "-c", "recipes/lap.yaml", "-c", "recipes/diagnostics/scene_tokens.yaml", "-c", "recipes/smoke.yaml", "--out", str(tmp_path / "c")]
    assert main(args) == 2
    assert "cannot be cached" in capsys.readouterr().err and not (tmp_path / "c").exists()
