"""Training speed of recipe variants, one after another in one invocation, as ratios to the first.

    python benchmarks/fit_speed.py --variant shapes=recipes/lap.yaml \\
        --variant "litdata=recipes/lap.yaml::--data=kit.data.StreamingImageTextData --data.input_dir=/tmp/s/train --data.val_dir=/tmp/s/val" \\
        --steps 200 --out results/streaming.jsonl
    python benchmarks/fit_speed.py --variant "gpu=recipes/lap.yaml::--trainer.accelerator=gpu" --steps 300 --out results/gpu/fit_speed.jsonl

Each variant is `NAME=RECIPE[,RECIPE...][::OVERRIDES]` (as in `benchmarks/learning_curve.py`). Callbacks,
validation and checkpoints are off, so the figure is the training loop itself (data loading, encoder, head,
backbone, optimizer); the first `--warmup` steps are not timed. Prints steps/s, samples/s and the ratio to the
first variant; appends one JSON line per variant (command, commit, device) to `--out`.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def parse_variant(text: str) -> tuple[str, list[str], list[str]]:
    """`NAME=RECIPE[,RECIPE...][::OVERRIDES]` -> (name, recipes, overrides)."""
    name, _, rest = text.partition("=")
    recipes, _, overrides = rest.partition("::")
    if not name or not recipes:
        raise SystemExit(f"error: a variant is NAME=RECIPE[,RECIPE...][::OVERRIDES], got {text!r}")
    return name, recipes.split(","), shlex.split(overrides)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", action="append", required=True, help="NAME=RECIPE[,RECIPE...][::OVERRIDES] (repeatable)")
    p.add_argument("--steps", type=int, default=200, help="training steps per variant")
    p.add_argument("--warmup", type=int, default=20, help="steps not timed")
    p.add_argument("--out", default=str(ROOT / "results" / "fit_speed.jsonl"))
    args = p.parse_args(argv)
    from feature_cache import timed_fit

    from kit.analysis.provenance import append_record, command_line, commit

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.variant:
            name, recipes, overrides = parse_variant(text)
            result = timed_fit(recipes, args.steps, args.warmup, None, tmp, *overrides)
            rows.append({"variant": name, "recipes": recipes, "overrides": overrides, **result})
    base = rows[0]["samples_per_sec"]
    print(f"{'variant':16} {'steps/s':>8} {'samples/s':>10} {'ratio':>6}   ({device}, {args.steps} steps, {args.warmup} untimed)")
    for row in rows:
        row["ratio_to_first"] = round(row["samples_per_sec"] / base, 3)
        print(f"{row['variant']:16} {row['steps_per_sec']:8.3f} {row['samples_per_sec']:10.1f} {row['ratio_to_first']:6.3f}")
        append_record(args.out, {"command": command_line("benchmarks/fit_speed.py", argv), "commit": commit(), "device": device, **row})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
