"""Compare runs from their TensorBoard event files: a table (final and best of each metric, mean and
spread over seeds, parameters, steps/s), the 95 % interval of each variant's mean, which pairs of variants
the seeds resolve, and one plot of curves per metric.

A folder of runs looks like `runs/fusion/<variant>/<seed or version>/events.out.tfevents.*`: every
folder holding event files is a run, its parent folder (relative to the root) names its variant,
and runs of one variant are its seeds. Nothing but the event files is read.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure  # figures without pyplot: the kit never switches a notebook's backend
from scipy import stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

DEFAULT_PREFIXES = ("val/", "eval/")
"""Metrics compared when none is named: everything validation and evaluation logged."""


@dataclass
class Run:
    """One run: its variant, its name within the variant (a seed), and its scalar curves."""

    variant: str
    name: str
    path: Path
    scalars: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)  # tag -> [(step, value, wall time)]

    def final(self, tag: str) -> float | None:
        points = self.scalars.get(tag)
        return points[-1][1] if points else None

    def best(self, tag: str) -> float | None:
        points = self.scalars.get(tag)
        if not points:
            return None
        values = [v for _, v, _ in points]
        return min(values) if lower_is_better(tag) else max(values)

    def steps_per_second(self, tag: str = "train/loss") -> float | None:
        """Optimizer steps per wall-clock second between the first and last logged `tag`."""
        points = self.scalars.get(tag)
        if not points or len(points) < 2 or points[-1][2] <= points[0][2]:
            return None
        return (points[-1][0] - points[0][0]) / (points[-1][2] - points[0][2])


def lower_is_better(tag: str) -> bool:
    """Losses and errors go down; scores and accuracies go up."""
    return any(word in tag.lower() for word in ("loss", "error", "fid", "mse"))


def load_runs(root: str | Path) -> list[Run]:
    """Every folder under `root` that holds TensorBoard event files, with its scalars (steps deduplicated: last write wins)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {str(root)!r} to compare runs in")
    runs = []
    for folder in sorted({p.parent for p in root.rglob("events.out.tfevents.*")}):
        if folder.name == "hparams":  # the HParams summary beside a run is not a run
            continue
        rel = folder.relative_to(root)
        variant = str(rel.parent) if rel.parent != Path(".") else rel.name
        run = Run(variant=variant, name=rel.name, path=folder)
        merged: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
        for events in sorted(folder.glob("events.out.tfevents.*")):
            acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
            acc.Reload()
            for tag in acc.Tags()["scalars"]:
                for e in acc.Scalars(tag):
                    merged[tag][e.step] = (e.value, e.wall_time)
        run.scalars = {tag: [(s, v, w) for s, (v, w) in sorted(points.items())] for tag, points in merged.items()}
        runs.append(run)
    if not runs:
        raise FileNotFoundError(f"no TensorBoard event files under {str(root)!r}")
    return runs


def pick_metrics(runs: list[Run], metrics: list[str] | None) -> list[str]:
    """The named metrics (each must exist in some run), or every val/ and eval/ scalar."""
    available = sorted({tag for run in runs for tag in run.scalars})
    if metrics:
        missing = [m for m in metrics if m not in available]
        if missing:
            raise ValueError(f"metrics {missing} were not logged by any run; logged scalars: {', '.join(available)}")
        return list(metrics)
    return [tag for tag in available if tag.startswith(DEFAULT_PREFIXES)]


