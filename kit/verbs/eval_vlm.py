"""`python -m kit eval-vlm [--model kit:shapes-vlm] [--n 200] --out vlm.json`: score a VLM on held-out scenes.

Generates greedily and scores exactly with the world's parser (`kit.vlm.evaluate`):
description exact-scene accuracy and per-attribute accuracy, question answering per kind,
rewrite consistency per prompt register and on the text-to-image suite's prompts, and
edit accuracy per edit kind. Every scene is from the held-out split, never trained on.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser

from kit.verbs.parsing import VerbParser
from kit.vlm.tasks import REWRITE_SYSTEM_PROMPT, TASKS, Conversation, make_conversation
from kit.world.suites import load_suite

HELP = "score a VLM on held-out scenes (descriptions, QA, rewrites, edits): [--model kit:shapes-vlm] --out vlm.json"


def parser() -> ArgumentParser:
    p = VerbParser(prog="python -m kit eval-vlm", description="Score a shapes VLM on held-out scenes: descriptions, QA, rewrites, edits.")
    p.add_argument("--model", type=str, default="kit:shapes-vlm", help="model name, path or kit:<asset> (a Qwen2-VL trained on the shapes world)")
    p.add_argument("--n", type=int, default=200, help="held-out conversations per task")
    p.add_argument("--suite", type=bool, default=True, help="also score rewrites of every prompt of the t2i suite")
    p.add_argument("--seed", type=int, default=1, help="seed of the held-out conversations")
    p.add_argument("--image-size", type=int | None, default=None, help="render side (the processor's pixel budget when omitted)")
    p.add_argument("--batch-size", type=int, default=64, help="conversations per generation batch")
    p.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu", help="device to generate on")
    p.add_argument("--out", type=str, default="vlm.json", help="output JSON path")
    return p


def held_out_conversations(n: int, seed: int, image_size: int = 32) -> list[Conversation]:
    """`n` conversations of every task, all on held-out scenes."""
    rng = np.random.default_rng([seed, 13])
    return [make_conversation(task, rng, image_size, held_out=True) for task in TASKS for _ in range(n)]


def native_size(processor) -> int:
    """The side of the square images a Qwen-VL processor keeps at their size (its pixel budget)."""
    size = processor.image_processor.size
    return int(round(size["longest_edge"] ** 0.5))


def suite_rewrites() -> list[Conversation]:
    """Rewrite conversations for every prompt of the t2i suite (the prompts text-to-image is scored on)."""
    return [Conversation("rewrite", e.prompt, "", system=REWRITE_SYSTEM_PROMPT, scene=e.scene, kind=f"suite/{e.category}") for e in load_suite("t2i", 1)]


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from kit.encoders.frozen import resolve_model_path
    from kit.vlm.evaluate import evaluate_vlm

    try:
        path = resolve_model_path(args.model)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).to(args.device).eval()
    conversations = held_out_conversations(args.n, args.seed, args.image_size or native_size(processor))
    results, _ = evaluate_vlm(model, processor, conversations, batch_size=args.batch_size)
    if args.suite:
        suite = suite_rewrites()
        suite_scores, _ = evaluate_vlm(model, processor, suite, batch_size=args.batch_size)
        results["rewrite_suite"] = suite_scores["rewrite"]
    from kit.analysis.provenance import command_line, commit
    from kit.encoders.frozen import weights_digest

    provenance = {"command": command_line("-m kit eval-vlm", argv), "commit": commit(), "weights": weights_digest(path, None)}
    results = {"model": args.model, "per_task": args.n, "seed": args.seed, **results, "seconds": round(time.perf_counter() - started, 1), **provenance}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    line = [
        f"describe exact {results['describe']['exact']:.3f}",
        f"qa {results['qa']['accuracy']:.3f}",
        f"rewrite {results['rewrite']['consistency']:.3f}",
        f"edit {results['edit']['exact']:.3f}",
    ]
    if args.suite:
        line.append(f"suite rewrite {results['rewrite_suite']['consistency']:.3f}")
    print(f"{args.model}: " + "  ".join(line) + f" -> {out}")
    return 0
