"""Editing, measured: a text-to-image checkpoint, editing fine-tuning VLM-only and with the pixel baseline, both scored.

    python benchmarks/editing.py                          # -> results/edit_eval.json, results/editing/
    python benchmarks/editing.py --t2i-ckpt CKPT          # start from an existing text-to-image checkpoint
    python benchmarks/editing.py --seeds 0 1 2 --steps 1000 --transfer --budgets 24 48 96 --long-steps 4000 --long-baseline

For each seed: the text-to-image checkpoint (`recipes/lap.yaml`, the quickstart's recipe, unless
`--t2i-ckpt` is given), then `recipes/edit.yaml` from it (VLM-only, UniFusion's design) and the same
with `recipes/ablations/editing/source_pixels.yaml` (the source's pixels also on the DiT's input),
one after another with the whole machine, each timed; then `kit evaluate-edit` on both and on the
text-to-image checkpoint itself (what editing starts from: `t2i_seed<S>.json`). Resumable:
a fit whose last checkpoint reached its steps and an evaluation already written are not redone
(an interrupted fit is rerun whole). `results/edit_eval.json` holds the VLM-only figures of the
first seed (per kind, success, preservation, composition), the baseline's and the text-to-image
checkpoint's (`before_editing`) beside them, every seed's file, the means and 95 % intervals over
the seeds (`over_seeds`), the wall times, the commands and the commit.

`--transfer`: the edit -> text-to-image transfer. Per seed, a control from the same checkpoint
given the same number of further optimizer steps on text-to-image items only
(`recipes/ablations/editing/t2i_control.yaml`), then `kit evaluate` (`t2i_v1`, 4 images a prompt) on
the checkpoint before editing, on each VLM-only editing run and on each control: `transfer` holds
the three, and the per-seed differences edited - control with their mean and 95 % interval.

`--long-steps N`: the shipped recipe's length (`recipes/edit.yaml`: 4,000). A VLM-only run of N steps
from the first seed's checkpoint, run first, every checkpoint it keeps (each 1,000 steps) scored: a
learning curve (`long.curve`); its final figures become the summary's headline (`kinds`, `success`,
`preservation`, `composition`), the study's seed-0 figures then sit in `study`. `--long-baseline`
adds the pixel baseline at N steps (run last).

`--budgets SIDE ...`: the VLM's image budget (`processor_kwargs` min = max pixels = SIDE^2; the shapes
VLM reads 12-px patches merged 2x2, so SIDE 24, 48, 72, 96 give 1, 4, 9, 16 tokens an image; 72 is
the default) against preservation: a VLM-only editing run of the first seed per budget, scored
(`image_budget`: tokens per image -> success, preservation).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kit.analysis.compare import interval95  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"vlm_only": [], "source_pixels": ["-c", "recipes/ablations/editing/source_pixels.yaml"]}
T2I_STEPS = 2600  # recipes/lap.yaml's max_steps: the quickstart checkpoint


def kit(args: list[str], log: Path) -> float:
    """`python -m kit ARGS` in the repository, its output appended to `log`; wall seconds. A failure stops the benchmark."""
    started = time.perf_counter()
    with log.open("a") as f:
        f.write(f"\n$ python -m kit {' '.join(args)}\n")
        f.flush()
        code = subprocess.run([sys.executable, "-m", "kit", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"editing: `python -m kit {' '.join(args)}` failed with exit {code}; see {log}")
    return time.perf_counter() - started


def finished(ckpt: Path, steps: int) -> bool:
    """Whether `ckpt` exists and holds exactly `steps` optimizer steps."""
    if not ckpt.is_file():
        return False
    return int(torch.load(ckpt, map_location="cpu", weights_only=True).get("global_step", -1)) == steps


def fit(recipes: list[str], name: str, save_dir: Path, seed: int, steps: int, extra: list[str], log: Path, times: dict) -> Path:
    """Train (unless done) into `save_dir/name/version_0`; the last checkpoint."""
    ckpt = save_dir / name / "version_0" / "checkpoints" / "last.ckpt"
    if finished(ckpt, steps):
        return ckpt
    version = save_dir / name / "version_0"
    if version.exists():  # an interrupted run: redone whole, in the same folder
        subprocess.run(["rm", "-rf", str(version)], check=True)
    args = ["fit", *recipes, f"--seed_everything={seed}", f"--trainer.max_steps={steps}", f"--trainer.logger.init_args.save_dir={save_dir}"]
    args += [f"--trainer.logger.init_args.name={name}", "--trainer.logger.init_args.version=version_0", *extra]
    times[name] = round(kit(args, log), 1)
    return ckpt


def evaluate_edit(ckpt: Path, scored: Path, args, log: Path) -> dict:
    """`kit evaluate-edit` of `ckpt` into `scored` (unless written); its figures."""
    if not scored.exists():
        smoke = ["--steps", "2"] if args.smoke else []
        kit(
            ["evaluate-edit", "--ckpt", str(ckpt), "--per-kind", str(args.per_kind), "--compositions", str(args.compositions), "--out", str(scored), *smoke],
            log,
        )
    return json.loads(scored.read_text())


def evaluate_t2i(ckpt: Path, scored: Path, args, log: Path) -> float:
    """`kit evaluate` (`t2i_v1`) of `ckpt` into `scored` (unless written); its overall score."""
    if not scored.exists():
        sizes = ["--per-category", "1", "--steps", "2"] if args.smoke else ["--images-per-prompt", "4"]
        kit(["evaluate", "--ckpt", str(ckpt), *sizes, "--out", str(scored)], log)
    return float(json.loads(scored.read_text())["overall"])


def over_seeds(values: list[float]) -> dict:
    """Mean, 95 % Student-t half-width (None for one value) and the values."""
    return {"mean": sum(values) / len(values), "ci95": interval95(values), "values": values}


def long_run(variant: str, t2i: Path, seed: int, args, runs: Path, out: Path, log: Path, times: dict) -> dict:
    """A `variant` run of `--long-steps` steps, every kept checkpoint scored: `{steps, final, curve, fit_seconds}`."""
    name = f"{variant}_long{args.long_steps}_seed{seed}"
    folder = runs / name / "version_0" / "checkpoints"
    if not finished(folder / "last.ckpt", args.long_steps):
        for old in out.glob(f"{name}_step*.json"):
            old.unlink()  # scores of an older fit
    smoke = (
        [
            "-c",
            "recipes/smoke.yaml",
            "--trainer.callbacks=[{class_path: kit.callbacks.FinalCheckpoint, init_args: {save_last: true, every_n_train_steps: 2, save_top_k: -1}}]",
        ]
        if args.smoke
        else []
    )
    fit(
        ["-c", "recipes/lap.yaml", "-c", "recipes/edit.yaml", *VARIANTS[variant], *smoke],
        name,
        runs,
        seed,
        args.long_steps,
        [f"--model.init_args.init_from={t2i}"],
        log,
        times,
    )
    curve = []
    for ckpt in sorted(folder.glob("*.ckpt")):
        if ckpt.name == "last.ckpt":
            continue
        step = int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])
        result = evaluate_edit(ckpt, out / f"{name}_step{step}.json", args, log)
        curve.append({"step": step, "success": result["success"], "preservation": result["preservation"], "compose2": result["composition"]["compose2"]})
    curve.sort(key=lambda point: point["step"])
    final = json.loads((out / f"{name}_step{args.long_steps}.json").read_text())
    return {
        "steps": args.long_steps,
        "final": final,
        "curve": curve,
        "fit_seconds": times.get(name),
        "file": str(Path(args.out) / f"{name}_step{args.long_steps}.json"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--t2i-ckpt", default=None, help="start every seed from this text-to-image checkpoint (else train recipes/lap.yaml)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=1000, help="editing fine-tuning steps")
    p.add_argument("--per-kind", type=int, default=20)
    p.add_argument("--compositions", type=int, default=20)
    p.add_argument("--transfer", action="store_true", help="also the edit -> text-to-image transfer against a text-to-image control")
    p.add_argument("--budgets", type=int, nargs="*", default=[], help="image-budget sides (pixels) for the tokens-per-image curve")
    p.add_argument("--long-steps", type=int, default=0, help="also a VLM-only run of this many steps (the shipped recipe's), scored at each checkpoint")
    p.add_argument("--long-baseline", action="store_true", help="with --long-steps: the pixel baseline at that length too")
    p.add_argument("--runs", default="runs/editing_bench")
    p.add_argument("--out", default="results/editing")
    p.add_argument("--smoke", action="store_true", help="tiny models and a few steps (the tests' check of this script)")
    args = p.parse_args(argv)
    runs, out = ROOT / args.runs, ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    times_file = out / "times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    smoke = ["-c", "recipes/smoke.yaml"] if args.smoke else []
    lap, edit = ["-c", "recipes/lap.yaml"], ["-c", "recipes/edit.yaml"]
    t2i_steps = 3 if args.smoke else T2I_STEPS
    scores: dict[str, dict] = {}
    transfer: dict[str, dict] = {"edited": {}, "control": {}}
    starts = {}
    long: dict[str, dict] = {}
    if args.long_steps:  # the shipped recipe's run first: the headline
        first_start = (
            Path(args.t2i_ckpt).resolve() if args.t2i_ckpt else fit([*lap, *smoke], f"t2i_seed{args.seeds[0]}", runs, args.seeds[0], t2i_steps, [], log, times)
        )
        long["vlm_only"] = long_run("vlm_only", first_start, args.seeds[0], args, runs, out, log, times)
        times_file.write_text(json.dumps(times, indent=2) + "\n")
    for seed in args.seeds:
        t2i = Path(args.t2i_ckpt).resolve() if args.t2i_ckpt else fit([*lap, *smoke], f"t2i_seed{seed}", runs, seed, t2i_steps, [], log, times)
        starts[seed] = t2i
        shared = next((s for s in starts if starts[s] == t2i and s != seed), None)  # --t2i-ckpt: one checkpoint for every seed, scored once
        scores[f"t2i_seed{seed}"] = scores[f"t2i_seed{shared}"] if shared is not None else evaluate_edit(t2i, out / f"t2i_seed{seed}.json", args, log)
        for variant, overlay in VARIANTS.items():
            name = f"{variant}_seed{seed}"
            scored = out / f"{name}.json"
            ckpt = runs / name / "version_0" / "checkpoints" / "last.ckpt"
            if not finished(ckpt, args.steps):
                scored.unlink(missing_ok=True)  # scores of an older fit
                (out / f"{name}_t2i.json").unlink(missing_ok=True)
            ckpt = fit([*lap, *edit, *overlay, *smoke], name, runs, seed, args.steps, [f"--model.init_args.init_from={t2i}"], log, times)
            times_file.write_text(json.dumps(times, indent=2) + "\n")
            scores[name] = evaluate_edit(ckpt, scored, args, log)
            if args.transfer and variant == "vlm_only":
                transfer["edited"][str(seed)] = evaluate_t2i(ckpt, out / f"{name}_t2i.json", args, log)
        if args.transfer:
            name = f"t2i_control_seed{seed}"
            if not finished(runs / name / "version_0" / "checkpoints" / "last.ckpt", args.steps):
                (out / f"{name}_t2i.json").unlink(missing_ok=True)
            control = ["-c", "recipes/ablations/editing/t2i_control.yaml"]
            ckpt = fit([*lap, *control, *smoke], name, runs, seed, args.steps, [f"--model.init_args.init_from={t2i}"], log, times)
            times_file.write_text(json.dumps(times, indent=2) + "\n")
            transfer["control"][str(seed)] = evaluate_t2i(ckpt, out / f"{name}_t2i.json", args, log)
    first = args.seeds[0]
    budgets = []
    for side in args.budgets:
        name = f"vlm_only_px{side}_seed{first}"
        scored = out / f"{name}.json"
        ckpt = runs / name / "version_0" / "checkpoints" / "last.ckpt"
        if not finished(ckpt, args.steps):
            scored.unlink(missing_ok=True)
        budget = [f"--model.init_args.encoder.init_args.processor_kwargs={json.dumps({'min_pixels': side * side, 'max_pixels': side * side})}"]
        ckpt = fit([*lap, *edit, *smoke], name, runs, first, args.steps, [f"--model.init_args.init_from={starts[first]}", *budget], log, times)
        times_file.write_text(json.dumps(times, indent=2) + "\n")
        result = evaluate_edit(ckpt, scored, args, log)
        tokens = (side // 12 // 2) ** 2  # 12-px patches, 2x2 merged into one LLM token
        budgets.append(
            {
                "side": side,
                "tokens_per_image": tokens,
                "success": result["success"],
                "preservation": result["preservation"],
                "file": str(Path(args.out) / scored.name),
            }
        )
    if args.long_steps and args.long_baseline:
        long["source_pixels"] = long_run("source_pixels", starts[first], first, args, runs, out, log, times)
        times_file.write_text(json.dumps(times, indent=2) + "\n")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    shipped, baseline, before = scores[f"vlm_only_seed{first}"], scores[f"source_pixels_seed{first}"], scores[f"t2i_seed{first}"]
    figures = ("success", "preservation")
    summary = {
        "recipe": "recipes/lap.yaml + recipes/edit.yaml",
        "kinds": shipped["kinds"],
        "success": shipped["success"],
        "preservation": shipped["preservation"],
        "composition": shipped.get("composition"),
        "baseline_source_pixels": {k: baseline[k] for k in ("success", "preservation", "composition", "kinds") if k in baseline},
        "before_editing": {k: before[k] for k in ("success", "preservation", "composition", "kinds") if k in before},
        "over_seeds": {
            variant: {
                **{f: over_seeds([scores[f"{variant}_seed{s}"][f] for s in args.seeds]) for f in figures},
                "compose2": over_seeds([scores[f"{variant}_seed{s}"]["composition"]["compose2"] for s in args.seeds]),
            }
            for variant in VARIANTS
        },
        "t2i_checkpoint": args.t2i_ckpt or f"recipes/lap.yaml, seed {first}, {t2i_steps} steps (trained by this script)",
        "transfer": None,
        "transfer_note": "not measured: run with --transfer",
        "image_budget": budgets or None,
        "seeds": {
            str(s): {v: str(Path(args.out) / f"{v}_seed{s}.json") for v in ["t2i", *VARIANTS] if (out / f"{v}_seed{s}.json").exists()} for s in args.seeds
        },
        "fit_seconds": times,
        "edit_steps": args.steps,
        "command": "python benchmarks/editing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
    }
    if args.transfer:
        before_t2i: dict[str, float] = {}
        for s in args.seeds:  # each distinct starting checkpoint scored once
            shared = next((str(o) for o in args.seeds if starts[o] == starts[s] and str(o) in before_t2i), None)
            before_t2i[str(s)] = before_t2i[shared] if shared else evaluate_t2i(starts[s], out / f"t2i_seed{s}_t2i.json", args, log)
        gains = [transfer["edited"][str(s)] - transfer["control"][str(s)] for s in args.seeds]
        summary["transfer"] = {
            "suite": "t2i_v1, 4 images a prompt, overall",
            "before": before_t2i,
            "edited": transfer["edited"],
            "control": transfer["control"],
            "edited_minus_control": over_seeds(gains),
            "control_recipe": "recipes/lap.yaml + recipes/ablations/editing/t2i_control.yaml (same steps and schedule, text-to-image items only)",
        }
        summary["transfer_note"] = "per seed: the editing run and its control start from the same checkpoint and train the same steps"
    if long:
        headline = long["vlm_only"]["final"]
        summary["study"] = {k: summary[k] for k in ("kinds", "success", "preservation", "composition")}
        summary["study"]["edit_steps"] = args.steps
        summary.update({k: headline[k] for k in ("kinds", "success", "preservation", "composition")})
        summary["recipe"] = f"recipes/lap.yaml + recipes/edit.yaml ({args.long_steps} steps, seed {first})"
        summary["long"] = long
        if "source_pixels" in long:
            baseline_long = long["source_pixels"]["final"]
            summary["baseline_source_pixels"] = {k: baseline_long[k] for k in ("success", "preservation", "composition", "kinds")}
            summary["study"]["baseline_source_pixels"] = {k: baseline[k] for k in ("success", "preservation", "composition", "kinds") if k in baseline}
        else:
            summary["baseline_source_pixels_note"] = f"the pixel baseline at {args.steps} steps (not run at {args.long_steps}: --long-baseline)"
    (out / "edit_eval.json" if args.smoke else ROOT / "results" / "edit_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    pixels = summary["baseline_source_pixels"]
    print(
        f"vlm_only: success {summary['success']:.3f}, preservation {summary['preservation']:.3f}; "
        f"source_pixels: success {pixels['success']:.3f}, preservation {pixels['preservation']:.3f} -> results/edit_eval.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
