"""Seeds of one recipe, summarised: mean, std and 95 % interval of every score in their `kit evaluate` files.

    python benchmarks/eval_seeds.py results/captions_partial/seed*_eval.json --out results/quickstart_seeds.json \
        --note "recipes/lap.yaml at commit ..., seeds 0 1 2, each: kit fit then kit evaluate --images-per-prompt 4"

Each input is one training seed's evaluation (`python -m kit evaluate ... --out FILE`); the summary holds the
per-seed figures (overall, each category, DPG facts), their mean, sample std and the half-width of the 95 %
Student-t interval of the mean (`kit.analysis.compare.interval95`), and prints them as a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.analysis.compare import interval95  # noqa: E402


def scores(evaluation: dict) -> dict[str, float]:
    """One evaluation file's figures: overall, every category, DPG facts."""
    out = {"overall": evaluation["overall"], **evaluation["categories"]}
    if evaluation.get("dpg", {}).get("score") is not None:
        out["dpg"] = evaluation["dpg"]["score"]
    return out


def summarize(paths: list[Path]) -> dict:
    """Per-seed figures of each file and, per figure, mean / std / ci95 over the files."""
    runs = {str(p): scores(json.loads(p.read_text())) for p in paths}
    names = list(next(iter(runs.values())))
    summary = {}
    for name in names:
        values = [r[name] for r in runs.values() if name in r]
        summary[name] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "ci95": interval95(values),
            "values": values,
        }
    return {"files": list(runs), "summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="kit evaluate output files, one per training seed")
    p.add_argument("--out", type=Path, default=None, help="write the summary here (JSON)")
    p.add_argument("--note", default="", help="how the runs were made (command, commit, seeds), kept in the file")
    args = p.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        p.error(f"no evaluation file {', '.join(missing)}")
    result = summarize(args.files)
    result["note"] = args.note
    print(f"{'score':<20} {'mean':>7} {'std':>7} {'95% interval':>17}  per file")
    for name, s in result["summary"].items():
        interval = f"[{s['mean'] - s['ci95']:.3f}, {s['mean'] + s['ci95']:.3f}]" if s["ci95"] is not None else "-"
        print(f"{name:<20} {s['mean']:7.3f} {s['std']:7.3f} {interval:>17}  {' '.join(f'{v:.3f}' for v in s['values'])}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
