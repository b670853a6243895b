"""DDP on the CPU: two gloo processes finish, checkpoint, draw their own noise and agree with one process."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def fit(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """`python -m kit fit` in a fresh process (DDP relaunches the command line, which must not be pytest's)."""
    cmd = [sys.executable, "-m", "kit", "fit", "-c", "recipes/lap.yaml", "-c", "recipes/smoke.yaml", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cmd += ["--trainer.max_steps=20", "--trainer.val_check_interval=20", "--trainer.limit_val_batches=2", "--trainer.accelerator=cpu"]
    cmd += ["--model.init_args.objective.init_args.loss_space=prediction", *extra]  # the plain x0 loss: a validation loss without 1/t^2 weights
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def val_loss(run: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return events.Scalars("val/loss")[-1].value


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_finishes_checkpoints_and_matches_one_process(tmp_path):
    two = fit(
        tmp_path / "ddp",
        "-c",
        "recipes/scale/ddp.yaml",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.precision=32-true",
        "--data.init_args.batch_size=2",
    )
    assert two.returncode == 0, two.stderr[-3000:]
    run = next((tmp_path / "ddp").glob("*/version_0"))
    assert (run / "checkpoints" / "last.ckpt").is_file(), "the checkpoint is written"
    assert list((run / "samples").glob("step_*.png")), "rank 0's sample grid is written (no hang on the log-dir broadcast)"
    one = fit(tmp_path / "one", "--trainer.devices=1", "--data.init_args.batch_size=4")  # the same global batch
    assert one.returncode == 0, one.stderr[-3000:]
    other_seed = fit(tmp_path / "seed1", "--trainer.devices=1", "--data.init_args.batch_size=4", "--seed_everything=1")
    assert other_seed.returncode == 0, other_seed.stderr[-3000:]
    a, b = val_loss(run), val_loss(next((tmp_path / "one").glob("*/version_0")))
    spread = abs(b - val_loss(next((tmp_path / "seed1").glob("*/version_0"))))
    print(f"val loss after 20 steps: DDP {a:.4f}, one process {b:.4f}, one process at another seed differs by {spread:.4f}")
    # the ranks draw other noise than one process does, so the runs differ as two seeds do: the tolerance is that spread
    assert abs(a - b) <= 3 * spread + 0.02 * b, f"DDP val loss {a} vs one process {b}; two seeds of one process differ by {spread}"


def test_ranks_draw_different_noise_and_resumes_draw_the_same(encoder, monkeypatch):
    from functools import partial
    from types import SimpleNamespace

    from kit.backbones import SingleStreamDiT
    from kit.fusion import LAPHead
    from kit.tasks import TextToImage

    module = TextToImage(
        encoder,
        fusion=partial(LAPHead, layer_depth=0, refiner_depth=0),
        backbone=partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2),
        image_size=16,
    )
    draws = {}
    for rank, step in [(0, 5), (1, 5), (0, 6), (0, 5)]:
        monkeypatch.setattr(module, "_trainer", SimpleNamespace(global_rank=rank, global_step=step, accumulate_grad_batches=2))
        monkeypatch.setattr(type(module), "global_step", property(lambda self: self._trainer.global_step))
        draws.setdefault((rank, step), []).append(torch.randn(4, generator=module.step_generator()))
    assert not torch.equal(draws[(0, 5)][0], draws[(1, 5)][0]), "ranks differ"
    assert not torch.equal(draws[(0, 5)][0], draws[(0, 6)][0]), "steps differ"
    assert torch.equal(draws[(0, 5)][0], draws[(0, 5)][1]), "the same (step, rank) draws the same: a resumed run repeats it"
    assert not torch.equal(torch.randn(4, generator=module.step_generator(0)), torch.randn(4, generator=module.step_generator(1))), (
        "the micro-batches of one accumulated step draw differently"
    )


@pytest.mark.slow
def test_ddp_spawn_is_refused_with_the_reason(tmp_path):
    proc = fit(tmp_path, "--trainer.devices=2", "--trainer.strategy=ddp_spawn")
    assert proc.returncode != 0
    assert "ddp_spawn strategy is not supported" in proc.stderr and "--trainer.strategy=ddp" in proc.stderr, proc.stderr[-2000:]


pytestmark = pytest.mark.filterwarnings("ignore")
