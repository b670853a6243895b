"""Runs that go wrong stop cleanly: a diverging run stops at its first non-finite step with its weights saved."""

import math
from pathlib import Path

import pytest
import torch

from kit.cli import main

REPO = Path(__file__).resolve().parent.parent


def smoke_fit(tmp_path: Path, *extra: str) -> list[str]:
    return ["fit", "-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / "recipes/smoke.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}", *extra]


@pytest.mark.slow
def test_a_diverging_run_stops_at_its_first_nonfinite_step_and_keeps_its_weights(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code = main(smoke_fit(tmp_path, "--model.init_args.optimizer.init_args.lr=1e4", "--trainer.max_steps=20", "--trainer.log_every_n_steps=1"))
    err = capsys.readouterr().err
    assert code == 1, err
    line = next(x for x in err.splitlines() if x.startswith("error: training stopped at step"))
    step = int(line.split("step ")[1].split(":")[0])
    saved = next(tmp_path.glob(f"*/version_0/checkpoints/nonfinite-step={step}.ckpt"))
    assert str(saved) in line
    checkpoint = torch.load(saved, map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point()), "the saved weights are finite"
    assert checkpoint["global_step"] == step - 1, "the weights from before the bad update"
    events = EventAccumulator(str(next(tmp_path.glob("*/version_0"))), size_guidance={"scalars": 0})
    events.Reload()
    norms = {e.step: e.value for e in events.Scalars("train/grad_norm")}  # logged at the step's index (global_step before the update)
    assert all(math.isfinite(v) for s, v in norms.items() if s < step - 1), norms
    assert not math.isfinite(norms[step - 1]), f"step {step} is the first with a non-finite gradient norm: {norms}"
    assert step < 20, "the run did not go on to its last step"


def losses(run: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {e.step: e.value for e in events.Scalars("train/loss")}


@pytest.mark.parametrize("curriculum", [11200, 0], ids=["ordered", "shuffled"])
@pytest.mark.slow
def test_resume_from_a_mid_run_checkpoint_is_bit_identical(tmp_path, curriculum):
    """Resume a 20-step run from its step-10 checkpoint: every later loss, the final weights and the EMA match bit for bit."""
    overlay = tmp_path / "every10.yaml"
    overlay.write_text(
        "trainer:\n  max_steps: 20\n  val_check_interval: 20\n  callbacks:\n"
        "    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args: {save_last: true, every_n_train_steps: 10, save_top_k: -1}\n"
    )
    extra = ["-c", str(overlay), f"--data.init_args.caption_curriculum={curriculum}", "--model.init_args.ema_decay=0.9"]
    assert main(smoke_fit(tmp_path / "a", *extra)) == 0
    run_a = next((tmp_path / "a").glob("*/version_0"))
    mid = run_a / "checkpoints" / "epoch=0-step=10.ckpt"
    assert main(smoke_fit(tmp_path / "b", *extra, f"--ckpt_path={mid}")) == 0
    run_b = next((tmp_path / "b").glob("*/version_0"))
    a, b = losses(run_a), losses(run_b)
    assert sorted(b) == list(range(10, 20)), sorted(b)
    assert [b[s] for s in range(10, 20)] == [a[s] for s in range(10, 20)], "the resumed losses are the uninterrupted run's"
    end_a = torch.load(run_a / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    end_b = torch.load(run_b / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert end_a["global_step"] == end_b["global_step"] == 20
    assert all(torch.equal(end_a["state_dict"][k], end_b["state_dict"][k]) for k in end_a["state_dict"])
    assert end_a["ema"]["updates"] == end_b["ema"]["updates"] == 20, "the EMA counts every step, the checkpoint's included"
    assert all(torch.equal(end_a["ema"][k], end_b["ema"][k]) for k in end_a["ema"] if k != "updates"), "the EMA too"


@pytest.mark.slow
def test_resuming_another_model_is_refused_before_any_run_folder(tmp_path, capsys):
    assert main(smoke_fit(tmp_path / "a")) == 0
    ckpt = next((tmp_path / "a").glob("*/version_0/checkpoints/last.ckpt"))
    code = main(smoke_fit(tmp_path / "b", "--model.init_args.backbone.init_args.depth=2", f"--ckpt_path={ckpt}"))
    err = capsys.readouterr().err
    assert code == 2 and "holds another model than this recipe (backbone.init_args.depth: 1 -> 2)" in err, err
    assert not (tmp_path / "b").exists(), "no run folder was made"
    assert main(smoke_fit(tmp_path / "c", f"--ckpt_path={tmp_path / 'missing.ckpt'}")) == 2
    assert "missing.ckpt' does not exist" in capsys.readouterr().err


def test_a_longer_run_on_resume_stretches_the_schedule_and_says_so():
    from kit.optim import WarmupCosine

    def schedule(total: int):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, WarmupCosine(opt, total, warmup_steps=2, min_ratio=0.0)

    opt, short = schedule(10)
    for _ in range(5):
        opt.step()
        short.step()
    opt2, long = schedule(40)
    with pytest.warns(UserWarning, match="planned for 10 steps; the cosine now runs to this run's 40 steps"):
        long.load_state_dict(short.state_dict())
    assert long.last_epoch == 5 and long.total_steps == 40
    assert opt2.param_groups[0]["lr"] == pytest.approx(long.factor(5)) and long.factor(5) > short.factor(5), "the rate follows the longer cosine"


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_from_last_gives_the_uninterrupted_losses(tmp_path):
    """A run killed with SIGKILL at whatever step it reached resumes from `last.ckpt` (written every
    step, atomically by Lightning) and every later loss equals the uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    overlay = tmp_path / "every1.yaml"
    overlay.write_text(
        "trainer:\n  max_steps: 30\n  val_check_interval: 30\n  callbacks:\n"
        "    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args: {save_last: true, every_n_train_steps: 1, save_top_k: 0}\n"
    )
    extra = ["-c", str(overlay)]
    assert main(smoke_fit(tmp_path / "whole", *extra)) == 0
    cmd = [sys.executable, "-m", "kit", *smoke_fit(tmp_path / "killed", *extra)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "killed").glob("*/version_0/checkpoints/last.ckpt"))
        if found and torch.load(found[0], map_location="cpu", weights_only=True)["global_step"] >= 8:
            last = found[0]
            break
        time.sleep(0.2)
    assert proc.poll() is None and last is not None, "the run was still going when it was killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 8 <= step < 30
    assert main(smoke_fit(tmp_path / "resumed", *extra, f"--ckpt_path={last}")) == 0
    whole, resumed = losses(next((tmp_path / "whole").glob("*/version_0"))), losses(next((tmp_path / "resumed").glob("*/version_0")))
    assert sorted(resumed) == list(range(step, 30))
    assert [resumed[s] for s in range(step, 30)] == [whole[s] for s in range(step, 30)], f"killed at step {step}"


def test_a_setting_added_after_a_checkpoint_was_written_is_not_a_difference():
    from kit.checkpoint import config_differences

    saved = {"encoder": {"class_path": "kit.encoders.FrozenEncoder", "init_args": {"model": "kit:shapes-vlm", "taps": "all"}}}
    recipe = {"encoder": {"class_path": "kit.encoders.FrozenEncoder", "init_args": {"model": "kit:shapes-vlm", "taps": "all", "echo": False}}}
    assert config_differences(saved, recipe) == [], "a checkpoint from before `echo` existed resumes"
    recipe["encoder"]["init_args"]["taps"] = "last"
    assert config_differences(saved, recipe) == ["encoder.init_args.taps: 'all' -> 'last'"]


@pytest.mark.parametrize("save_last", [True, False])
@pytest.mark.slow
def test_the_final_step_is_checkpointed_when_the_interval_does_not_divide_the_run(tmp_path, save_last):
    """Lightning's `save_last` copies the last *triggered* checkpoint (step 3 of a 5-step run saving every 3 steps);
    `FinalCheckpoint` also writes the end of training, which is what `last.ckpt` is read as."""
    import torch

    overlay = tmp_path / "ckpt.yaml"
    overlay.write_text(
        "trainer:\n  max_steps: 5\n  val_check_interval: 5\n  callbacks:\n"
        f"    - class_path: kit.callbacks.FinalCheckpoint\n      init_args: {{save_last: {str(save_last).lower()}, every_n_train_steps: 3, save_top_k: -1}}\n"
    )
    assert main(smoke_fit(tmp_path, "-c", str(overlay))) == 0
    folder = next(tmp_path.glob("*/version_0/checkpoints"))
    steps = {p.name: torch.load(p, map_location="cpu", weights_only=True)["global_step"] for p in folder.glob("*.ckpt")}
    assert steps["epoch=0-step=3.ckpt"] == 3
    if save_last:
        assert steps["last.ckpt"] == 5 and len(steps) == 2, steps
    else:
        assert sorted(steps.values()) == [3, 5] and "last.ckpt" not in steps, steps  # the final step as a top-k checkpoint
