"""Editing, measured: a text-to-image checkpoint, editing fine-tuning VLM-only and with the pixel baseline, both scored.

    python benchmarks/editing.py                          # -> results/edit_eval.json, results/editing/
    python benchmarks/editing.py --t2i-ckpt CKPT          # start from an existing text-to-image checkpoint
    python benchmarks/editing.py --seeds 0 1 --steps 1000

For each seed: the text-to-image checkpoint (`recipes/lap.yaml`, the quickstart's recipe, unless
`--t2i-ckpt` is given), then `recipes/edit.yaml` from it (VLM-only, UniFusion's design) and the same
with `recipes/ablations/editing/source_pixels.yaml` (the source's pixels also on the DiT's input),
one after another with the whole machine, each timed; then `kit evaluate-edit` on both and on the
text-to-image checkpoint itself (what editing starts from: `t2i_seed<S>.json`). Resumable:
a fit whose last checkpoint reached its steps and an evaluation already written are not redone
(an interrupted fit is rerun whole). `results/edit_eval.json` holds the VLM-only figures of the
first seed (per kind, success, preservation, composition), the baseline's and the text-to-image
checkpoint's (`before_editing`) beside them, every
seed's file, the wall times, the commands and the commit. The edit -> text-to-image transfer
(`t2i_v1` before and after editing, against a control given the same further text-to-image steps)
is not run here: it is recorded as not measured.
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--t2i-ckpt", default=None, help="start every seed from this text-to-image checkpoint (else train recipes/lap.yaml)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=1000, help="editing fine-tuning steps")
    p.add_argument("--per-kind", type=int, default=20)
    p.add_argument("--compositions", type=int, default=20)
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
    for seed in args.seeds:
        t2i = Path(args.t2i_ckpt).resolve() if args.t2i_ckpt else fit([*lap, *smoke], f"t2i_seed{seed}", runs, seed, t2i_steps, [], log, times)
        before = out / f"t2i_seed{seed}.json"  # the starting point, scored as an editor
        if not before.exists():
            kit(["evaluate-edit", "--ckpt", str(t2i), "--per-kind", str(args.per_kind), "--compositions", str(args.compositions), "--out", str(before)] + (["--steps", "2"] if args.smoke else []), log)
        for variant, overlay in VARIANTS.items():
            name = f"{variant}_seed{seed}"
            scored = out / f"{name}.json"
            if not finished(runs / name / "version_0" / "checkpoints" / "last.ckpt", args.steps):
                scored.unlink(missing_ok=True)  # scores of an older fit
            ckpt = fit([*lap, *edit, *overlay, *smoke], name, runs, seed, args.steps, [f"--model.init_args.init_from={t2i}"], log, times)
            times_file.write_text(json.dumps(times, indent=2) + "\n")
            if not scored.exists():
                kit(["evaluate-edit", "--ckpt", str(ckpt), "--per-kind", str(args.per_kind), "--compositions", str(args.compositions), "--out", str(scored)] + (["--steps", "2"] if args.smoke else []), log)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    first = args.seeds[0]
    shipped = json.loads((out / f"vlm_only_seed{first}.json").read_text())
    baseline = json.loads((out / f"source_pixels_seed{first}.json").read_text())
    before = json.loads((out / f"t2i_seed{first}.json").read_text())
    summary = {
        "recipe": "recipes/lap.yaml + recipes/edit.yaml",
        "kinds": shipped["kinds"],
        "success": shipped["success"],
        "preservation": shipped["preservation"],
        "composition": shipped.get("composition"),
        "baseline_source_pixels": {k: baseline[k] for k in ("success", "preservation", "composition", "kinds") if k in baseline},
        "before_editing": {k: before[k] for k in ("success", "preservation", "composition", "kinds") if k in before},
        "t2i_checkpoint": args.t2i_ckpt or f"recipes/lap.yaml, seed {first}, {t2i_steps} steps (trained by this script)",
        "transfer": None,
        "transfer_note": "not measured: t2i_v1 before and after editing, against a control with the same further text-to-image steps",
        "seeds": {str(s): {v: str(Path(args.out) / f"{v}_seed{s}.json") for v in ["t2i", *VARIANTS]} for s in args.seeds},
        "fit_seconds": times,
        "edit_steps": args.steps,
        "command": "python benchmarks/editing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
    }
    (out / "edit_eval.json" if args.smoke else ROOT / "results" / "edit_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"vlm_only: success {summary['success']:.3f}, preservation {summary['preservation']:.3f}; "
          f"source_pixels: success {baseline['success']:.3f}, preservation {baseline['preservation']:.3f} -> results/edit_eval.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
