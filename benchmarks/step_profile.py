"""Where a training step's time goes: the frozen encoder, the fusion head, the backbone.

    python benchmarks/step_profile.py -c recipes/lap.yaml
    python benchmarks/step_profile.py -c recipes/lap.yaml -- --model.init_args.fusion.init_args.taps=3

Builds the recipe's model and one training batch, then times (mean of `--repeats` after one
warm-up) the encoder's forward (no gradient: it is frozen), the fusion head's forward and
backward on those features, the backbone's forward and backward through the objective's loss
with the conditioning detached, and the whole step's forward and backward. Data loading,
the optimizer and callbacks are not in these figures. Run it alone on the machine; it appends
one JSON line (command, commit, threads, seconds per part) to `--out`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def mean_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", action="append", required=True, help="recipe files, composed left to right")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "results" / "step_profile.jsonl"))
    p.add_argument("overrides", nargs="*", help="CLI overrides (after --)")
    args = p.parse_args(argv)
    from kit.analysis.provenance import append_record, command_line, commit
    from kit.cli import run_cli
    from kit.types import Conditioning

    cli = run_cli([a for c in args.config for a in ("-c", c)] + ["--trainer.logger=false", *args.overrides], run=False)
    module, data = cli.model, cli.datamodule
    batch = next(iter(data.train_dataloader()))
    prompts, images = batch.prompts, batch.images
    with torch.no_grad():
        encoded = module.encoder(prompts)

    def fusion_step():
        cond = module.fusion(encoded)
        (cond.tokens if cond.tokens is not None else cond.per_layer).square().mean().backward()

    cond = module.fusion(encoded)
    detached = Conditioning(**{k: (v.detach() if torch.is_tensor(v) else v) for k, v in vars(cond).items()})

    def backbone_step():
        module.objective.loss(module.backbone, images, detached)["loss"].backward()

    def full_step():
        module.objective.loss(module.backbone, images, module.condition(prompts))["loss"].backward()

    with torch.no_grad():
        encoder_s = mean_seconds(lambda: module.encoder(prompts), args.repeats)
    row = {
        "encoder_forward": round(encoder_s, 4),
        "fusion_forward_backward": round(mean_seconds(fusion_step, args.repeats), 4),
        "backbone_forward_backward": round(mean_seconds(backbone_step, args.repeats), 4),
        "step_forward_backward": round(mean_seconds(full_step, args.repeats), 4),
        "batch_size": len(prompts),
        "conditioning_tokens": int(cond.mask.shape[1]),
        "threads": torch.get_num_threads(),
    }
    for k, v in row.items():
        print(f"{k:28s} {v}")
    append_record(args.out, {"command": command_line("benchmarks/step_profile.py", argv), "commit": commit(), **row})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
