"""Score the shapes VLM exactly with the world's parser: descriptions, answers, rewrites, edits.

describe  the description parses to the exact scene (exact-scene accuracy), and per
          attribute: count, and for each true object the shape, colour and size of the
          described object in its cell, and whether its cell is described at all
qa        the answer equals the true answer, per question kind
rewrite   the rewrite parses to a complete scene that satisfies the prompt (consistency),
          per prompt register; also on the text-to-image suite's prompts
edit      the description of the edited scene is exact, per edit kind
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from kit.vlm.model import encode
from kit.vlm.tasks import Conversation
from kit.world.parser import CaptionParseError, parse_caption
from kit.world.scene import Scene, SceneObject
from kit.world.spec import SceneSpec


def spec_to_scene(spec: SceneSpec) -> Scene:
    """A complete specification (every object with shape, colour, size and cell) -> the scene it fixes."""
    objects = []
    for o in spec.objects:
        if None in (o.shape, o.colour, o.size, o.cell):
            raise ValueError(f"the description leaves an attribute of {o} open")
        objects += [SceneObject(o.shape, o.colour, o.size, *o.cell)] * o.count
    return Scene(tuple(objects))


def read_description(text: str) -> Scene | None:
    """The scene a generated description fixes, or None when it does not parse to a complete scene."""
    try:
        return spec_to_scene(parse_caption(text))
    except (CaptionParseError, ValueError):
        return None


@torch.no_grad()
def generate(model, processor, conversations: Sequence[Conversation], *, max_new_tokens: int = 72, batch_size: int = 64) -> list[str]:
    """Greedy answers of `model` to the conversations (their answers are not shown to it)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs: list[str] = []
    tokenizer = processor.tokenizer
    for start in range(0, len(conversations), batch_size):
        batch = encode(processor, list(conversations[start : start + batch_size]), with_answer=False)
        batch = {k: v.to(device) for k, v in batch.items()}
        ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new = ids[:, batch["input_ids"].shape[1] :]
        outputs += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    model.train(was_training)
    return outputs


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def score(conversations: Sequence[Conversation], outputs: Sequence[str]) -> dict:
    """Per-task scores (see the module docstring) of `outputs` for `conversations`."""
    hits: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for conv, out in zip(conversations, outputs, strict=True):
        h = hits[conv.task]
        if conv.task == "qa":
            ok = float(out == conv.answer)
            h["accuracy"].append(ok)
            h[f"kind/{conv.kind}"].append(ok)
            continue
        read = read_description(out)
        h["parsed"].append(float(read is not None))
        if conv.task == "rewrite":
            ok = float(read is not None and parse_caption(conv.user).satisfied_by(read))
            h["consistency"].append(ok)
            h[f"kind/{conv.kind}"].append(ok)
            continue
        ok = float(read is not None and read.facts() == conv.scene.facts())
        h["exact"].append(ok)
        h[f"kind/{conv.kind}"].append(ok)
        if conv.task == "describe":
            cells = {o.cell: o for o in read.objects} if read is not None else {}
            h["attr/count"].append(float(read is not None and len(read) == len(conv.scene)))
            for true in conv.scene.objects:
                got = cells.get(true.cell)
                h["attr/position"].append(float(got is not None))
                for attr in ("shape", "colour", "size"):
                    h[f"attr/{attr}"].append(float(got is not None and getattr(got, attr) == getattr(true, attr)))
    return {task: {k: _mean(v) for k, v in sorted(h.items())} | {"n": len(next(iter(h.values())))} for task, h in hits.items()}


def evaluate_vlm(model, processor, conversations: Sequence[Conversation], **kwargs) -> tuple[dict, list[str]]:
    """Generate and score; returns the scores and the raw outputs."""
    outputs = generate(model, processor, conversations, **kwargs)
    return score(conversations, outputs), outputs
