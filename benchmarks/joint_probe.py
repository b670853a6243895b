"""Does a joint model's text stream read the image? Image-to-text needs it to; this measures it directly.

For held-out scenes (never drawn in training) and their captions (detailed, or `--register` another), the caption's text latent is noised to a text time t and the
network predicts it back once, with the image given clean (time 0, as image-to-text gives it) and with the image
marginalised (pure noise at time 1). If the text prediction reads the image, its error is lower with the image
given, the more so the noisier the text. Reported per text time: the mean squared error of the predicted latent
both ways, their ratio, and the exact-match rate of the decoded prediction both ways. A masked (discrete) text
stream is masked at ratio t instead, and scored by its cross-entropy at the masked positions (`ce_*`, `ce_ratio`)
and the exact match of the caption with every masked position filled by its most probable token.

    python benchmarks/joint_probe.py --ckpt runs/joint/unidiffuser/version_0/checkpoints/last.ckpt [--ckpt ...] --out results/joint_probe.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from kit.data.shapes import ShapesDataset
from kit.joint.backbone import IMAGE, TEXT
from kit.loading import load_checkpoint
from kit.tasks import Capability
from kit.world import REGISTERS

TIMES = (0.3, 0.5, 0.7, 0.9, 1.0)


@torch.no_grad()
def probe(path: str, num_scenes: int = 128, times: tuple[float, ...] = TIMES, seed: int = 0, register: str = "detailed") -> dict:
    """The image reliance of the text prediction of the joint checkpoint `path` (see the module docstring)."""
    module = load_checkpoint(path, require=Capability.IMAGE_TO_TEXT).eval()
    size = module.image_size
    data = ShapesDataset(num_scenes, split="held_out", seed=seed, image_size=size, caption_styles=[register])
    truth = [data.scene_and_prompt(i)[1] for i in range(num_scenes)]
    images = torch.stack([data[i]["image"] for i in range(num_scenes)])
    objective, generator = module.objective, torch.Generator().manual_seed(seed)
    rows = {}
    with module.sampling():
        image, text = module.image_streams_of(images), module.text_latents(truth)  # image streams; (B, L, d) or ids (B, L)
        for t in times if module.discrete_text else ():  # the masked stream: cross-entropy at the masked positions
            tt = torch.full((num_scenes,), t)
            corrupted, masked = module.codec.corrupt(text, tt, generator)  # (B, L) each
            row = {}
            for name, image_time in (("given", 0.0), ("marginalised", 1.0)):
                ti = torch.full((num_scenes,), image_time)
                xs = {n: objective.model_input(v if image_time == 0 else torch.randn(v.shape, generator=generator), ti) for n, v in image.items()}
                logits = module.backbone(xs | {TEXT: corrupted}, {IMAGE: ti, TEXT: tt}, None)[TEXT]  # (B, L, V)
                filled = torch.where(masked, logits.argmax(dim=-1), corrupted)  # (B, L)
                row[f"ce_{name}"] = float(module.codec.loss(logits, text, masked).mean())
                row[f"exact_{name}"] = sum(a == b for a, b in zip(module.codec.decode(filled), truth)) / num_scenes
            row["ce_ratio"] = row["ce_given"] / row["ce_marginalised"]
            rows[str(t)] = row
        for t in times if not module.discrete_text else ():
            tt = torch.full((num_scenes,), t)
            alpha, sigma, _, _ = objective.coefficients(tt, text)
            noisy = alpha * text + sigma * torch.randn(text.shape, generator=generator)  # (B, L, d)
            row = {}
            for name, image_time in (("given", 0.0), ("marginalised", 1.0)):
                ti = torch.full((num_scenes,), image_time)
                xs = {n: objective.model_input(v if image_time == 0 else torch.randn(v.shape, generator=generator), ti) for n, v in image.items()}
                pred = module.backbone(xs | {TEXT: objective.model_input(noisy, tt)}, {IMAGE: ti, TEXT: tt}, None)[TEXT]  # (B, L, d)
                x0, _ = objective.to_x0_eps(pred, noisy, tt)
                decoded = module.codec.decode(x0)
                row[f"mse_{name}"] = float(((x0 - text) ** 2).mean())
                row[f"exact_{name}"] = sum(a == b for a, b in zip(decoded, truth)) / num_scenes
            row["mse_ratio"] = row["mse_given"] / row["mse_marginalised"]
            rows[str(t)] = row
    return {"checkpoint": str(path), "num_scenes": num_scenes, "seed": seed, "register": register, "by_text_time": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", action="append", required=True, help="a joint checkpoint (repeat for several)")
    p.add_argument("--num-scenes", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--register", choices=REGISTERS, default="detailed", help="the register of the probed captions (a model trained on one register is probed in it)"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON output (printed only when absent)")
    args = p.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    started = time.perf_counter()
    results = [probe(c, args.num_scenes, seed=args.seed, register=args.register) for c in args.ckpt]
    print(f"{'checkpoint':60s} {'t_text':>6s} {'err given':>10s} {'err marg.':>10s} {'ratio':>6s} {'exact given':>11s} {'exact marg.':>11s}")
    for r in results:
        for t, row in r["by_text_time"].items():
            kind = "ce" if "ce_given" in row else "mse"  # the masked stream's error is its cross-entropy
            print(
                f"{r['checkpoint'][-60:]:60s} {t:>6s} {row[f'{kind}_given']:10.3f} {row[f'{kind}_marginalised']:10.3f} {row[f'{kind}_ratio']:6.3f}"
                f" {row['exact_given']:11.3f} {row['exact_marginalised']:11.3f}"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/joint_probe.py " + " ".join(sys.argv[1:] if argv is None else argv)
        args.out.write_text(
            json.dumps({"command": command, "commit": commit, "seconds": round(time.perf_counter() - started, 1), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
