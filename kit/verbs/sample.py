"""`python -m kit sample --ckpt CKPT --prompt TEXT [--image SRC.png ...] [--num N] --out grid.png`: images from a checkpoint.

With `--image`, the prompt is an instruction about those images (editing, multi-reference
composition): they reach the model through its frozen VLM, and the grid shows them first in each row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt
from PIL import Image
from torchvision.utils import make_grid

from kit.images import image_to_tensor, read_image, tensor_to_image
from kit.tasks import Capability
from kit.tasks.editing import check_references
from kit.verbs.parsing import VerbParser, add_model_arguments, load_task

HELP = "draw images from a checkpoint into a PNG grid: --ckpt CKPT --prompt TEXT [--num N] --out grid.png"


def parser() -> ArgumentParser:
    p = VerbParser(prog="python -m kit sample", description="Sample images from a trained checkpoint into a PNG grid (one row per prompt).")
    p.add_argument("--ckpt", type=str, required=True, help="checkpoint written by `python -m kit fit`")
    p.add_argument("--prompt", type=str, action="append", required=True, help="text prompt; repeat for several prompts")
    p.add_argument(
        "--image",
        type=str,
        action="append",
        default=None,
        help="a reference image for every prompt (editing); repeat for several, named in the prompt as 'the first image', ...",
    )
    p.add_argument("--num", type=PositiveInt, default=4, help="images per prompt")
    p.add_argument("--out", type=str, default="grid.png", help="output PNG path")
    p.add_argument("--scale", type=PositiveInt, default=4, help="nearest-neighbour upscaling of the saved grid")
    add_model_arguments(p, "sample")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    references = []
    try:
        references = [image_to_tensor(read_image(path)) for path in args.image or []]
        for prompt in args.prompt if references else []:
            check_references(prompt, len(references))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    module = load_task(args)
    if module is None:
        return 2
    if references and Capability.REFERENCES not in module.capabilities:
        print(f"error: --image: the checkpoint's task ({type(module).__name__}) takes no reference images", file=sys.stderr)
        return 2
    if references and not module.encoder.takes_images:
        print(f"error: the checkpoint's encoder ({module.encoder.spec.name}) takes no images; --image needs a VLM encoder", file=sys.stderr)
        return 2
    if module.encoder.rewriting:
        for prompt, rewrite in zip(args.prompt, module.encoder.rewrite(args.prompt)):
            print(f"rewrite: {prompt!r} -> {rewrite!r}")
    prompts = [p for p in args.prompt for _ in range(args.num)]
    kwargs = {"references": [references] * len(prompts)} if references else {}
    images = module.generate(prompts, guidance_scale=args.guidance, num_steps=args.steps, seed=args.seed, **kwargs).cpu()
    columns = args.num
    if references:  # each row: the references (at the samples' size), then the samples
        size = images.shape[-2:]
        shown = [F.interpolate(r[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0] for r in references]
        rows = [torch.stack([*shown, *images[i * args.num : (i + 1) * args.num]]) for i in range(len(args.prompt))]
        images, columns = torch.cat(rows), args.num + len(references)
    grid = make_grid(images, nrow=columns, padding=1, pad_value=1.0)  # (3, H', W') in [-1, 1]
    picture = Image.fromarray(tensor_to_image(grid))
    picture = picture.resize((picture.width * args.scale, picture.height * args.scale), Image.NEAREST)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    print(f"wrote {out} ({len(args.prompt)} prompt(s) x {args.num} images)")
    return 0
