"""Training from the feature cache vs encoding on the fly: steps/s of the same recipe, side by side.

    python benchmarks/feature_cache.py -c recipes/lap.yaml --steps 150 --out results/feature_cache.json

Builds a cache for the items the timed runs draw (timed too), then fits the recipe twice for
`--steps` steps over the same items: once running the frozen encoder every step, once reading
the cache. Callbacks, validation and checkpointing are off so only the training step is timed;
the first `--warmup` steps are not counted. Prints a table and appends the numbers to `--out`.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import lightning as L
import torch


class StepTimer(L.Callback):
    """Wall time between the end of step `warmup` and the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps += 1
        if self.steps == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def timed_fit(configs: list[str], steps: int, warmup: int, items: int | None, logdir: str, *extra: str) -> dict:
    """Fit `steps` steps of the composed recipes with callbacks, validation and checkpoints off (on the shapes data,
    over its first `items` training items when given); the steps after `warmup`, timed."""
    from kit.cli import run_cli

    args = ["fit", *[a for c in configs for a in ("-c", c)], f"--trainer.max_steps={steps}", f"--trainer.logger.init_args.save_dir={logdir}"]
    args += ["--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0"]
    args += ([f"--data.init_args.train_size={items}"] if items is not None else []) + list(extra)
    cli = run_cli(args, run=False)
    timer = StepTimer(warmup)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, cli.datamodule)
    counted = timer.steps - warmup
    seconds = timer.end - timer.start
    batch = cli.datamodule.batch_size
    return {
        "steps": counted,
        "seconds": round(seconds, 2),
        "steps_per_sec": round(counted / seconds, 3),
        "samples_per_sec": round(counted * batch / seconds, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", action="append", required=True, help="recipe files, composed left to right")
    p.add_argument("--steps", type=int, default=150, help="training steps per run")
    p.add_argument("--warmup", type=int, default=10, help="steps not counted")
    p.add_argument("--out", default="results/feature_cache.json", help="JSON-lines file the result is appended to")
    args = p.parse_args()

    from kit.cli import main as kit_main
    from kit.encoders.cache import FeatureCache

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = f"{tmp}/cache"
        started = time.perf_counter()
        code = kit_main(["cache", *[a for c in args.config for a in ("-c", c)], "--out", cache_dir, f"--set=--trainer.max_steps={args.steps}"])
        if code:
            raise SystemExit(code)
        cache_seconds = time.perf_counter() - started
        items = FeatureCache(cache_dir).manifest["data"]["train_items"]
        live = timed_fit(args.config, args.steps, args.warmup, items, tmp)
        cached = timed_fit(args.config, args.steps, args.warmup, items, tmp, f"--data.init_args.feature_cache={cache_dir}")
        entries = len(FeatureCache(cache_dir))
    result = {
        "recipe": args.config,
        "steps": args.steps,
        "warmup": args.warmup,
        "on_the_fly": live,
        "from_cache": cached,
        "speedup": round(cached["steps_per_sec"] / live["steps_per_sec"], 2),
        "cache_build_seconds": round(cache_seconds, 1),
        "cache_entries": entries,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"{'':12} {'steps/s':>8} {'samples/s':>10}")
    for name in ("on_the_fly", "from_cache"):
        print(f"{name:12} {result[name]['steps_per_sec']:8.3f} {result[name]['samples_per_sec']:10.1f}")
    print(f"from_cache / on_the_fly = {result['speedup']}x   (cache built in {result['cache_build_seconds']} s, {entries} entries)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
