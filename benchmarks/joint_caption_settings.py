"""How a joint checkpoint's captions depend on the sampling settings: image-to-text on held-out scenes over a grid
of text guidance scale, temperature (masked text stream) and sampler steps.

    python benchmarks/joint_caption_settings.py --ckpt runs/joint_seeds/default/seed0/version_0/checkpoints/last.ckpt \
        --out results/joint_caption_settings.json [--num-scenes 64] [--grid 1:0:20 1:0:48 2:0:20 4:0:20 1:1:20]

Each grid point is `scale:temperature:steps`; the temperature is only read by a masked text stream. Every point
captions the same scenes with the same seed and reports the parse, faithful and exact rates (`kit.joint.evaluate`)
and the first captions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.analysis.provenance import command_line, commit  # noqa: E402
from kit.data.shapes import ShapesDataset  # noqa: E402
from kit.joint.evaluate import caption_scores  # noqa: E402
from kit.loading import load_checkpoint  # noqa: E402
from kit.tasks import Capability  # noqa: E402


def point(text: str) -> tuple[float, float, int]:
    """`scale:temperature:steps` -> its three values."""
    try:
        scale, temperature, steps = text.split(":")
        return float(scale), float(temperature), int(steps)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a grid point is scale:temperature:steps (e.g. 1:0:20), got {text!r}") from None


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--num-scenes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=point, nargs="+", default=[point(p) for p in ("1:0:20", "1:0:48", "2:0:20", "4:0:20", "1:1:20", "4:1:20")])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    module = load_checkpoint(args.ckpt, require=Capability.IMAGE_TO_TEXT).eval()
    data = ShapesDataset(args.num_scenes, split="held_out", seed=args.seed, image_size=module.image_size, caption_styles=["detailed"])
    scenes = [data.scene_and_prompt(i)[0] for i in range(args.num_scenes)]
    images = torch.stack([data[i]["image"] for i in range(args.num_scenes)])
    rows, started = [], time.perf_counter()
    for scale, temperature, steps in args.grid:
        module.text_temperature = temperature
        captions = module.sample("i2t", images=images, guidance_scale=scale, num_steps=steps, seed=args.seed).captions
        rows.append({"scale": scale, "temperature": temperature, "steps": steps, **caption_scores(captions, scenes), "examples": captions[:4]})
        print(f"scale {scale:g} temperature {temperature:g} steps {steps}: {json.dumps({k: round(rows[-1][k], 3) for k in ('parsed', 'faithful', 'exact')})}")
    result = {
        "command": command_line("benchmarks/joint_caption_settings.py", argv),
        "commit": commit(),
        "checkpoint": args.ckpt,
        "held_out": True,
        "num_scenes": args.num_scenes,
        "seed": args.seed,
        "text_stream": str(module.text_stream),
        "seconds": round(time.perf_counter() - started, 1),
        "grid": {f"{r['scale']:g}:{r['temperature']:g}:{r['steps']}": r for r in rows},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
