"""The command line: verbs, recipes, a tiny fit of every recipe, sampling from its checkpoint, bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from kit.cli import KIT_VERBS, LIGHTNING_VERBS, main, run_cli
from kit.tasks import Capability

REPO = Path(__file__).resolve().parent.parent
BASES = {
    "recipes/edit.yaml": ("recipes/lap.yaml",),
    "recipes/ablations/editing/t2i_control.yaml": ("recipes/lap.yaml",),  # the transfer's text-to-image control
    "recipes/ablations/editing/": ("recipes/lap.yaml", "recipes/edit.yaml"),
    "recipes/joint/learned_null.yaml": ("recipes/unidiffuser.yaml",),
    "recipes/joint/levers/": ("recipes/unidiffuser.yaml",),  # the joint model's levers (results/joint_levers)
}
"""Overlays that compose with more than `lap.yaml` (by path prefix); `edit.yaml` is a top-level overlay, not a full recipe."""
FULL_RECIPES = sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes").glob("*.yaml") if p.name not in ("smoke.yaml", "edit.yaml"))
OVERLAYS = sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes").glob("*/**/*.yaml") if p.parent.name not in ("vlm", "joint", "autoencoder")) + [
    "recipes/edit.yaml",
    "recipes/joint/learned_null.yaml",
]  # vlm/, joint/, autoencoder/: whole recipes of their own tasks (but one overlay)
SMOKE = "recipes/smoke.yaml"


def bases(overlay: str) -> tuple[str, ...]:
    """The recipes an overlay composes with."""
    return next((b for prefix, b in BASES.items() if overlay.startswith(prefix)), ("recipes/lap.yaml",))


def fit_args(recipe: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["fit", "-c", str(REPO / recipe), "-c", str(REPO / SMOKE), f"--trainer.logger.init_args.save_dir={tmp_path}", *extra]


@pytest.mark.slow
def test_help_lists_every_verb():
    out = subprocess.run([sys.executable, "-m", "kit", "--help"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    for verb in [*LIGHTNING_VERBS, *KIT_VERBS]:
        assert f"  {verb} " in out


def resolved_config(*configs: str, capsys) -> dict:
    """The config `--print_config` resolves for `configs` (parsing only, nothing is built)."""
    with pytest.raises(SystemExit) as info:
        main(["fit", *[a for c in configs for a in ("-c", str(REPO / c))], "--print_config"])
    assert info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def assert_sets(expected, got, where: str) -> None:
    """Every value the overlay writes is in the resolved config (classes by class_path, lists item by item)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), f"{where}: resolved to {got!r}"
        for key, value in expected.items():
            assert key in got, f"{where}.{key} is missing from the resolved config"
            assert_sets(value, got[key], f"{where}.{key}")
    elif isinstance(expected, list) and expected and isinstance(expected[0], dict):
        assert [e.get("class_path") for e in expected] == [g.get("class_path") for g in got], f"{where}: classes differ"
        for i, (e, g) in enumerate(zip(expected, got)):
            assert_sets(e, g, f"{where}[{i}]")
    else:
        unordered = isinstance(expected, list) and "auto_wrap_policy" in where  # a set of classes: printed in hash order
        same = sorted(got) == sorted(expected) if unordered else got == expected or (isinstance(expected, list) and list(got) == expected)
        assert same, f"{where}: {got!r} != {expected!r}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_composes_with_the_main_recipe(overlay, capsys):
    config = resolved_config(*bases(overlay), overlay, capsys=capsys)
    assert_sets(yaml.safe_load((REPO / overlay).read_text()), config, overlay)


