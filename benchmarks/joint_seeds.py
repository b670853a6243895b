"""The joint model's figures over training seeds, scored on held-out scenes, with its text-to-image reference.

    python benchmarks/joint_seeds.py                                   # seeds 0 1 2 + the reference -> results/joint_eval.json
    python benchmarks/joint_seeds.py --seeds 0 --overlay recipes/joint/levers/i2t_only.yaml --name i2t_only --no-reference \
        --out results/joint_screens/i2t_only.json                      # a screen: one overlay, one seed

One step after another, each with the whole CPU, resumable (a finished fit or evaluation is skipped):

1. for each seed, `python -m kit fit -c recipes/unidiffuser.yaml [-c overlay ...] --seed_everything=S` into
   `runs/joint_seeds/<name>/seed<S>` (its wall seconds in `done` beside it), then `python -m kit evaluate --task joint`
   into `results/joint_seeds/<name>/seed<S>_eval.json`;
2. the reference (unless `--no-reference`): the text-to-image default, `recipes/lap.yaml` with seed 0, trained for the
   joint fits' mean wall-clock (its steps: that time at the text-to-image fit's measured speed, from
   `results/quickstart_eval.json`; the cosine schedule stretched to them), evaluated with the same suite settings;
3. the summary `--out`: the means over seeds of `i2t_exact`, `joint_consistency`, `t2i_overall` (CFG for free) at
   the top level, `t2i_reference`, every seed's values with a 95 % t-interval, CFG for free against no guidance
   (and against a learned null when the fits trained one), the marginals, `anchors` (what trivial captioners
   score on the same scenes), `fit_seconds`, `seeds`, `held_out`, `command` and `commit`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.analysis.provenance import command_line, commit  # noqa: E402

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 95 % t quantiles by degrees of freedom


def interval(values: list[float]) -> dict:
    """Mean, standard deviation and the half-width of a 95 % t-interval over seeds (none for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "values": values}
    std = statistics.stdev(values)
    return {"mean": mean, "std": std, "ci95": T95.get(len(values) - 1, 2.0) * std / math.sqrt(len(values)), "values": values}


def run(command: list[str], log: Path) -> float:
    """Run a command (output to `log`); its wall seconds. A failure stops the benchmark."""
    print("==", " ".join(command), flush=True)
    started = time.perf_counter()
    with log.open("a") as f:
        code = subprocess.run(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"joint_seeds: {' '.join(command)} failed with exit {code}; see {log}")
    return time.perf_counter() - started


def fit(folder: Path, recipe: list[str], seed: int, python: str) -> float:
    """Fit into `folder` (skipped when done); the fit's wall seconds."""
    done = folder / "done"
    if done.exists() and (folder / "version_0/checkpoints/last.ckpt").exists():
        return float(done.read_text())
    folder.parent.mkdir(parents=True, exist_ok=True)
    logger = [
        f"--trainer.logger.init_args.save_dir={folder.parent}",
        f"--trainer.logger.init_args.name={folder.name}",
        "--trainer.logger.init_args.version=version_0",
    ]
    seconds = run([python, "-m", "kit", "fit", *recipe, f"--seed_everything={seed}", *logger], folder.parent / f"{folder.name}.log")
    done.write_text(f"{seconds:.1f}")
    return seconds


