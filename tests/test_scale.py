"""Scaling recipes: the DDP and FSDP overlays compose with the main recipe, fail clearly where they cannot run,
and the in-loop sampling callbacks behave on every rank (off under sharding, scores broadcast under DDP)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kit.callbacks.monitors import LayerWeightLogger, SampleGrid, SuiteEvaluation
from kit.runner import ConfigurationError, run_cli


def test_gpu_recipes_on_a_machine_without_one_fail_in_one_line_before_any_run_folder(repo, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for overlay in ("ddp", "fsdp"):
        args = ["fit", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), "-c", str(repo / f"recipes/scale/{overlay}.yaml")]
        with pytest.raises(
            ConfigurationError,
            match=r"No supported gpu backend found! \(this recipe asks for a GPU and none is present; on the CPU add --trainer.accelerator=cpu",
        ):
            run_cli([*args, f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)
        assert not any(tmp_path.iterdir()), "no run folder"


def test_fsdp_on_the_cpu_is_refused_by_lightning_and_by_torch(repo, tmp_path):
    """Why the 2-process FSDP check cannot run here: both refusals, pinned so a release that lifts them is noticed."""
    args = ["fit", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), "-c", str(repo / "recipes/scale/fsdp.yaml")]
    with pytest.raises(ConfigurationError, match="The strategy `fsdp` requires a GPU accelerator"):
        run_cli([*args, "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.logger=false"], run=False)
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match="FSDP needs a non-CPU accelerator device"):
            FullyShardedDataParallel(torch.nn.Linear(4, 4))
    finally:
        dist.destroy_process_group()


def test_the_fsdp_recipe_names_classes_that_exist_and_strategy_settings_lightning_takes(repo):
    import yaml
    from lightning.pytorch.strategies import FSDPStrategy

    from kit.runner import accepted_arguments

    init = yaml.safe_load((repo / "recipes/scale/fsdp.yaml").read_text())["trainer"]["strategy"]["init_args"]
    assert set(init) <= set(accepted_arguments(FSDPStrategy)), sorted(set(init) - set(accepted_arguments(FSDPStrategy)))
    from importlib import import_module

    for path in init["auto_wrap_policy"]:
        module, name = path.rsplit(".", 1)
        assert isinstance(getattr(import_module(module), name), type), path
    strategy = FSDPStrategy(
        **{**init, "auto_wrap_policy": {getattr(import_module(p.rsplit(".", 1)[0]), p.rsplit(".", 1)[1]) for p in init["auto_wrap_policy"]}}
    )
    assert strategy.sharding_strategy.name == "FULL_SHARD"


class _Refuse:
    def generate(self, *args, **kwargs):
        raise AssertionError("a callback generated under a sharded strategy")

    fusion = SimpleNamespace(layer_weights=lambda: (_ for _ in ()).throw(AssertionError("read a sharded weight")))


def test_sampling_callbacks_are_off_under_sharding_and_say_so_once():
    from lightning.pytorch.strategies import FSDPStrategy

    trainer = SimpleNamespace(strategy=FSDPStrategy(), global_step=10, is_global_zero=True, loggers=[], callback_metrics={})
    for callback in (SampleGrid(every_n_steps=5), SuiteEvaluation(every_n_steps=5, per_category=1), LayerWeightLogger(every_n_steps=5)):
        with pytest.warns(UserWarning, match=f"{type(callback).__name__} is off under FSDPStrategy.*python -m kit sample / evaluate"):
            callback.on_train_batch_end(trainer, _Refuse(), None, None, 0)
        import warnings

        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            callback.on_train_end(trainer, _Refuse())
        assert not [w for w in again if "is off under" in str(w.message)], "warned twice"


def test_suite_scores_reach_every_rank_through_the_broadcast():
    """Rank 1 does not generate; it receives rank 0's scores, so a checkpoint monitored on eval/overall agrees across ranks."""
    sent = {"eval/overall": 0.25, "eval/single_object": 0.5}
    calls = []

    class Strategy:
        def broadcast(self, obj, src=0):
            calls.append((obj, src))
            return sent

    trainer = SimpleNamespace(strategy=Strategy(), global_step=7, is_global_zero=False, loggers=[], callback_metrics={})
    SuiteEvaluation(every_n_steps=7, per_category=1).on_train_batch_end(trainer, _Refuse(), None, None, 0)
    assert calls == [(None, 0)] and {k: float(v) for k, v in trainer.callback_metrics.items()} == sent


def test_the_gpu_script_runs_every_check_within_eight_minutes_of_limits(repo):
    import re
    import subprocess

    proc = subprocess.run(["bash", "benchmarks/gpu.sh"], cwd=repo, env={"GPU_SH_DRY": "1", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    steps = re.findall(r"^== (\S+) \(limit (\d+)s\): (.*)$", proc.stdout, re.M)
    names = [s[0] for s in steps]
    assert names == ["kernels_attention_pool", "kernels_weighted_sum", "kernels_layer_attention", "pytest_gpu", "train_step_b2", "fit_speed_lap"]
    assert sum(int(s[1]) for s in steps) <= 480, "the limits must fit 8 minutes"
    for _, _, command in steps:  # every script it names exists
        script = next((w for w in command.split() if w.endswith(".py")), None)
        assert script is None or (repo / script).is_file(), script


@pytest.mark.slow
def test_the_throughput_benchmarks_run_and_record(repo, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "ts.jsonl"
    cmd = [
        sys.executable,
        "benchmarks/train_step.py",
        "--presets",
        "s2",
        "--modes",
        "cached",
        "--batch",
        "1",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())
    assert row["preset"] == "s2" and row["backbone_params_m"] > 30 and row["tflops_per_step"] > 0 and row["samples_per_sec"] > 0
    assert row["mfu"] is None or 0 < row["mfu"] < 1
    fs = tmp_path / "fs.jsonl"
    variant = "a=recipes/lap.yaml,recipes/smoke.yaml"
    proc = subprocess.run([sys.executable, "benchmarks/fit_speed.py", "--variant", variant, "--variant", variant.replace("a=", "b="), "--steps", "4", "--warmup", "1", "--out", str(fs)],
                          cwd=repo, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in fs.read_text().splitlines()]
    assert [r["variant"] for r in rows] == ["a", "b"] and rows[0]["ratio_to_first"] == 1.0 and rows[1]["steps"] == 3
