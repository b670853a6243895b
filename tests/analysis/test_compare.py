"""`kit compare`: runs read back from event files into a table and plots; RunSummary feeds it."""

from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from kit.analysis.compare import (
    Run,
    interval95,
    load_runs,
    markdown_table,
    pairwise,
    pairwise_markdown,
    summarize,
    welch_difference,
    write_report,
)
from kit.cli import main, run_cli

REPO = Path(__file__).resolve().parents[2]
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


def test_interval_is_student_t_over_seeds():
    assert interval95([0.20, 0.26]) == pytest.approx(12.7062 * 0.0424264 / 2**0.5, rel=1e-4)  # t(0.975, 1 dof)
    assert interval95([1.0, 2.0, 3.0]) == pytest.approx(4.3027 * 1.0 / 3**0.5, rel=1e-4)  # t(0.975, 2 dof)
    assert interval95([0.5]) is None
    diff, lo, hi = welch_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert diff == 0 and lo < 0 < hi
    assert welch_difference([1.0], [2.0, 3.0]) is None


def _scored(variant: str, seed: int, value: float) -> Run:
    return Run(variant=variant, name=f"seed{seed}", path=Path("."), scalars={"eval/overall": [(100, value, 0.0)]})


def test_pairwise_resolves_only_separated_variants():
    runs = [_scored("good", s, v) for s, v in enumerate((0.50, 0.52, 0.51))]
    runs += [_scored("bad", s, v) for s, v in enumerate((0.10, 0.12, 0.11))]
    runs += [_scored("noisy", s, v) for s, v in enumerate((0.05, 0.60, 0.30))]
    pairs = {(p["a"], p["b"]): p for p in pairwise(runs, "eval/overall", ["good", "noisy", "bad"])}
    assert pairs["good", "bad"]["resolved"] and pairs["good", "bad"]["diff"] == pytest.approx(0.40)
    assert not pairs["good", "noisy"]["resolved"] and not pairs["noisy", "bad"]["resolved"]
    matrix = pairwise_markdown(list(pairs.values()), ["good", "noisy", "bad"])
    assert "| good |  | · | > |" in matrix and "| bad | < | · |  |" in matrix
    assert "1 of 3 pairs resolved" in matrix
    # a loss is better when lower: the same numbers as val/loss flip the signs
    loss = [Run(r.variant, r.name, r.path, {"val/loss": r.scalars["eval/overall"]}) for r in runs]
    assert "| good |  | · | < |" in pairwise_markdown(pairwise(loss, "val/loss", ["good", "noisy", "bad"]), ["good", "noisy", "bad"])


def test_compare_verb_writes_table_csv_and_plots(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["compare", str(runs), "--metric", "val/loss", "--out", str(out)]) == 0
    table = (out / "compare.md").read_text()
    assert "| b | 2 | 0.2300 ± 0.0424 |" in table and "| a | 2 | 0.3200 ± 0.0283 |" in table
    assert "| b | 2 | 0.230 [-0.151, 0.611] |" in table  # 0.23 ± 12.706 x 0.0424 / sqrt 2
    assert "0 of 1 pairs resolved" in table and (out / "pairs.csv").exists()
    assert (out / "val_loss.png").stat().st_size > 0 and (out / "train_loss.png").exists()
    assert len((out / "runs.csv").read_text().splitlines()) == 5
    assert "| b | 2 |" in capsys.readouterr().out


def test_compare_refuses_unknown_metrics_and_empty_folders(runs, tmp_path, capsys):
    assert main(["compare", str(runs), "--metric", "val/los", "--out", str(tmp_path / "r")]) == 2
    assert "metrics ['val/los'] were not logged by any run; logged scalars: eval/overall, params/trainable, train/loss, val/loss" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err


@pytest.mark.slow
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
            "--trainer.callbacks=[kit.callbacks.RunSummary]",
        ]
    )
    run_dir = tmp_path / "fusion/lap/seed0"
    assert list((run_dir / "hparams").glob("events.out.tfevents.*")), "the HParams summary is written beside the run"
    rows, metrics = write_report(tmp_path / "fusion", tmp_path / "report")
    assert metrics == ["val/loss"] and rows[0]["variant"] == "lap" and rows[0]["params"] > 0 and rows[0]["val/loss final"] > 0


def test_eval_seeds_summarises_evaluation_files(tmp_path, capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("kit_benchmark_eval_seeds", REPO / "benchmarks" / "eval_seeds.py")
    eval_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_seeds)
    files = []
    for seed, (overall, dense) in enumerate(((0.4, 0.6), (0.5, 0.8))):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps({"overall": overall, "categories": {"dense": dense}, "dpg": {"score": 0.9}}))
        files.append(str(path))
    out = tmp_path / "summary.json"
    assert eval_seeds.main([*files, "--out", str(out), "--note", "two fake seeds"]) == 0
    summary = json.loads(out.read_text())
    assert summary["note"] == "two fake seeds" and summary["files"] == files
    assert summary["summary"]["overall"]["mean"] == pytest.approx(0.45)
    assert summary["summary"]["overall"]["ci95"] == pytest.approx(interval95([0.4, 0.5]))
    assert summary["summary"]["dpg"]["std"] == 0.0 and summary["summary"]["dense"]["values"] == [0.6, 0.8]
    assert "overall" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        eval_seeds.main([str(tmp_path / "missing.json")])


def test_a_single_seed_shows_no_spread_and_no_resolution(tmp_path):
    runs = [_scored("one", 0, 0.3), _scored("other", 0, 0.1)]
    rows = summarize(runs, ["eval/overall"])
    assert rows[0]["eval/overall final std"] is None and rows[0]["eval/overall final ci95"] is None
    assert "| one | 1 | 0.3000 | 0.3000 |" in markdown_table(rows, ["eval/overall"])
    matrix = pairwise_markdown(pairwise(runs, "eval/overall", ["one", "other"]), ["one", "other"])
    assert "| one |  | - |" in matrix and "0 of 0 pairs resolved" in matrix


def test_runs_without_scored_metrics_still_get_a_table(tmp_path):
    root = tmp_path / "runs"
    with SummaryWriter(str(root / "a" / "seed0")) as w:
        for step in range(0, 30, 10):
            w.add_scalar("train/loss", 1.0 / (step + 1), step)
    rows, metrics = write_report(root, tmp_path / "report")
    assert metrics == [] and rows[0]["variant"] == "a"
    assert "| a | 1 |" in (tmp_path / "report" / "compare.md").read_text()