@pytest.mark.parametrize("recipe", FULL_RECIPES + ["recipes/ablations/fusion/last_layer.yaml", "recipes/edit.yaml", "recipes/joint/learned_null.yaml"])
def test_recipes_build(recipe, tmp_path):
    recipes = [recipe] if recipe in FULL_RECIPES else [*bases(recipe), recipe]
    args = ["fit", *[a for r in recipes for a in ("-c", str(REPO / r))], "-c", str(REPO / SMOKE), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli = run_cli(args, run=False)
    data = cli.datamodule
    if cli.model.autoencoder is None:  # pixel space: the data's geometry is the model's
        assert cli.model.sample_shape == (data.channels, data.image_size, data.image_size), "data geometry is linked into the model"
    assert cli.model.backbone.in_channels == 3 or cli.model.autoencoder is not None
    if Capability.IMAGE_TO_TEXT in cli.model.capabilities:  # the joint model: the text stream is the codec's latent
        assert (cli.model.backbone.text_tokens, cli.model.backbone.text_dim) == (cli.model.codec.num_latents, cli.model.codec.latent_dim)
    else:
        assert cli.model.fusion.cond_dim == cli.model.backbone.cond_dim


def test_the_last_layer_baseline_is_lap_with_another_head(capsys):
    """The baseline is a composition (`lap.yaml` + the head overlay), not a copy that can drift: it differs
    from `lap.yaml` in the head's class and the head's own settings only."""
    lap = resolved_config("recipes/lap.yaml", capsys=capsys)
    last = resolved_config("recipes/lap.yaml", "recipes/ablations/fusion/last_layer.yaml", capsys=capsys)
    head = last["model"]["init_args"]["fusion"]
    assert head["class_path"].endswith("LastLayerHead") and head["init_args"]["input_norm"] == "standardize", "lap.yaml's input norm carries over"
    for config in (lap, last):
        del config["model"]["init_args"]["fusion"]
    assert lap == last


@pytest.mark.parametrize("recipe", FULL_RECIPES)
@pytest.mark.slow
def test_every_recipe_fits_and_samples(recipe, tmp_path, capsys):
    cli = run_cli(fit_args(recipe, tmp_path, *(["--trainer.max_steps=21"] if recipe == "recipes/lap.yaml" else [])))  # past the throughput window
    runs = list(tmp_path.glob("*/version_0"))
    assert len(runs) == 1, f"one run directory expected under {tmp_path}, found {runs}"
    run = runs[0]
    assert (run / "config.yaml").is_file(), "the resolved config is saved beside the logs"
    assert list(run.glob("events.out.tfevents.*")), "TensorBoard events are written"
    if recipe == "recipes/lap.yaml":  # what the README says a run logs, read back from its events
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
        events.Reload()
        tags = events.Tags()
        assert "train/loss" in tags["scalars"] and any(t.startswith("lr-AdamW") for t in tags["scalars"])
        assert any(t.startswith("fusion/layer_weight/L") for t in tags["scalars"]), "LAP's per-layer weights as scalars"
        assert "fusion/layer_weights" in tags["histograms"] and "fusion/layer_weights_plot" in tags["images"]
        assert any("samples_per_sec" in t for t in tags["scalars"]), f"samples/s is logged: {tags['scalars']}"
        # the values, not only the tags: the last logged weights are the head's final ones, and samples/s is a rate
        weights = cli.model.fusion.layer_weights().float()
        for layer, w in zip(cli.model.fusion.weighted_layers, weights.tolist(), strict=True):
            last = events.Scalars(f"fusion/layer_weight/L{layer:02d}")[-1]
            assert last.step == cli.trainer.global_step and last.value == pytest.approx(w, rel=1e-5, abs=1e-7)
        hist = events.Histograms("fusion/layer_weights")[-1].histogram_value
        assert hist.num == len(weights) and hist.sum == pytest.approx(float(weights.sum()), rel=1e-5, abs=1e-6)
        assert (hist.min, hist.max) == pytest.approx((float(weights.min()), float(weights.max())), rel=1e-5, abs=1e-7)
        rates = [e.value for t in tags["scalars"] if "samples_per_sec" in t for e in events.Scalars(t)]
        assert rates and all(r > 0 for r in rates), f"samples/s must be positive: {rates}"
        assert any(t.startswith("samples") for t in tags["images"]), "sample grids with their prompts"
    assert list((run / "samples").glob("step_*.png")), "a sample grid is written at the end of training"
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert state and not any(k.startswith("encoder.") for k in state), "the frozen encoder stays out of checkpoints"

    out = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(ckpt), "--prompt", "a red circle", "--prompt", "a blue square", "--num", "3", "--out", str(out), "--scale", "1"]) == 0
    grid = Image.open(out)
    side = yaml.safe_load((REPO / recipe).read_text())["data"]["init_args"]["image_size"]
    assert grid.size == (3 * (side + 1) + 1, 2 * (side + 1) + 1)  # the recipe's image size with 1-px padding


