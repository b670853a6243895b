"""`kit compare`: runs read back from event files into a table and plots; RunSummary feeds it."""

from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from kit.analysis.compare import load_runs, summarize, write_report
from kit.cli import main, run_cli

REPO = Path(__file__).resolve().parent.parent
FINAL_VAL = {("a", 0): 0.30, ("a", 1): 0.34, ("b", 0): 0.20, ("b", 1): 0.26}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "fusion"
    for (variant, seed), final in FINAL_VAL.items():
        with SummaryWriter(str(root / variant / f"seed{seed}")) as w:
            w.add_scalar("params/trainable", 1000 if variant == "a" else 2000, 0)
            for step in range(0, 101, 10):
                w.add_scalar("train/loss", 1.0 / (step + 1), step)
            w.add_scalar("val/loss", final + 0.5, 50)  # the best of a loss is its minimum: the final value here
            w.add_scalar("val/loss", final, 100)
            w.add_scalar("eval/overall", 0.1 + seed, 100)
    return root


def test_summary_is_mean_and_spread_over_seeds(runs):
    rows = summarize(load_runs(runs), ["val/loss", "eval/overall"])
    assert [r["variant"] for r in rows] == ["b", "a"]  # lower final val/loss first
    b = rows[0]
    assert b["seeds"] == 2 and b["params"] == 2000 and b["steps"] == 100
    assert b["val/loss final"] == pytest.approx(0.23) and b["val/loss final std"] == pytest.approx(0.0424264, rel=1e-4)
    assert b["val/loss best"] == pytest.approx(0.23)
    assert b["eval/overall final"] == pytest.approx(0.6)


def test_compare_verb_writes_table_csv_and_plots(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["compare", str(runs), "--metric", "val/loss", "--out", str(out)]) == 0
    table = (out / "compare.md").read_text()
    assert "| b | 2 | 0.2300 ± 0.0424 |" in table and "| a | 2 | 0.3200 ± 0.0283 |" in table
    assert (out / "val_loss.png").stat().st_size > 0 and (out / "train_loss.png").exists()
    assert len((out / "runs.csv").read_text().splitlines()) == 5
    assert "| b | 2 |" in capsys.readouterr().out


def test_compare_refuses_unknown_metrics_and_empty_folders(runs, tmp_path, capsys):
    assert main(["compare", str(runs), "--metric", "val/los", "--out", str(tmp_path / "r")]) == 2
    assert "metrics ['val/los'] were not logged by any run; logged scalars: eval/overall, params/trainable, train/loss, val/loss" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err


def test_run_summary_logs_parameters_and_hparams_for_compare(tmp_path):
    run_cli(
        [
            "fit",
            "-c",
            str(REPO / "recipes/lap.yaml"),
            "-c",
            str(REPO / "recipes/smoke.yaml"),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.logger.init_args.name=fusion/lap",
            "--trainer.logger.init_args.version=seed0",
            "--trainer.callbacks=[kit.tasks.RunSummary]",
        ]
    )
    run_dir = tmp_path / "fusion/lap/seed0"
    assert list((run_dir / "hparams").glob("events.out.tfevents.*")), "the HParams summary is written beside the run"
    rows, metrics = write_report(tmp_path / "fusion", tmp_path / "report")
    assert metrics == ["val/loss"] and rows[0]["variant"] == "lap" and rows[0]["params"] > 0 and rows[0]["val/loss final"] > 0
