"""Where a measurement came from: the commit, the command line, and an append-only results file.

Every benchmark under `benchmarks/` records these with each result, so a figure quoted anywhere
can be traced to the code and the command that produced it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The checkout the kit runs from (it is installed editable)."""


def commit(root: Path = REPO) -> str:
    """The short hash of HEAD, with `+dirty` when tracked files differ from it; `unknown` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """`python <script> <arguments>` as it was run (the process's own arguments when `argv` is None)."""
    return f"python {script} " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv))


def append_record(path: str | Path, record: dict) -> None:
    """Append one JSON line to a results file, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