def _mean_spread(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None  # one seed: no spread to show


def interval95(values: list[float]) -> float | None:
    """Half-width of the 95 % Student-t interval of the mean of `values` (seeds); None for fewer than 2."""
    if len(values) < 2:
        return None
    return float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / len(values) ** 0.5


def welch_difference(a: list[float], b: list[float]) -> tuple[float, float, float] | None:
    """mean(a) - mean(b) and its 95 % Welch interval (unequal variances); None unless both have 2+ values.

    Two variants whose seeds agree exactly (zero spread in both) get a zero-width interval.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = (va + vb) ** 0.5
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, dof)) * se
    return diff, diff - half, diff + half


def summarize(runs: list[Run], metrics: list[str]) -> list[dict]:
    """One row per variant: seeds, parameters, steps/s, and mean/std over seeds of each metric's final and best value,
    with the 95 % interval of the final value's mean (`<metric> final ci95`, a half-width)."""
    by_variant: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_variant[run.variant].append(run)
    rows = []
    for variant, group in by_variant.items():
        row: dict = {"variant": variant, "seeds": len(group)}
        params = [r.final("params/trainable") for r in group if r.final("params/trainable") is not None]
        row["params"] = int(params[0]) if params else None
        row["steps_per_s"], _ = _mean_spread([s for r in group if (s := r.steps_per_second()) is not None])
        row["steps"] = max((r.scalars["train/loss"][-1][0] for r in group if "train/loss" in r.scalars), default=None)
        for m in metrics:
            finals = [v for r in group if (v := r.final(m)) is not None]
            row[f"{m} final"], row[f"{m} final std"] = _mean_spread(finals)
            row[f"{m} final ci95"] = interval95(finals)
            row[f"{m} best"], row[f"{m} best std"] = _mean_spread([v for r in group if (v := r.best(m)) is not None])
        rows.append(row)
    key = metrics[0] if metrics else None
    if key:  # best variant first
        sign = 1 if lower_is_better(key) else -1
        rows.sort(key=lambda r: (r[f"{key} final"] is None, sign * (r[f"{key} final"] or 0.0)))
    return rows


def _fmt(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    text = f"{mean:.4f}" if abs(mean) < 10 else f"{mean:.1f}"
    return text if std is None else f"{text} ± {std:.4f}"


def markdown_table(rows: list[dict], metrics: list[str]) -> str:
    """The summary as a Markdown table: final and best of each metric as mean ± std over seeds."""
    head = ["variant", "seeds", *[f"{m} (final)" for m in metrics], *[f"{m} (best)" for m in metrics], "params", "steps/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], str(r["seeds"])]
        cells += [_fmt(r[f"{m} final"], r[f"{m} final std"]) for m in metrics]
        cells += [_fmt(r[f"{m} best"], r[f"{m} best std"]) for m in metrics]
        cells += [f"{r['params']:,}" if r["params"] is not None else "-", f"{r['steps_per_s']:.2f}" if r["steps_per_s"] else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interval_table(rows: list[dict], metrics: list[str]) -> str:
    """Each variant's final value of each metric as its mean and 95 % Student-t interval over seeds."""
    lines = ["| variant | seeds | " + " | ".join(f"{m} (final): mean [95 % interval]" for m in metrics) + " |"]
    lines.append("|" + "---|" * (2 + len(metrics)))
    for r in rows:
        cells = [r["variant"], str(r["seeds"])]
        for m in metrics:
            mean, half = r[f"{m} final"], r[f"{m} final ci95"]
            cells.append("-" if mean is None else f"{mean:.3f}" if half is None else f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairwise(runs: list[Run], metric: str, order: list[str]) -> list[dict]:
    """Every pair of variants (in `order`): the difference of their final `metric` and its 95 % Welch interval.

    `resolved` is True when the interval excludes zero, i.e. the seeds separate the two variants.
    """
    finals: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if (v := run.final(metric)) is not None:
            finals[run.variant].append(v)
    pairs = []
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if (d := welch_difference(finals[a], finals[b])) is not None:
                diff, lo, hi = d
                pairs.append({"a": a, "b": b, "metric": metric, "diff": diff, "lo": lo, "hi": hi, "resolved": lo > 0 or hi < 0})
    return pairs


def pairwise_markdown(pairs: list[dict], order: list[str]) -> str:
    """A matrix: row variant against column variant, `>` / `<` where the seeds resolve which is better, `·` where not,
    `-` where either has fewer than 2 seeds (nothing to resolve with)."""
    better = {}
    for p in pairs:
        better[p["a"], p["b"]] = better[p["b"], p["a"]] = "·"
        sign = -1 if lower_is_better(p["metric"]) else 1
        if p["resolved"]:
            a_wins = sign * p["diff"] > 0
            better[p["a"], p["b"]], better[p["b"], p["a"]] = (">", "<") if a_wins else ("<", ">")
    lines = ["| | " + " | ".join(order) + " |", "|" + "---|" * (len(order) + 1)]
    for a in order:
        lines.append(f"| {a} | " + " | ".join("" if a == b else better.get((a, b), "-") for b in order) + " |")
    resolved = sum(p["resolved"] for p in pairs)
    lines.append(f"\n{resolved} of {len(pairs)} pairs resolved (the 95 % Welch interval of the difference excludes zero).")
    return "\n".join(lines)


def plot_curves(runs: list[Run], metric: str, path: Path) -> None:
    """One line per variant (mean over seeds at the steps all its seeds logged), shaded between the seeds' min and max."""
    by_variant: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if metric in run.scalars:
            by_variant[run.variant].append(run)
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for variant, group in sorted(by_variant.items()):
        curves = [{s: v for s, v, _ in r.scalars[metric]} for r in group]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        if not steps:
            continue
        values = [[c[s] for c in curves] for s in steps]
        line = ax.plot(steps, [statistics.fmean(v) for v in values], label=f"{variant} (n={len(group)})", lw=1.4)[0]
        if len(group) > 1:
            ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=line.get_color(), alpha=0.18, lw=0)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_report(root: str | Path, out: str | Path, metrics: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """Read every run under `root` and write `compare.md`, `compare.csv`, `pairs.csv` (the first metric's pairwise
    differences), `runs.csv` and one PNG per metric into `out`."""
    runs = load_runs(root)
    metrics = pick_metrics(runs, metrics)
    rows = summarize(runs, metrics)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    order = [r["variant"] for r in rows]
    pairs = pairwise(runs, metrics[0], order) if metrics else []
    report = f"Runs under `{root}`, mean ± std over seeds.\n\n{markdown_table(rows, metrics)}\n"
    if metrics:  # runs that logged no val/ or eval/ metric have nothing to interval or pair
        report += (
            f"\n## 95 % intervals of the mean (Student t over seeds)\n\n{interval_table(rows, metrics)}\n\n"
            f"## Which differences the seeds resolve: {metrics[0]} (final)\n\n"
            f"Row against column: `>` the row is better, `<` worse, `·` not resolved, `-` fewer than 2 seeds.\n\n{pairwise_markdown(pairs, order)}\n"
        )
    (out / "compare.md").write_text(report)
    with open(out / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if pairs:
        with open(out / "pairs.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(pairs[0]))
            writer.writeheader()
            writer.writerows(pairs)
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "run", *[f"{m} final" for m in metrics], *[f"{m} best" for m in metrics], "steps/s"])
        for r in runs:
            writer.writerow([r.variant, r.name, *[r.final(m) for m in metrics], *[r.best(m) for m in metrics], r.steps_per_second()])
    for m in [*metrics, *(["train/loss"] if any("train/loss" in r.scalars for r in runs) else [])]:
        plot_curves(runs, m, out / f"{m.replace('/', '_')}.png")
    return rows, metrics
