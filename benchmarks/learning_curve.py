"""Learning curves of one or more recipes, trained one after another in one invocation, scored by the oracle.

    python benchmarks/learning_curve.py --name levers_x0 \\
        --variant velocity=recipes/lap.yaml \\
        --variant x0=recipes/lap.yaml,recipes/levers/x0.yaml \\
        --seeds 0 1 --steps 1200 --every 300 --per-category 20

Each variant is a comma-separated list of recipe files composed left to right, optionally
followed by `::` and command-line overrides separated by spaces
(`x0=recipes/lap.yaml::--model.init_args.guidance_scale=3`). Every (variant, seed) run has
the whole machine to itself (runs are sequential), validation, checkpoints and the recipe's
own callbacks are off, and the `LearningCurve` callback scores it every `--every` steps on
the first `--per-category` prompts of each `t2i_v1` category, with the training clock
paused while it does. Rows go to `results/learning_curves/<name>/rows.jsonl` (with the
command, the commit and the seed); a finished (variant, seed) is skipped when the command
is run again, so an interrupted study resumes. At the end it prints a table (mean over
seeds, min-max of `overall` in brackets), writes it to `table.md` and plots `curves.png`
(score against samples seen and against training seconds).

`--smoke` shrinks every run to a few steps of a tiny model (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.analysis.learning_curve import LearningCurve, plot, read_rows, summarise, table  # noqa: E402
from kit.analysis.provenance import commit  # noqa: E402


def parse_variant(text: str) -> tuple[str, list[str], list[str]]:
    """'name=a.yaml,b.yaml::--x=1 --y=2' -> (name, [a.yaml, b.yaml], [--x=1, --y=2])."""
    if "=" not in text.split("::")[0]:
        raise SystemExit(f"error: --variant {text!r}: expected NAME=RECIPE[,RECIPE...][::OVERRIDES]")
    name, rest = text.split("=", 1)
    files, _, overrides = rest.partition("::")
    configs = [c for c in files.split(",") if c]
    missing = [c for c in configs if not (ROOT / c).is_file() and not Path(c).is_file()]
    if missing:
        raise SystemExit(f"error: --variant {name}: no such recipe {', '.join(missing)}")
    return name, configs, shlex.split(overrides)


SMOKE = str(ROOT / "recipes" / "smoke.yaml")  # composed after the variant's recipes: a tiny model, few steps


def run_one(name: str, configs: list[str], overrides: list[str], seed: int, args, out: Path) -> None:
    from kit.cli import run_cli

    configs_used = configs + ([SMOKE] if args.smoke else [])
    cli_args = [a for c in configs_used for a in ("-c", c)] + [f"--seed_everything={seed}", f"--trainer.max_steps={args.steps}"]
    cli_args += ["--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0"]
    cli_args += [
        f"--trainer.logger.init_args.save_dir={args.logdir}",
        f"--trainer.logger.init_args.name={args.name}/{name}",
        f"--trainer.logger.init_args.version=seed{seed}",
    ]
    cli_args += overrides
    cli = run_cli(cli_args, run=False)
    tags = {"variant": name, "seed": seed, "recipes": configs, "overrides": overrides, "commit": args.commit, "threads": torch.get_num_threads()}
    curve = LearningCurve(out, args.every, args.per_category, args.images_per_prompt, tags, num_steps=args.sample_steps)
    cli.trainer.callbacks.append(curve)
    started = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    last = curve.rows[-1] if curve.rows else {}
    print(f"[{name} seed {seed}] {time.perf_counter() - started:.0f} s wall, {last.get('train_seconds')} s training, overall {last.get('overall')}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="study name: results/learning_curves/<name>/")
    p.add_argument("--variant", action="append", required=True, help="NAME=RECIPE[,RECIPE...][::OVERRIDES] (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per variant")
    p.add_argument("--steps", type=int, default=1200, help="training steps per run")
    p.add_argument("--every", type=int, default=300, help="steps between evaluations")
    p.add_argument("--per-category", type=int, default=20, help="suite prompts per category at each evaluation")
    p.add_argument("--images-per-prompt", type=int, default=1, help="images per prompt at each evaluation")
    p.add_argument("--sample-steps", type=int, default=None, help="sampler steps at evaluation (the recipe's when omitted)")
    p.add_argument("--results", default=str(ROOT / "results" / "learning_curves"), help="results root")
    p.add_argument("--logdir", default="runs/learning_curves", help="TensorBoard root of the runs")
    p.add_argument("--smoke", action="store_true", help="a few steps of a tiny model per run (tests)")
    args = p.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    args.commit = commit()
    out_dir = Path(args.results) / args.name
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / "rows.jsonl"
    meta = {"command": " ".join(["python", "benchmarks/learning_curve.py", *map(shlex.quote, argv if argv is not None else sys.argv[1:])])}
    meta.update(commit=args.commit, machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(), torch=torch.__version__)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for name, configs, overrides in variants:
        for seed in args.seeds:
            done = [r for r in read_rows(rows_path) if r["variant"] == name and r["seed"] == seed]
            if any(r["step"] >= args.steps for r in done):
                print(f"[{name} seed {seed}] done already, skipped")
                continue
            if done:  # an interrupted run: drop its partial rows, run it again whole
                keep = [r for r in read_rows(rows_path) if not (r["variant"] == name and r["seed"] == seed)]
                rows_path.write_text("".join(json.dumps(r) + "\n" for r in keep))
            run_one(name, configs, overrides, seed, args, rows_path)
    wanted = {v[0] for v in variants}
    summary = summarise([r for r in read_rows(rows_path) if r["variant"] in wanted])
    text = table(summary)
    (out_dir / "table.md").write_text(f"`{meta['command']}` at {args.commit}\n\n{text}\n")
    plot(summary, out_dir / "curves.png")
    print(text)
    print(f"-> {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
