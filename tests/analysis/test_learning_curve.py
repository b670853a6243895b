"""The learning-curve benchmark: smoke mode end to end, resumption, and the summary it prints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kit.analysis.learning_curve import read_rows, summarise, table
from kit.world.suites import CATEGORIES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_learning_curve_smoke_writes_rows_table_and_plot_and_resumes(tmp_path):
    cmd = [sys.executable, "benchmarks/learning_curve.py", "--name", "smoke", "--smoke", "--steps", "4", "--every", "2", "--per-category", "1"]
    cmd += ["--variant", "a=recipes/lap.yaml", "--variant", "b=recipes/lap.yaml::--model.init_args.guidance_scale=1.0", "--seeds", "0", "1"]
    cmd += ["--results", str(tmp_path), "--logdir", str(tmp_path / "runs")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_rows(tmp_path / "smoke" / "rows.jsonl")
    assert sorted({(r["variant"], r["seed"], r["step"]) for r in rows}) == [(v, s, k) for v in "ab" for s in (0, 1) for k in (2, 4)]
    for r in rows:
        assert r["samples"] == r["step"] * 4 and r["train_seconds"] > 0
        categories = [r[c] for c in CATEGORIES]
        assert r["overall"] == pytest.approx(sum(categories) / len(categories)), "overall is the mean over categories"
        assert r["commit"] and r["recipes"] == ["recipes/lap.yaml"]
    assert rows[-1]["overrides"] == ["--model.init_args.guidance_scale=1.0"]
    assert (tmp_path / "smoke" / "curves.png").stat().st_size > 1000
    assert "| a | 4 | 2 |" in (tmp_path / "smoke" / "table.md").read_text()
    assert json.loads((tmp_path / "smoke" / "meta.json").read_text())["command"].startswith("python benchmarks/learning_curve.py")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("done already, skipped") == 4
    assert len(read_rows(tmp_path / "smoke" / "rows.jsonl")) == len(rows)


def test_summary_means_over_seeds_with_a_range():
    rows = [{"variant": "v", "seed": s, "step": 10, "train_seconds": 5.0 + s, "samples": 40, "overall": o, "dpg": None} for s, o in ((0, 0.2), (1, 0.4))]
    (row,) = summarise(rows)
    assert row["seeds"] == 2 and abs(row["overall"] - 0.3) < 1e-9 and row["overall_range"] == (0.2, 0.4) and row["dpg"] is None
    assert "0.300 (0.20-0.40)" in table([row])


@pytest.mark.slow
def test_a_missing_recipe_is_refused_before_any_run(tmp_path):
    cmd = [sys.executable, "benchmarks/learning_curve.py", "--name", "x", "--variant", "a=recipes/nope.yaml", "--results", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no such recipe recipes/nope.yaml" in done.stderr
    assert not (tmp_path / "x").exists()