@pytest.mark.slow
def test_sampling_with_rewriting_switched_at_inference(tmp_path, capsys):
    run_cli(fit_args("recipes/lap.yaml", tmp_path))
    ckpt = str(next(tmp_path.glob("*/version_0/checkpoints/last.ckpt")))
    out = str(tmp_path / "grid.png")
    args = ["sample", "--ckpt", ckpt, "--prompt", "a red circle", "--num", "1", "--out", out, "--steps", "2"]
    assert main([*args, "--system-prompt", "Describe a scene."]) == 2
    assert "this model does not rewrite (add --rewrite on)" in capsys.readouterr().err
    assert main([*args, "--rewrite", "on", "--system-prompt", "Describe a scene."]) == 0
    assert "rewrite: 'a red circle' -> " in capsys.readouterr().out
    assert main([*args, "--rewrite", "maybe"]) == 2


@pytest.mark.slow
def test_checkpoint_round_trip_reproduces_samples(tmp_path):
    from kit.loading import load_checkpoint

    cli = run_cli(fit_args("recipes/lap.yaml", tmp_path, "--model.init_args.ema_decay=0.9"))
    ckpt = next(tmp_path.glob("*/version_0/checkpoints/last.ckpt"))
    loaded = load_checkpoint(ckpt)
    assert loaded.ema is not None and loaded.ema.updates == cli.model.ema.updates == 3, "the EMA is checkpointed"
    a = cli.model.generate(["a red circle"], seed=3)
    b = loaded.generate(["a red circle"], seed=3)
    assert torch.allclose(a, b, atol=1e-5)


