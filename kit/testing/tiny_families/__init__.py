"""Tiny, randomly initialised Hugging Face models of the VLM (and text) families the kit targets.

Code that consumes real checkpoints (encoders, hooks, prompt-span bookkeeping) must be tested
against every family's quirks: its processor, its image-token expansion, its extra forward
inputs. Real checkpoints cannot be downloaded here, so `build_tiny_family` builds a stand-in for
each family fully offline in a few seconds: a byte-level BPE tokenizer trained on the shapes
world's captions (every image/control token of the family is a special token), a small Jinja
chat template in the family's layout (image placeholders before the text), the family's own
processor classes with pixel budgets / tile sizes that turn a 32x32 or 64x64 image into a
handful of image tokens, and a model config with `num_layers` text layers of width
`hidden_size` and a 2-layer, 32-wide vision tower. Everything is saved with `save_pretrained`,
so the usual Auto classes reload it:

    path = build_tiny_family("qwen2_vl", tmp / "qwen2_vl")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)

The tokenizers never add BOS/EOS on their own (BERT's adds `[CLS]`/`[SEP]`); the templates of
LLaVA and Gemma 3 render `bos_token` themselves and PaliGemma's processor inserts it.

One module per family (`qwen`, `internvl`, `idefics3`, `llava`, `gemma`, `bert`) on what they share (`common`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kit.testing.tiny_families.bert import bert
from kit.testing.tiny_families.common import FAMILIES, IMAGE_FAMILIES, Dims
from kit.testing.tiny_families.gemma import gemma3, paligemma
from kit.testing.tiny_families.idefics3 import idefics3
from kit.testing.tiny_families.internvl import internvl
from kit.testing.tiny_families.llava import llava
from kit.testing.tiny_families.qwen import qwen2, qwen2_5_vl, qwen2_vl, qwen3_vl

__all__ = ["BUILDERS", "FAMILIES", "IMAGE_FAMILIES", "build_tiny_family"]

BUILDERS: dict[str, Callable[[int, Dims], tuple[Any, Any]]] = {
    "qwen2_vl": qwen2_vl,
    "qwen2_5_vl": qwen2_5_vl,
    "qwen3_vl": qwen3_vl,
    "internvl": internvl,
    "idefics3": idefics3,
    "llava": llava,
    "paligemma": paligemma,
    "gemma3": gemma3,
    "qwen2": qwen2,
    "bert": bert,
}
assert tuple(BUILDERS) == FAMILIES


def build_tiny_family(family: str, out: str | Path, *, seed: int = 0, num_layers: int = 4, hidden_size: int = 64) -> Path:
    """Build and save the tiny model + processor/tokenizer of `family` into `out`; return `out`.

    Args:
        family: one of `FAMILIES`.
        out: target directory (created); receives the config, weights, tokenizer, processor
            configs and chat template, loadable with the Auto classes.
        seed: weight-initialisation and tokenizer-corpus seed.
        num_layers: text decoder (or encoder, for BERT) depth.
        hidden_size: text width (a multiple of 16 keeps head_dim at 16).

    Raises:
        KeyError: for an unknown family (the message lists the known ones).
    """
    if family not in BUILDERS:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    out = Path(out)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model, processor = BUILDERS[family](seed, Dims(num_layers=num_layers, hidden_size=hidden_size))
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out
