"""`python -m kit compare runs/fusion [--metric NAME ...] --out report`: a table and plots of runs from their event files."""

from __future__ import annotations

import sys

from jsonargparse import ArgumentParser

from kit.analysis.compare import markdown_table, write_report
from kit.verbs.parsing import VerbParser

HELP = "table and plots of runs (variants x seeds) from their event files: RUNS_DIR [--metric NAME ...] --out report"


def parser() -> ArgumentParser:
    p = VerbParser(prog="python -m kit compare", description="Compare runs (variants x seeds) from their TensorBoard event files.")
    p.add_argument("root", type=str, help="folder of runs: ROOT/<variant>/<seed>/events.out.tfevents.*")
    p.add_argument("--metric", type=str, nargs="+", default=None, help="metrics to compare (the first sorts the table); default: every val/ and eval/ scalar")
    p.add_argument("--out", type=str, default="report", help="folder for compare.md, compare.csv, runs.csv and the PNG plots")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        rows, metrics = write_report(args.root, args.out, args.metric)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown_table(rows, metrics))
    print(f"-> {args.out}/compare.md, compare.csv, runs.csv and {len(metrics)} plots")
    return 0
