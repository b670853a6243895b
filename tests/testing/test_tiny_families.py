"""The tiny model families: each builds offline, reloads with the Auto classes, runs a chat prompt
(with one image for the VLMs) through its processor and model, and generates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kit.testing.tiny_families import FAMILIES, IMAGE_FAMILIES, build_tiny_family
from tests.parts_for_tests import TINY_HIDDEN as HIDDEN
from tests.parts_for_tests import TINY_LAYERS as NUM_LAYERS

PROMPT = "Describe the image in detail."


def _load(family: str, path: Path):
    """(processor or tokenizer, tokenizer, model), each through its Auto class."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    if family in IMAGE_FAMILIES:
        processor = AutoProcessor.from_pretrained(path)
        return processor, processor.tokenizer, AutoModelForImageTextToText.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model_cls = AutoModel if family == "bert" else AutoModelForCausalLM
    return tokenizer, tokenizer, model_cls.from_pretrained(path).eval()


def _inputs(family: str, processor, tokenizer) -> dict:
    """The processor's tensors for a one-turn chat: one 32x32 image (VLMs) and `PROMPT`."""
    if family == "bert":
        return dict(tokenizer(PROMPT, return_tensors="pt"))
    content = [{"type": "text", "text": PROMPT}]
    if family in IMAGE_FAMILIES:
        content.insert(0, {"type": "image"})
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    assert PROMPT in text
    if family not in IMAGE_FAMILIES:
        return dict(tokenizer(text, return_tensors="pt"))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    inputs = dict(processor(text=text, images=image, return_tensors="pt"))
    inputs.pop("labels", None)  # PaliGemma's processor adds training labels
    return inputs


def _contains(seq: list[int], sub: list[int]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_family_names():
    assert FAMILIES == ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl", "idefics3", "llava", "paligemma", "gemma3", "qwen2", "bert")
    assert IMAGE_FAMILIES == FAMILIES[:8]


def test_unknown_family(tmp_path):
    with pytest.raises(KeyError, match="qwen2_vl.*bert"):
        build_tiny_family("gpt5", tmp_path)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_reloads_and_runs(family, tiny_family):
    from tokenizers import Tokenizer

    path = tiny_family(family)
    processor, tokenizer, model = _load(family, path)

    # The reloaded tokenizer encodes like the trained BPE it was saved from.
    raw = Tokenizer.from_file(str(path / "tokenizer.json"))
    for s in (PROMPT, "a red  circle, 12 squares\n\n don't"):
        assert tokenizer(s, add_special_tokens=False)["input_ids"] == raw.encode(s, add_special_tokens=False).ids
    assert model.config.get_text_config().vocab_size == len(tokenizer)

    inputs = _inputs(family, processor, tokenizer)
    ids = inputs["input_ids"]
    if family in IMAGE_FAMILIES:
        assert int((ids == model.config.image_token_id).sum()) > 0
    # The prompt's ids appear unchanged inside the full sequence (special tokens bound the text).
    assert _contains(ids[0].tolist(), tokenizer(PROMPT, add_special_tokens=False)["input_ids"])

    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    assert len(out.hidden_states) == NUM_LAYERS + 1
    assert all(h.shape == (1, ids.shape[1], HIDDEN) for h in out.hidden_states)
    assert all(torch.isfinite(h).all() for h in out.hidden_states)

    if family != "bert":
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert generated.shape == (1, ids.shape[1] + 3)


def test_image_tokens_grow_with_the_image(tiny_family):
    """Pixel budgets and tiling: qwen2_vl and internvl give a 64x64 image more image tokens than a 32x32
    one (dynamic resolution, tiles); idefics3 resizes both to its one fixed-size tile, so equal counts."""
    from transformers import AutoProcessor

    for family in ("qwen2_vl", "internvl", "idefics3"):
        processor = AutoProcessor.from_pretrained(tiny_family(family))
        text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}], tokenize=False)
        image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
        counts = [int((processor(text=text, images=Image.new("RGB", (side, side)), return_tensors="pt")["input_ids"] == image_id).sum()) for side in (32, 64)]
        if family == "idefics3":
            assert 0 < counts[0] == counts[1], (family, counts)
        else:
            assert 0 < counts[0] < counts[1] <= 64, (family, counts)
