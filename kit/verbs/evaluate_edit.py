"""`python -m kit evaluate-edit --ckpt CKPT --out edit_eval.json`: score editing and zero-shot composition.

Builds the editing suite (`kit.analysis.edit_eval`: held-out source scenes, per edit kind, and 2- and
3-reference compositions), generates each case from its instruction and source renders, reads the
outputs with the oracle and writes success and preservation per kind, their means, and composition
accuracy. `--anchor target` or `--anchor source` scores the instrument's anchors instead of a model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from jsonargparse import ArgumentParser
from jsonargparse.typing import NonNegativeInt, PositiveInt

from kit.analysis.edit_eval import ANCHORS, EDIT_SUITE_VERSION, anchor_outputs, build_edit_suite, evaluate_edits, score_edit_images
from kit.tasks import Capability
from kit.verbs.parsing import VerbParser, add_model_arguments, load_task

HELP = "score an editing checkpoint with the oracle: --ckpt CKPT [--per-kind N] --out edit_eval.json (success, preservation, composition)"


def parser() -> ArgumentParser:
    p = VerbParser(prog="python -m kit evaluate-edit", description="Score editing (per kind) and zero-shot multi-reference composition with the oracle.")
    p.add_argument("--ckpt", type=str | None, default=None, help="checkpoint of an editing task (needed unless --anchor)")
    p.add_argument("--anchor", type=str | None, default=None, help=f"score an anchor instead of a model: {', '.join(ANCHORS)}")
    add_model_arguments(p, "generate")
    p.add_argument("--per-kind", type=PositiveInt, default=20, help="edits per edit kind")
    p.add_argument("--compositions", type=NonNegativeInt, default=20, help="cases of 2 and of 3 references each")
    p.add_argument("--images-per-case", type=PositiveInt, default=1, help="images generated per case")
    p.add_argument("--image-size", type=PositiveInt | None, default=None, help="render size of the sources (the checkpoint's image size, else 48)")
    p.add_argument("--batch-size", type=PositiveInt, default=32, help="cases per generation batch")
    p.add_argument("--out", type=str, default="edit_eval.json", help="output JSON path")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.anchor is None and args.ckpt is None:
        print(f"error: pass --ckpt CKPT (an editing checkpoint) or --anchor {'|'.join(ANCHORS)}", file=sys.stderr)
        return 2
    if args.anchor is not None and args.anchor not in ANCHORS:
        print(f"error: unknown anchor {args.anchor!r}; anchors: {', '.join(ANCHORS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    cases = build_edit_suite(args.per_kind, args.compositions, seed=0)
    meta = {"suite": f"edit_v{EDIT_SUITE_VERSION}", "per_kind": args.per_kind, "compositions": args.compositions, "images_per_case": args.images_per_case}
    if args.anchor is not None:
        size = args.image_size or 48
        results = score_edit_images(cases, anchor_outputs(cases, args.anchor, size))
        meta.update(source=f"anchor:{args.anchor}", image_size=size)
    else:
        module = load_task(args)
        if module is None:
            return 2
        if Capability.REFERENCES not in module.capabilities:
            name = getattr(type(module), "registry_name", type(module).__name__)
            print(
                f"error: {args.ckpt} holds a {name} model ({type(module).__name__}), which reads no source images; evaluate it with kit evaluate",
                file=sys.stderr,
            )
            return 2
        size = args.image_size or module.image_size
        results = evaluate_edits(
            module,
            cases,
            size,
            args.images_per_case,
            batch_size=args.batch_size,
            seed=args.seed,
            guidance_scale=args.guidance,
            num_steps=args.steps,
            progress=True,
        )
        meta.update(source="model", checkpoint=str(args.ckpt), image_size=size, seed=args.seed, steps=args.steps or module.sampler.num_steps)
        meta.update(guidance_scale=module.guidance_scale if args.guidance is None else args.guidance)
    results = {**meta, **results, "seconds": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    kinds = "  ".join(f"{k}={v['success']:.3f}" for k, v in results["kinds"].items())
    print(f"{meta['source']}: success {results['success']:.3f}  preservation {results['preservation']:.3f}  [{kinds}] -> {out}")
    return 0
