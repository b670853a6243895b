"""The README's first command, measured as a newcomer runs it: clean clone, install, main job, evaluation.

    python benchmarks/quickstart.py                      # -> results/quickstart_eval.json
    python benchmarks/quickstart.py --skip-eval          # only time the command

Reads the command from the README itself (the first indented line), so what is timed is what
the README says. It clones the repository's committed HEAD into a fresh folder (nothing of this
working tree, no venv, no runs), runs the command there with its install and its fit timed
separately (the command's `&&`-joined parts: the install is everything before `python -m kit`),
then evaluates the run's last checkpoint with `kit evaluate` on all prompts of the suite
(`--images-per-prompt`, 4 by default) and writes the evaluation with a `measured` block:
install, fit and total seconds, steps per second of the fit, the checkpoint's size, the commit,
the machine and the exact commands. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_first_command(readme: Path) -> str:
    """The first indented (code) line of the README: the set-up-and-run command."""
    for line in readme.read_text().splitlines():
        if line.startswith("    ") and line.strip():
            return line.strip()
    raise ValueError(f"{readme} has no indented command line")


def split_install(command: str) -> tuple[str, str]:
    """`install && ... && python -m kit fit ...` -> (install part, run part)."""
    parts = [p.strip() for p in command.split("&&")]
    run_at = next((i for i, p in enumerate(parts) if re.search(r"python\S* -m kit ", p)), None)
    if run_at is None or run_at == 0:
        raise ValueError(f"cannot tell the install from the run in {command!r}")
    return " && ".join(parts[:run_at]), " && ".join(parts[run_at:])


def timed(command: str, cwd: Path, log: Path) -> float:
    """Run a shell command, its output to `log`; seconds of wall time. A failure stops the measurement."""
    started = time.perf_counter()
    with log.open("a") as f:
        code = subprocess.run(command, shell=True, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"quickstart: {command!r} failed with exit {code}; see {log}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default=None, help="where to clone (a fresh temporary folder when omitted)")
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--skip-eval", action="store_true", help="only time the command")
    p.add_argument("--out", default=str(ROOT / "results" / "quickstart_eval.json"))
    args = p.parse_args(argv)

    out = Path(args.out).resolve()
    command = readme_first_command(ROOT / "README.md")
    install, run = split_install(command)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kit-quickstart-"))
    clone = work / "kit"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True, check=True).stdout.strip()
    log = work / "quickstart.log"
    print(f"quickstart: commit {commit} in {clone} (remove it when done: it holds a venv); log {log}", flush=True)
    install_s = timed(install, clone, log)
    print(f"quickstart: install {install_s:.0f} s", flush=True)
    fit_s = timed(run, clone, log)
    print(f"quickstart: fit {fit_s:.0f} s", flush=True)

    ckpts = sorted(clone.glob("runs/*/version_*/checkpoints/last.ckpt"))
    if not ckpts:
        raise SystemExit(f"quickstart: the command left no runs/*/version_*/checkpoints/last.ckpt; see {log}")
    ckpt = ckpts[-1]
    config = (ckpt.parent.parent / "config.yaml").read_text()
    steps = int(re.search(r"max_steps: (\d+)", config).group(1))
    evaluate = [
        ".venv/bin/python",
        "-m",
        "kit",
        "evaluate",
        "--ckpt",
        str(ckpt.relative_to(clone)),
        "--images-per-prompt",
        str(args.images_per_prompt),
        "--out",
        str(out),
    ]
    measured = {
        "commit": commit,
        "command": command,
        "install_seconds": round(install_s, 1),
        "fit_seconds": round(fit_s, 1),
        "total_seconds": round(install_s + fit_s, 1),
        "steps_per_fit_second": round(steps / fit_s, 3),  # the whole fit command: start-up, validation, evaluation, grids
        "steps": steps,
        "checkpoint_mb": round(ckpt.stat().st_size / 1e6, 1),
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU, {platform.system()}, Python {platform.python_version()}",
        "measured_by": "python benchmarks/quickstart.py " + " ".join(map(shlex.quote, argv if argv is not None else sys.argv[1:])),
        "evaluate_command": " ".join(evaluate),
    }
    if args.skip_eval:
        print(json.dumps(measured, indent=2))
        return 0
    eval_s = timed(" ".join(map(shlex.quote, evaluate)), clone, log)
    results = json.loads(out.read_text())
    results["checkpoint"] = f"(clean clone) {ckpt.relative_to(clone)}"
    results["measured"] = {**measured, "evaluate_seconds": round(eval_s, 1)}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"quickstart: overall {results['overall']:.3f}, DPG facts {results['dpg']['score']:.3f}; wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
