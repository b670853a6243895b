"""Pretraining the shapes VLM: labels cover only answers, a short fit through the verb exports a
model that the FrozenEncoder and eval-vlm load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kit.types import TokenKind
from kit.vlm.model import IGNORE, build_shapes_vlm, encode
from kit.vlm.tasks import TASKS, make_conversation

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vision_width=32, vision_depth=1, vision_heads=2, vocab_size=600)


@pytest.fixture(scope="module")
def tiny_vlm():
    return build_shapes_vlm(**TINY)


@pytest.mark.slow
def test_labels_cover_exactly_the_answers(tiny_vlm):
    tokenizer, processor, model = tiny_vlm
    rng = np.random.default_rng(0)
    convs = [make_conversation(t, rng) for t in TASKS]
    batch = encode(processor, convs)
    for i, c in enumerate(convs):
        answer = batch["input_ids"][i][batch["labels"][i] != IGNORE]
        assert tokenizer.decode(answer) == c.answer + tokenizer.eos_token
    out = model(**batch)
    assert torch.isfinite(out.loss) and out.loss > 0


@pytest.mark.slow
def test_pretrain_verb_exports_a_model_the_kit_loads(tmp_path, repo, monkeypatch):
    from kit.cli import main
    from kit.encoders import FrozenEncoder

    monkeypatch.chdir(tmp_path)
    export = tmp_path / "export"
    overrides = [f"--model.init_args.{k}={v}" for k, v in TINY.items()]
    code = main(
        [
            "pretrain-vlm",
            "--config",
            str(repo / "recipes/vlm/shapes_vlm.yaml"),
            "--trainer.max_steps=2",
            "--trainer.val_check_interval=2",
            "--trainer.limit_val_batches=1",
            "--data.init_args.batch_size=4",
            "--data.init_args.num_workers=0",
            "--model.init_args.eval_per_task=2",
            f"--model.init_args.export_to={export}",
            *overrides,
        ]
    )
    assert code == 0 and (export / "model.safetensors").is_file() and (export / "processor_config.json").is_file()
    assert list((tmp_path / "runs/shapes_vlm").glob("version_*/config.yaml")), "the resolved recipe is saved beside the logs"

    encoder = FrozenEncoder(str(export), taps="all")
    processor = json.loads((export / "processor_config.json").read_text())["image_processor"]
    side = 72  # the recipe's data.image_size, which the export's processor resizes every image to
    grid = side // (processor["patch_size"] * processor["merge_size"])
    out = encoder(["a red circle"], [[np.zeros((32, 32, 3), np.uint8)]])
    assert out.hidden_states.shape[1] == TINY["num_layers"]
    assert int((out.kinds == int(TokenKind.IMAGE)).sum()) == grid * grid == 9, "one image token per 2x2 merge of 12-px patches"

    assert main(["eval-vlm", "--model", str(export), "--n", "2", "--suite", "false", "--out", str(tmp_path / "vlm.json")]) == 0
    results = json.loads((tmp_path / "vlm.json").read_text())
    assert set(TASKS) <= set(results) and results["describe"]["n"] == 2
    assert results["describe"]["exact"] <= results["describe"]["parsed"], "an exact description parses"


def test_eval_vlm_credits_the_shipped_model(tmp_path):
    """The scorer against a known answer: the shipped shapes VLM describes held-out scenes exactly
    (1.000 on 200 in results/vlm.json); the 2-item run above only shows the verb runs."""
    from kit.cli import main

    assert main(["eval-vlm", "--model", "kit:shapes-vlm", "--n", "8", "--suite", "false", "--out", str(tmp_path / "vlm.json")]) == 0
    results = json.loads((tmp_path / "vlm.json").read_text())
    assert results["describe"]["exact"] >= 0.75
    # the file says what produced it: the command, the commit and which weights were scored
    assert results["command"].startswith("python -m kit eval-vlm --model kit:shapes-vlm") and results["commit"]
    shipped = json.loads((Path(__file__).resolve().parents[2] / "results" / "vlm.json").read_text())
    assert results["weights"] == shipped["weights"], "results/vlm.json scores the shipped weights"
