"""Editing through the frozen VLM: the task, its data, fine-tuning from a checkpoint, the suite and the verbs."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from kit.analysis.edit_eval import ANCHORS, anchor_outputs, build_edit_suite, preserved, score_edit_images
from kit.backbones import SingleStreamDiT
from kit.data import ShapesEditData, ShapesEditDataset
from kit.data.shapes import collate_items
from kit.fusion import LAPHead
from kit.tasks import ImageEditing, TextToImage
from kit.tasks.editing import check_references
from kit.world.scene import Scene, SceneObject, is_held_out

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKBONE = partial(SingleStreamDiT, patch_size=4, width=32, depth=1, num_heads=2)
FUSION = partial(LAPHead, layer_depth=1, refiner_depth=1)


@pytest.fixture(scope="module")
def vlm():
    """The shipped shapes VLM, which reads images (the random stand-in does not)."""
    from kit.encoders import FrozenEncoder

    return FrozenEncoder("kit:shapes-vlm", taps="all", max_length=64)


def _source(size: int = 16) -> torch.Tensor:
    return torch.rand(3, size, size) * 2 - 1


def test_the_dataset_mixes_edits_text_to_image_reconstruction_and_compositions_deterministically():
    data = ShapesEditDataset(400, image_size=16, text_to_image_fraction=0.25, reconstruction_fraction=0.25, composition_fraction=0.25)
    examples = [data.example(i) for i in range(400)]
    kinds = [e[0] for e in examples]
    assert not any(is_held_out(scene) for e in examples for scene in (*e[2], e[3]))  # no held-out scene is a training image
    assert [data.example(i)[1] for i in range(20)] == [data.example(i)[1] for i in range(20)]
    counts = {k: sum(x == k for x in kinds) for k in ("text_to_image", "reconstruction")}
    assert 60 < counts["text_to_image"] < 140 and 60 < counts["reconstruction"] < 140
    assert any(k.startswith("compose") for k in kinds) and any(k in ("recolour", "move", "swap") for k in kinds)
    for i in range(40):
        kind, _, refs, target = data.example(i)
        item = data[i]
        assert len(item["references"]) == len(refs) and item["image"].shape == (3, 16, 16)
        assert (kind == "text_to_image") == (refs == [])
        if kind == "reconstruction":
            assert refs[0] == target


def test_the_dataset_refuses_bad_mixes_and_kinds():
    with pytest.raises(ValueError, match="sum to at most 1"):
        ShapesEditDataset(10, text_to_image_fraction=0.8, reconstruction_fraction=0.3)
    with pytest.raises(ValueError, match="edit kinds"):
        ShapesEditDataset(10, kinds=("recolour", "paint"))


def test_a_batch_of_edits_carries_each_items_references():
    data = ShapesEditData(image_size=16, batch_size=4, val_size=4, text_to_image_fraction=0.5)
    batch = data.collate([data.train_set[i] for i in range(8)])
    assert batch.references is not None and len(batch.references) == 8
    assert [len(r) for r in batch.references] == [len(data.train_set.example(i)[2]) for i in range(8)]
    assert collate_items([{"image": torch.zeros(3, 4, 4), "prompt": "a"}]).references is None
    assert [it["prompt"] for it in data.preview_items(2)] == data.preview_prompts(2)


def test_references_reach_the_model_only_through_the_vlm(vlm):
    module = ImageEditing(vlm, FUSION, BACKBONE, image_size=16).eval()
    assert module.backbone.x_embedder.proj.in_channels == 3  # no pixels of the source
    prompts, refs = ["make the red circle blue", "a red circle"], [[_source()], []]
    with torch.no_grad():
        with_image = module.condition(prompts, references=refs)
        direct = module.fusion(vlm(prompts, refs))
        without = module.condition(prompts)
    assert torch.allclose(with_image.tokens, direct.tokens)
    assert with_image.tokens.shape[1] > without.tokens.shape[1]  # the image's tokens are conditioned on
    out = module.generate(prompts, references=refs, num_steps=2)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_an_encoder_that_reads_no_images_is_refused(encoder):
    with pytest.raises(ValueError, match="needs an encoder that reads images"):
        ImageEditing(encoder, FUSION, BACKBONE, image_size=16)


def test_the_pixel_baseline_starts_as_the_text_to_image_model(vlm, tmp_path):
    t2i = TextToImage(vlm, FUSION, BACKBONE, image_size=16)
    torch.nn.init.normal_(t2i.backbone.final.linear.weight, std=0.02)  # a non-trivial output
    path = tmp_path / "t2i.ckpt"
    torch.save({"state_dict": t2i.state_dict()}, path)
    editing = ImageEditing(vlm, FUSION, BACKBONE, image_size=16, source_pixels=True, init_from=str(path))
    assert editing.backbone.x_embedder.proj.in_channels == 6
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0.3, 0.8])
    cond = t2i.condition(["a red circle", "a blue square"])
    sources = [[_source()], [_source(24)]]
    with torch.no_grad():
        expected = t2i.backbone(x, t, cond)
        got = editing.denoiser(sources, 2)(x, t, cond)
        assert torch.allclose(got, expected, atol=1e-5)  # the source's channels start at zero
        torch.nn.init.normal_(editing.backbone.x_embedder.proj.weight)  # now the sources matter
        single = editing.denoiser(sources, 2)(x, t, cond)
        doubled = editing.denoiser(sources, 2)(torch.cat([x, x]), torch.cat([t, t]), type(cond).cat([cond, cond]))
        swapped = editing.denoiser(sources[::-1], 2)(x, t, cond)
    assert torch.allclose(doubled[:2], single, atol=1e-5) and torch.allclose(doubled[2:], single, atol=1e-5)  # guidance's copies see the same sources
    assert not torch.allclose(swapped, single, atol=1e-3)
    with pytest.raises(ValueError, match="a batch of 3 for 2 sources"):
        editing.denoiser(sources, 2)(x[:1].repeat(3, 1, 1, 1), t[:1].repeat(3), cond)


def test_init_from_copies_buffers_and_prefers_the_checkpoints_averages(vlm, tmp_path):
    fusion = partial(LAPHead, layer_depth=1, refiner_depth=1, input_norm="standardize")
    t2i = TextToImage(vlm, fusion, BACKBONE, image_size=16, ema_decay=0.9)
    for buffer in t2i.fusion.standardizer.buffers():
        buffer.add_(1.5)  # statistics a run has gathered
    t2i.ema.shadow["backbone.final.linear.bias"].fill_(0.25)  # the averages differ from the live weights
    path = tmp_path / "t2i.ckpt"
    torch.save({"state_dict": t2i.state_dict(), "ema": t2i.ema.checkpoint_state()}, path)
    editing = ImageEditing(vlm, fusion, BACKBONE, image_size=16, init_from=str(path))
    for (name, a), b in zip(t2i.fusion.standardizer.named_buffers(), editing.fusion.standardizer.buffers()):
        assert torch.equal(a, b), name
    assert torch.all(editing.backbone.final.linear.bias == 0.25)


def test_init_from_refuses_a_checkpoint_of_other_parts(vlm, tmp_path):
    other = TextToImage(vlm, FUSION, partial(SingleStreamDiT, patch_size=4, width=48, depth=1, num_heads=2), image_size=16)
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": other.state_dict()}, path)
    with pytest.raises(ValueError, match="has shape"):
        ImageEditing(vlm, FUSION, BACKBONE, image_size=16, init_from=str(path))
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="lacks"):
        ImageEditing(vlm, FUSION, BACKBONE, image_size=16, init_from=str(path))


def test_the_suite_is_held_out_versioned_and_its_anchors_score_as_they_must():
    cases = build_edit_suite(per_kind=4, compositions=3)
    assert all(is_held_out(c.sources[0]) for c in cases if not c.kind.startswith("compose"))
    assert [c.kind for c in cases].count("swap") == 4 and [c.kind for c in cases].count("compose3") == 3
    assert build_edit_suite(per_kind=4, compositions=3) == cases
    assert cases[0].instruction == build_edit_suite(per_kind=1, compositions=0)[0].instruction
    scores = {a: score_edit_images(cases, anchor_outputs(cases, a, 48)) for a in ANCHORS}
    assert scores["target"]["success"] == 1.0 and scores["target"]["composition"]["compose3"] == 1.0
    assert scores["source"]["success"] == 0.0 and scores["source"]["preservation"] == 1.0


def test_preservation_counts_only_the_untouched_objects():
    a, b = SceneObject("circle", "red", "large", 0, 0), SceneObject("square", "blue", "small", 1, 1)
    source, target = Scene((a, b)), Scene((a, SceneObject("square", "green", "small", 1, 1)))
    assert preserved(source, target, Scene((a,))) and not preserved(source, target, Scene((b,)))


def test_more_images_than_the_instruction_names_is_refused():
    check_references("make the red circle blue", 1)
    check_references("combine the circle from the first image and the square from the second image", 2)
    with pytest.raises(ValueError, match="2 reference images but the instruction names 1"):
        check_references("make the red circle blue", 2)


def test_the_encoder_refuses_more_image_tokens_than_its_context(vlm, monkeypatch):
    monkeypatch.setattr(vlm.model.config.get_text_config(), "max_position_embeddings", 30)
    with pytest.raises(ValueError, match="exceed the encoder's context of 30"):
        vlm(["combine them"], [[_source(32)] * 3])


def test_sample_with_images_names_a_missing_or_undecodable_file(tmp_path, capsys):
    from kit.verbs import sample

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    for path, message in ((tmp_path / "missing.png", "does not exist"), (bad, "cannot be decoded")):
        assert sample.main(["--ckpt", "unused.ckpt", "--prompt", "make it blue", "--image", str(path)]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_edit_fine_tuning_runs_from_the_cli_and_is_scored(tmp_path, capsys):
    from kit.cli import main

    recipes = ["-c", "recipes/lap.yaml", "-c", "recipes/edit.yaml", "-c", "recipes/smoke.yaml"]
    assert main(["fit", *recipes, f"--trainer.logger.init_args.save_dir={tmp_path}"]) == 0
    ckpt = next(tmp_path.glob("edit/version_0/checkpoints/last.ckpt"))
    baseline = ["-c", "recipes/ablations/editing/source_pixels.yaml", f"--trainer.logger.init_args.save_dir={tmp_path}", f"--model.init_args.init_from={ckpt}"]
    assert main(["fit", *recipes, *baseline]) == 0
    assert next(tmp_path.glob("edit_source_pixels/version_0/checkpoints/last.ckpt"))
    out = tmp_path / "edit_eval.json"
    assert main(["evaluate-edit", "--ckpt", str(ckpt), "--per-kind", "1", "--compositions", "1", "--steps", "2", "--out", str(out)]) == 0
    import json

    results = json.loads(out.read_text())
    assert set(results["kinds"]) == {"recolour", "move", "add", "remove", "resize", "swap", "compose2", "compose3"}
    assert 0.0 <= results["success"] <= 1.0 and 0.0 <= results["preservation"] <= 1.0
    image = tmp_path / "src.png"
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((40, 60, 4)) * 255).astype("uint8"), "RGBA").save(image)  # another size and mode
    assert (
        main(
            [
                "sample",
                "--ckpt",
                str(ckpt),
                "--prompt",
                "make the red circle blue",
                "--image",
                str(image),
                "--num",
                "2",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "g.png"),
            ]
        )
        == 0
    )


@pytest.mark.slow
def test_the_editing_benchmark_runs_resumes_and_writes_its_summary(tmp_path):
    import json
    import subprocess
    import sys

    argv = [sys.executable, "benchmarks/editing.py", "--smoke", "--steps", "3", "--per-kind", "1", "--compositions", "1", "--transfer", "--budgets", "24"]
    argv += ["--long-steps", "4", "--long-baseline"]
    argv += ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    summary = json.loads((tmp_path / "out" / "edit_eval.json").read_text())
    assert {"kinds", "success", "preservation", "composition", "transfer", "baseline_source_pixels", "before_editing", "t2i_checkpoint", "fit_seconds"} <= set(
        summary
    )
    assert set(summary["before_editing"]) >= {"success", "preservation"}, "the starting checkpoint is scored by the script, not by hand"
    long_runs = {"vlm_only_long4_seed0", "source_pixels_long4_seed0"}
    assert set(summary["fit_seconds"]) == {"t2i_seed0", "vlm_only_seed0", "source_pixels_seed0", "t2i_control_seed0", "vlm_only_px24_seed0", *long_runs}
    assert [point["step"] for point in summary["long"]["vlm_only"]["curve"]] == [2, 4], "the long run is scored at each kept checkpoint"
    assert summary["success"] == summary["long"]["vlm_only"]["final"]["success"] and summary["study"]["edit_steps"] == 3
    assert summary["baseline_source_pixels"]["success"] == summary["long"]["source_pixels"]["final"]["success"]
    transfer = summary["transfer"]
    assert set(transfer["before"]) == set(transfer["edited"]) == set(transfer["control"]) == {"0"}
    assert transfer["edited_minus_control"]["values"] == [transfer["edited"]["0"] - transfer["control"]["0"]]
    assert summary["image_budget"][0]["tokens_per_image"] == 1 and 0 <= summary["image_budget"][0]["preservation"] <= 1
    assert summary["over_seeds"]["vlm_only"]["success"]["values"] == [summary["success"]]
    budget_config = (tmp_path / "runs" / "vlm_only_px24_seed0" / "version_0" / "config.yaml").read_text()
    assert "min_pixels: 576" in budget_config and "max_pixels: 576" in budget_config, "the budget run reads its images at its budget"
    again = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True)  # everything is done: nothing is refit
    log = (tmp_path / "out" / "log.txt").read_text()
    assert again.returncode == 0 and log.count("$ python -m kit fit") == 7 and log.count("$ python -m kit evaluate-edit") == 8
    assert log.count("$ python -m kit evaluate ") == 3, "t2i_v1 of the checkpoint before, of the edited run and of its control, once each"