def test_unknown_head_lists_known_heads(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(fit_args("recipes/lap.yaml", tmp_path, "--model.init_args.fusion=PerceiverHead"), run=False)
    err = capsys.readouterr().err
    assert "known fusion heads: " in err
    for name, path in [("lap", "kit.fusion.lap.LAPHead"), ("last_layer", "kit.fusion.last_layer.LastLayerHead"), ("qformer", "kit.fusion.qformer.QFormerHead")]:
        assert f"{name} ({path})" in err


def test_unknown_backbone_lists_known_backbones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(fit_args("recipes/lap.yaml", tmp_path, "--model.init_args.backbone=kit.backbones.HourglassDiT"), run=False)
    assert "known backbones: dit (kit.backbones.dit.SingleStreamDiT)" in capsys.readouterr().err


def test_incompatible_pair_fails_before_training(tmp_path):
    from kit.backbones import IncompatibleHeadError
    from kit.cli import ConfigurationError

    with pytest.raises(
        ConfigurationError, match=r"PooledOnlyHead provides \['pooled'\] but backbone SingleStreamDiT consumes \['per_layer', 'tokens'\]"
    ) as info:
        run_cli(fit_args("recipes/lap.yaml", tmp_path, "--model.init_args.fusion=tests.parts_for_tests.PooledOnlyHead"))
    assert isinstance(info.value.__cause__, IncompatibleHeadError)
    assert not list(tmp_path.glob("**/*.ckpt")), "nothing was trained"


def test_missing_checkpoint_says_so(tmp_path, capsys):
    assert main(["sample", "--ckpt", str(tmp_path / "nope.ckpt"), "--prompt", "a red circle", "--out", str(tmp_path / "x.png")]) == 2
    assert "nope.ckpt' does not exist" in capsys.readouterr().err


def test_unknown_verb(capsys):
    assert main(["train"]) == 2
    assert "unknown verb 'train'" in capsys.readouterr().err


@pytest.mark.parametrize("overlay", sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes" / "objectives").glob("*.yaml")))
@pytest.mark.slow
def test_objective_overlays_fit_and_sample(overlay, tmp_path):
    cli = run_cli(
        ["fit", "-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / overlay), "-c", str(REPO / SMOKE), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    )
    images = cli.model.generate(["a red circle"], num_steps=3)
    side = cli.datamodule.image_size
    assert images.shape == (1, 3, side, side) and torch.isfinite(images).all()


@pytest.mark.parametrize("overlay", sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes" / "backbones").glob("*_shapes.yaml")))
@pytest.mark.slow
def test_backbone_recipes_fit_on_the_shapes_world(overlay, tmp_path):
    # the preset's own sizes, shortened to a few steps (smoke.yaml would shrink the backbone too)
    args = ["fit", "-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / overlay), "--trainer.max_steps=2", "--trainer.limit_val_batches=1"]
    args += ["--trainer.val_check_interval=2", "--data.init_args.batch_size=4", "--data.init_args.val_size=8", "--data.init_args.num_workers=0"]
    cli = run_cli([*args, "--model.init_args.sampler.init_args.num_steps=2", f"--trainer.logger.init_args.save_dir={tmp_path}"])
    assert type(cli.model.backbone).__name__ in open(REPO / overlay).read()
    assert (next(tmp_path.glob("*/version_0")) / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_verifi_overlay_trains_with_rewrites_and_caches_them(tmp_path):
    from kit.types import TokenKind

    args = fit_args("recipes/lap.yaml", tmp_path, "--trainer.max_steps=2")
    args[3:3] = ["-c", str(REPO / "recipes/encoders/verifi.yaml")]
    cli = run_cli([*args, "--model.init_args.encoder.init_args.rewriter.init_args.max_new_tokens=12"])
    encoder = cli.model.encoder
    assert encoder.rewriting and encoder.rewriter.misses > 0
    out = encoder(["a red circle"])
    kinds = out.kinds[out.mask]
    assert (kinds == int(TokenKind.GENERATED)).any() and (kinds == int(TokenKind.INSTRUCTION)).any()
    assert not (kinds == int(TokenKind.PROMPT)).any(), "the raw prompt only enters as the instruction, which heads drop"
    assert encoder.fingerprint()["rewrite"]["system_prompt"].startswith("Rewrite the prompt")


def test_lap_long_is_lap_trained_longer():
    lap, long = (yaml.safe_load((REPO / r).read_text()) for r in ("recipes/lap.yaml", "recipes/lap_long.yaml"))
    assert long["trainer"]["max_steps"] >= 5 * lap["trainer"]["max_steps"]
    for config in (lap, long):
        for key in ("max_steps", "val_check_interval", "callbacks"):
            del config["trainer"][key]
        del config["trainer"]["logger"]["init_args"]["name"]
        del config["data"]["init_args"]["caption_curriculum"]
    assert lap == long, "recipes/lap_long.yaml drifted from recipes/lap.yaml beyond its length"


@pytest.mark.slow
def test_the_fusion_ablation_script_runs_its_whole_path(tmp_path):
    """recipes/ablations/fusion/run.sh at smoke size: the shared feature cache, two heads trained
    from it and scored by the suite, a finished run skipped on a rerun, and the comparison table."""
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "ROOT": str(tmp_path / "runs/fusion"),
        "CACHE": str(tmp_path / "cache"),
        "REPORT": str(tmp_path / "report"),
        "VARIANTS": "lap last_layer",
        "SEEDS": "0",
        "CACHE_ARGS": "--train-items 12",
    }
    script = str(REPO / "recipes/ablations/fusion/run.sh")
    args = ["bash", script, "-c", str(REPO / SMOKE), "--model.init_args.sampler.init_args.num_steps=2"]
    first = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "cache" / "manifest.json").is_file()
    for head in ("lap", "last_layer"):
        run = tmp_path / "runs/fusion" / head / "seed0"
        assert (run / "done").is_file() and list(run.glob("events.out.tfevents.*"))
    table = (tmp_path / "report" / "compare.md").read_text()
    assert "lap" in table and "last_layer" in table and "eval/overall" in table
    again = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and again.stdout.count("(done)") == 2, again.stdout[-1000:]
