"""Conditioning probe: how fast does a recipe learn to draw what its prompt says, at one noise level?

    python benchmarks/conditioning_probe.py -c recipes/lap.yaml -c recipes/levers/fast.yaml --steps 500
    python benchmarks/conditioning_probe.py -c recipes/lap.yaml --time 1.0 --zero-noise --steps 500

Trains the recipe's model with the recipe's optimizer (learning rate, betas, weight decay; no schedule) and every
`--every` steps prints the loss on 64 fixed validation items at `--eval-time` with the prompt and
with the null conditioning, and the gain `1 - loss(prompt) / loss(null)`. Training times come from
the recipe's objective, or are all `--time`; `--zero-noise` replaces the noise by zeros (the pure
prompt -> image regression). It also prints the floor: the x0 loss of knowing every fact of the
scene but not its jitter (the mean of 16 re-jittered renders), and the mean-image loss.
This is the tool that found why the old default did not follow prompts (docs/efficiency.md).
Results are appended to `--out` (JSON lines) with the command and the commit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def floor_losses(dataset, n: int = 64) -> tuple[float, float]:
    """(facts-known floor, mean-image loss) of x0 predictions on the first n items of a dataset."""
    from kit.images import image_to_tensor
    from kit.world.render import render
    from kit.world.scene import Scene, SceneObject

    errs, images = [], []
    for i in range(n):
        scene, _ = dataset.scene_and_prompt(i)
        x = image_to_tensor(render(scene, dataset.image_size))
        rng = np.random.default_rng(i)
        rejittered = [
            image_to_tensor(render(Scene(tuple(SceneObject(*o.facts(), (rng.uniform(-1, 1), rng.uniform(-1, 1))) for o in scene.objects)), dataset.image_size))
            for _ in range(16)
        ]
        errs.append(float(((torch.stack(rejittered).mean(0) - x) ** 2).mean()))
        images.append(x)
    mean = torch.stack(images).mean(0)
    return float(np.mean(errs)), float(np.mean([((mean - x) ** 2).mean().item() for x in images]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", action="append", required=True, help="recipe files, composed left to right")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--time", type=float, default=None, help="train at this time only (the objective's distribution when omitted)")
    p.add_argument("--eval-time", type=float, default=0.95, help="time of the validation losses")
    p.add_argument("--zero-noise", action="store_true", help="zeros instead of noise: the pure prompt -> image regression")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "results" / "conditioning_probe.jsonl"))
    p.add_argument("overrides", nargs="*", help="CLI overrides, e.g. --data.init_args.caption_weights=[1,0,0,0,0] (after --)")
    args = p.parse_args(argv)
    from kit.analysis.provenance import append_record, command_line, commit
    from kit.cli import run_cli

    torch.manual_seed(args.seed)
    cli = run_cli([a for c in args.config for a in ("-c", c)] + [f"--seed_everything={args.seed}", "--trainer.logger=false", *args.overrides], run=False)
    module, data = cli.model, cli.datamodule
    groups = module.trainable_parameter_groups()  # the recipe's optimizer (lr, betas, weight decay), without its schedule
    optimizer = module.optimizer_factory(groups) if module.optimizer_factory else torch.optim.AdamW(groups, lr=1e-3)
    val = [data.val_set[i] for i in range(64)]
    vx, vp = torch.stack([v["image"] for v in val]), [v["prompt"] for v in val]
    vn = torch.randn(vx.shape, generator=torch.Generator().manual_seed(0)) * (0.0 if args.zero_noise else 1.0)
    floor, mean_image = floor_losses(data.val_set)
    sha, command = commit(), command_line("benchmarks/conditioning_probe.py", argv)
    print(f"floor (facts known, jitter unknown) {floor:.4f}, mean image {mean_image:.4f}")
    rows, loader, started = [], iter(data.train_dataloader()), time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            module.eval()
            with torch.no_grad():
                t = torch.full((64,), args.eval_time)
                right = float(module.objective.loss(module.backbone, vx, module.condition(vp), t=t, noise=vn)["loss"])
                null = float(module.objective.loss(module.backbone, vx, module.fusion.null_conditioning(64), t=t, noise=vn)["loss"])
            module.train()
            row = {"step": step, "seconds": round(time.perf_counter() - started, 1), "val_prompt": right, "val_null": null, "gain": 1 - right / null}
            rows.append(row)
            print(f"step {step:5d}  {row['seconds']:6.0f} s  val {right:.4f}  null {null:.4f}  gain {row['gain']:.3f}", flush=True)
        if step == args.steps:
            break
        batch = next(loader)
        x0 = batch.images
        t = module.objective.sample_time(x0.shape[0], x0.device) if args.time is None else torch.full((x0.shape[0],), args.time)
        noise = torch.zeros_like(x0) if args.zero_noise else None
        loss = module.objective.loss(module.backbone, x0, module.condition(batch.prompts), t=t, noise=noise)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    append_record(args.out, {"command": command, "commit": sha, "floor": floor, "mean_image": mean_image, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