def evaluate(folder: Path, out: Path, task: str, eval_args: list[str], python: str) -> dict:
    """`kit evaluate` of the fit in `folder` into `out` (skipped when `out` is of that checkpoint)."""
    ckpt = folder / "version_0/checkpoints/last.ckpt"
    if out.exists() and json.loads(out.read_text()).get("checkpoint") == str(ckpt):
        return json.loads(out.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [python, "-m", "kit", "evaluate", "--task", task, "--ckpt", str(ckpt), "--out", str(out), *eval_args]
    run(command, out.with_suffix(".log"))
    result = {"command": " ".join(command), "commit": commit(), "training_seed_folder": str(folder)} | json.loads(out.read_text())
    out.write_text(json.dumps(result, indent=2) + "\n")  # every results file carries its command and commit
    return result


def summarize(evals: dict[int, dict], fit_seconds: dict[int, float], reference: dict | None, provenance: dict) -> dict:
    """The summary written to `--out` (see the module docstring)."""
    seeds = sorted(evals)

    def over(get) -> dict:
        return interval([get(evals[s]) for s in seeds])

    first = evals[seeds[0]]
    anchors = {
        name: {"i2t_exact": a["i2t"]["exact"], "joint_consistency": a["joint"]["exact"], "i2t": a["i2t"], "joint": a["joint"]}
        for name, a in first["anchors"].items()
    }
    cfg = {variant: over(lambda e, v=variant: e["cfg"][v]) for variant in first["cfg"] if variant != "scale"}
    return {
        **provenance,
        "seeds": seeds,
        "held_out": all(evals[s]["held_out"] for s in seeds),
        "i2t_exact": over(lambda e: e["i2t_exact"])["mean"],
        "joint_consistency": over(lambda e: e["joint_consistency"])["mean"],
        "t2i_overall": over(lambda e: e["t2i_overall"])["mean"],
        "t2i_reference": None if reference is None else reference["overall"],
        "fit_seconds": statistics.fmean(fit_seconds.values()),
        "anchors": anchors,
        "per_seed": {
            "i2t_exact": over(lambda e: e["i2t_exact"]),
            "i2t_faithful": over(lambda e: e["i2t"]["faithful"]),
            "i2t_parsed": over(lambda e: e["i2t"]["parsed"]),
            "joint_consistency": over(lambda e: e["joint_consistency"]),
            "joint_faithful": over(lambda e: e["joint"]["faithful"]),
            "t2i_overall": over(lambda e: e["t2i_overall"]),
            "marginal_distinct_scenes": over(lambda e: e["marginals"]["distinct_scenes"]),
            "marginal_distinct_captions": over(lambda e: e["marginals"]["distinct_captions"]),
            "marginal_captions_parsed": over(lambda e: e["marginals"]["captions_parsed"]),
            "decoder_exact": over(lambda e: e["decoder_exact"]),
            "fit_seconds": interval([fit_seconds[s] for s in seeds]),
        },
        "cfg": cfg | {"scale": first["cfg"]["scale"]},
        "reference": None if reference is None else {k: reference[k] for k in ("checkpoint", "overall", "steps_trained", "fit_seconds") if k in reference},
        "scale": {"num_scenes": first["num_scenes"], "images_per_prompt": first["images_per_prompt"], "sampler_steps": first["steps"]},
        "examples": {"i2t": first["i2t"]["examples"], "joint": first["joint"]["examples"], "marginal": first["marginals"]["examples"]},
        "files": {str(s): evals[s]["file"] for s in seeds},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--overlay", nargs="*", default=[], help="recipe overlays on recipes/unidiffuser.yaml")
    parser.add_argument("--name", default="default", help="the variant's folder under runs/joint_seeds and results/joint_seeds")
    parser.add_argument("--eval-args", default="--per-category 8", help="extra arguments of both evaluations")
    parser.add_argument("--no-reference", action="store_true", help="skip the text-to-image reference")
    parser.add_argument("--out", default="results/joint_eval.json")
    parser.add_argument("--python", default=str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable)
    args = parser.parse_args(argv)
    eval_args = args.eval_args.split()
    recipe = ["-c", "recipes/unidiffuser.yaml", *[x for o in args.overlay for x in ("-c", o)]]
    provenance = {"command": command_line("benchmarks/joint_seeds.py", argv), "commit": commit()}
    runs, results = ROOT / "runs/joint_seeds" / args.name, ROOT / "results/joint_seeds" / args.name
    evals, seconds = {}, {}
    for seed in args.seeds:
        folder = runs / f"seed{seed}"
        seconds[seed] = fit(folder, recipe, seed, args.python)
        out = results / f"seed{seed}_eval.json"
        evals[seed] = evaluate(folder, out, "joint", eval_args, args.python) | {"file": str(out.relative_to(ROOT))}
    reference = None
    if not args.no_reference:
        measured = json.loads((ROOT / "results/quickstart_eval.json").read_text())["measured"]
        steps = round(statistics.fmean(seconds.values()) * measured["steps_per_fit_second"])
        folder = ROOT / "runs/joint_seeds/t2i_reference"
        fit_s = fit(folder, ["-c", "recipes/lap.yaml", f"--trainer.max_steps={steps}"], 0, args.python)
        reference = evaluate(folder, ROOT / "results/joint_seeds/t2i_reference_eval.json", "t2i", eval_args, args.python)
        reference |= {"steps_trained": steps, "fit_seconds": fit_s}
    summary = summarize(evals, seconds, reference, provenance)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("i2t_exact", "joint_consistency", "t2i_overall", "t2i_reference", "fit_seconds")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
