"""`python -m kit evaluate --ckpt CKPT [--suite t2i] [--images-per-prompt K] --out results.json`.

`--suite t2i` generates the suite's prompts with the checkpoint; `--suite gt` scores the
world's own renders of the suite's scenes and `--suite noise` uniform random images: the
two sanity anchors every model score sits between.

The checkpoint's task decides what is measured (`DiffusionTask.evaluate`): a text-to-image task scores the
suite; the joint image-text model (`recipes/unidiffuser.yaml`) scores every direction: text-to-image per
guidance variant, image-to-text, joint pairs, marginals and its text decoder (`kit.joint.evaluate`).
`--task NAME` states which evaluation you expect and refuses a checkpoint whose task runs another.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt

from kit.analysis import anchor_images, score_images, subset
from kit.analysis.evaluate import SOURCES
from kit.tasks import DiffusionTask, EvaluationSettings
from kit.verbs.parsing import VerbParser, add_model_arguments, load_task
from kit.world.suites import PromptFileError, load_prompt_file, load_suite

HELP = "score a checkpoint on a prompt suite with the oracle: --ckpt CKPT [--suite t2i|gt|noise] --out results.json"


def parser() -> ArgumentParser:
    p = VerbParser(prog="python -m kit evaluate", description="Score a checkpoint (or an anchor) on a prompt suite with the oracle.")
    p.add_argument("--ckpt", type=str | None, default=None, help="checkpoint to evaluate (needed for --suite t2i)")
    p.add_argument("--suite", type=str, default="t2i", help=f"image source: {', '.join(SOURCES)}")
    p.add_argument(
        "--prompts",
        type=str,
        default="t2i",
        help="a shipped prompt suite by name, or a prompt file: one prompt a line (.txt) or JSON lines with 'prompt' and optional 'category' (.jsonl)",
    )
    p.add_argument("--version", type=int, default=1, help="suite version")
    p.add_argument("--task", type=str | None, default=None, help="the evaluation you expect the checkpoint's task to run: t2i or joint (every direction)")
    p.add_argument("--num-scenes", type=PositiveInt, default=128, help="a joint model: test scenes captioned, and joint / marginal samples drawn")
    p.add_argument("--images-per-prompt", type=PositiveInt, default=1, help="images generated per prompt")
    p.add_argument("--per-category", type=PositiveInt | None, default=None, help="only the first N prompts of each category")
    p.add_argument("--image-size", type=PositiveInt | None, default=None, help="anchor image size (the checkpoint's, else 32)")
    p.add_argument("--batch-size", type=PositiveInt, default=64, help="prompts per generation batch")
    add_model_arguments(p, "generate")
    p.add_argument("--out", type=str, default="results.json", help="output JSON path")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.task not in (None, "t2i", "joint"):
        print(f"error: unknown --task {args.task!r}; choose t2i or joint", file=sys.stderr)
        return 2
    if args.suite not in SOURCES:
        print(f"error: unknown --suite {args.suite!r}; choose one of {', '.join(SOURCES)}", file=sys.stderr)
        return 2
    problems: list[str] = []
    is_file = Path(args.prompts).suffix in (".txt", ".jsonl") or Path(args.prompts).is_file()
    try:
        if is_file:
            entries, problems = load_prompt_file(args.prompts)
            entries = subset(entries, args.per_category)
        else:
            entries = subset(load_suite(args.prompts, args.version), args.per_category)
    except (FileNotFoundError, PromptFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if is_file and args.suite == "gt":
        print("error: --suite gt renders a suite's own scenes; a prompt file has none (use --suite t2i --ckpt CKPT, or --suite noise)", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"skipped {args.prompts} {problem}", file=sys.stderr)
    started = time.perf_counter()
    suite_name = str(args.prompts) if is_file else f"{args.prompts}_v{args.version}"
    meta = {"source": args.suite, "suite": suite_name, "images_per_prompt": args.images_per_prompt, "seed": args.seed}
    if problems:
        meta["skipped_prompts"] = problems
    if args.suite == "t2i":
        if args.ckpt is None:
            print("error: --suite t2i needs --ckpt (or use --suite gt / --suite noise for the anchors)", file=sys.stderr)
            return 2
        module = load_task(args)
        if module is None:
            return 2
        if args.task is not None and args.task != module.evaluation:
            name = getattr(type(module), "registry_name", type(module).__name__)
            print(
                f"error: --task {args.task}: {args.ckpt} holds a {name} model ({type(module).__name__}), whose evaluation is {module.evaluation}",
                file=sys.stderr,
            )
            return 2
        meta.update(checkpoint=str(args.ckpt))
        settings = EvaluationSettings(args.images_per_prompt, args.batch_size, args.seed, args.guidance, args.steps, args.num_scenes, progress=True)
        results = module.evaluate(entries, settings)
        return write_results(
            {**meta, **results, "seconds": round(time.perf_counter() - started, 1)}, args.out, f"{module.evaluation}: {module.summarize(results)}"
        )
    if args.task == "joint":
        print("error: --task joint evaluates a checkpoint: pass --ckpt CKPT (the anchors --suite gt / noise are text-to-image only)", file=sys.stderr)
        return 2
    size = args.image_size or 32
    images = anchor_images(entries, args.suite, size, args.images_per_prompt, args.seed)
    meta.update(image_size=size)
    results = {**meta, **score_images(entries, images, progress=True), "seconds": round(time.perf_counter() - started, 1)}
    return write_results(results, args.out, f"{args.suite}: {DiffusionTask.summarize(results)}")


def write_results(results: dict, out: str, line: str) -> int:
    """Write `results` as JSON to `out` and print `line -> out`."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{line} -> {path}")
    return 0
