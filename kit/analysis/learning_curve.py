"""Learning curves: suite scores at fixed checkpoints of a training run, against samples and seconds.

`LearningCurve` is a callback: every `every_n_steps` optimizer steps (and at the end) it stops
the training clock, scores the model (EMA weights when it keeps them) on a subset of a prompt
suite with the oracle, and appends one row per checkpoint to a JSON-lines file. The clock
counts training only (data, forward, backward, optimizer; not the evaluations), so curves
of recipes of different speeds can be read against seconds. `summarise` and `plot` turn the
rows of several variants and seeds into a table (mean over seeds) and a PNG.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import lightning as L
import numpy as np
import torch

from kit.world.suites import CATEGORIES


class LearningCurve(L.Callback):
    """Score a training run on a suite subset every `every_n_steps` steps; rows go to `out` (JSON lines).

    Args:
        out: the JSON-lines file the rows are appended to.
        every_n_steps: optimizer steps between evaluations (and one at the end of training).
        per_category: prompts per suite category (the first ones).
        images_per_prompt: images per prompt.
        tags: fields copied into every row (variant name, seed, recipe files, commit).
        num_steps: sampler steps for the evaluation (the recipe's when None).
        guidance_scale: CFG scale for the evaluation (the recipe's when None).
        suite: name of the shipped suite.
    """

    def __init__(
        self,
        out: str | Path,
        every_n_steps: int = 300,
        per_category: int | None = 20,
        images_per_prompt: int = 1,
        tags: dict | None = None,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        suite: str = "t2i",
    ) -> None:
        from kit.analysis.evaluate import subset
        from kit.world.suites import load_suite

        self.out = Path(out)
        self.every_n_steps = every_n_steps
        self.entries = subset(load_suite(suite), per_category)
        self.images_per_prompt = images_per_prompt
        self.tags = dict(tags or {})
        self.generate_kwargs = {"num_steps": num_steps, "guidance_scale": guidance_scale}
        self.rows: list[dict] = []
        self._train_seconds = 0.0
        self._since: float | None = None
        self._last_step = -1

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._since = time.perf_counter()

    def _pause(self) -> None:
        if self._since is not None:
            self._train_seconds += time.perf_counter() - self._since
            self._since = None

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._pause()  # validation is not training time

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.training:
            self._since = time.perf_counter()

    def evaluate(self, trainer: L.Trainer, module: L.LightningModule) -> dict | None:
        from kit.analysis.evaluate import evaluate_module

        step = trainer.global_step
        if step == self._last_step or not trainer.is_global_zero:
            return None
        self._last_step = step
        self._pause()
        started = time.perf_counter()
        results = evaluate_module(module, self.entries, self.images_per_prompt, **self.generate_kwargs)
        gains = conditioning_gain(module, trainer.datamodule) if trainer.datamodule is not None else {}
        batch = trainer.datamodule.batch_size if trainer.datamodule is not None else None
        row = {
            **self.tags,
            "step": step,
            "train_seconds": round(self._train_seconds, 2),
            "samples": step * batch if batch else None,
            "overall": results["overall"],
            **{c: results["categories"].get(c) for c in CATEGORIES},
            "dpg": results["dpg"]["score"],
            **gains,
            "eval_seconds": round(time.perf_counter() - started, 2),
        }
        self.rows.append(row)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for logger in trainer.loggers:
            logger.log_metrics({"curve/overall": row["overall"], "curve/dpg": row["dpg"] or 0.0, "curve/train_seconds": row["train_seconds"]}, step=step)
        if trainer.training:
            self._since = time.perf_counter()
        return row

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self.evaluate(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.evaluate(trainer, module)


GAIN_TIMES = (0.5, 0.8, 0.95)


@torch.no_grad()
def conditioning_gain(module, datamodule, times: tuple[float, ...] = GAIN_TIMES, n: int = 64) -> dict[str, float]:
    """How much the prompt helps the denoiser: `1 - loss(prompt) / loss(null)` at fixed times and noise on
    the first `n` validation items (`gain_t0.80`, ...). Zero means the model ignores its conditioning; it
    rises before any image is scored correct, so it is the first sign that conditioning is being learned."""
    items = [datamodule.val_set[i] for i in range(min(n, len(datamodule.val_set)))]
    x0 = torch.stack([it["image"] for it in items]).to(module.device)  # (n, C, H, W)
    prompts = [it["prompt"] for it in items]
    generator = torch.Generator(device=module.device).manual_seed(0)
    x0 = module.to_model_space(x0)  # pixels or latents (the autoencoder is frozen: EMA does not touch it)
    noise = torch.randn(x0.shape, device=module.device, generator=generator)
    was_training = module.training
    module.eval()
    out = {}
    try:
        with module.averaged():
            cond, null = module.condition(prompts), module.fusion.null_conditioning(len(prompts))
            denoiser = module.denoiser(None, len(prompts))  # text-to-image: no references
            for t in times:
                tt = torch.full((len(prompts),), t, device=module.device)
                right = module.objective.loss(denoiser, x0, cond, t=tt, noise=noise)["loss"]
                none = module.objective.loss(denoiser, x0, null, t=tt, noise=noise)["loss"]
                out[f"gain_t{t:.2f}"] = float(1 - right / none.clamp(min=1e-12))
    finally:
        module.train(was_training)
    return out


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a learning-curve JSON-lines file (none when it does not exist)."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


SCORES = ("overall", *CATEGORIES, "dpg", *(f"gain_t{t:.2f}" for t in GAIN_TIMES))


def summarise(rows: list[dict]) -> list[dict]:
    """Mean (and, over several seeds, the min and max) of every score per (variant, step)."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["variant"], r["step"])].append(r)
    out = []
    order = {v: i for i, v in enumerate(dict.fromkeys(r["variant"] for r in rows))}  # variants in the order they ran
    for (variant, step), rs in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        row = {"variant": variant, "step": step, "seeds": len(rs), "train_seconds": float(np.mean([r["train_seconds"] for r in rs]))}
        row["samples"] = rs[0]["samples"]
        for k in SCORES:
            values = [r[k] for r in rs if r.get(k) is not None]
            row[k] = float(np.mean(values)) if values else None
            row[f"{k}_range"] = (min(values), max(values)) if len(values) > 1 else None
        out.append(row)
    return out


def table(summary: list[dict]) -> str:
    """A Markdown table of a summary: one line per (variant, step)."""
    cols = [
        "variant",
        "step",
        "seeds",
        "train s",
        "samples",
        "overall",
        *(c.replace("_", " ") for c in CATEGORIES),
        "dpg",
        *(f"gain t={t}" for t in GAIN_TIMES),
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in summary:
        cells = [r["variant"], str(r["step"]), str(r["seeds"]), f"{r['train_seconds']:.0f}", str(r["samples"])]
        for k in SCORES:
            v, rng = r[k], r[f"{k}_range"]
            cells.append("-" if v is None else f"{v:.3f}" + (f" ({rng[0]:.2f}-{rng[1]:.2f})" if rng and k == "overall" else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict], out: str | Path, metrics: tuple[str, ...] = ("overall", "dpg")) -> None:
    """PNG: each metric against samples seen and against training seconds, one line per variant (seed band)."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays its own

    variants = list(dict.fromkeys(r["variant"] for r in summary))
    fig = Figure(figsize=(10, 3.2 * len(metrics)))
    axes = fig.subplots(len(metrics), 2, squeeze=False)
    for i, metric in enumerate(metrics):
        for j, xkey in enumerate(("samples", "train_seconds")):
            ax = axes[i, j]
            for v in variants:
                rs = [r for r in summary if r["variant"] == v and r[metric] is not None]
                if not rs:
                    continue
                xs = [r[xkey] for r in rs]
                line = ax.plot(xs, [r[metric] for r in rs], marker="o", ms=3, label=v)[0]
                if all(r[f"{metric}_range"] for r in rs):
                    ax.fill_between(xs, [r[f"{metric}_range"][0] for r in rs], [r[f"{metric}_range"][1] for r in rs], color=line.get_color(), alpha=0.15)
            ax.set_xlabel("samples seen" if xkey == "samples" else "training seconds")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
