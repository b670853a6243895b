"""`python -m kit build-tiny-vlm --out DIR`: rebuild the shipped random tiny Qwen2-VL."""

from __future__ import annotations

from kit.verbs.parsing import VerbParser
from kit.vlm.tiny import build_tiny_vlm

HELP = "rebuild the shipped random tiny Qwen2-VL (kit:shapes-vlm-random)"


def main(argv: list[str]) -> int:
    p = VerbParser(prog="python -m kit build-tiny-vlm", description="Train the tokenizer and initialise a tiny Qwen2-VL for the shapes world.")
    p.add_argument("--out", type=str, default="kit/assets/shapes-vlm-random", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    args = p.parse_args(argv)
    print(f"wrote {build_tiny_vlm(args.out, seed=args.seed)}")
    return 0
