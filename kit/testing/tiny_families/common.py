"""What every tiny family shares: sizes, the tokenizer trained on the shapes world's captions, the chat
template in a family's layout, and the text and vision configs (see `kit.testing.tiny_families`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kit.vlm.tiny import caption_corpus, train_tokenizer

FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl", "idefics3", "llava", "paligemma", "gemma3", "qwen2", "bert")
IMAGE_FAMILIES: tuple[str, ...] = FAMILIES[:8]

TOKENIZER_SCENES = 100
"""Scenes whose captions (about 400 sentences) train every family's tokenizer."""
TOKENIZER_VOCAB = 1024
"""BPE target vocabulary (before PaliGemma's 1,152 location/segmentation tokens)."""

VISION_WIDTH = 32
VISION_DEPTH = 2
VISION_HEADS = 2
PATCH = 8
"""Vision patch side in pixels (Qwen: before the 2x2 merge)."""
TILE = 32
"""Side of the square image / tile the fixed-resolution towers see (InternVL, Idefics3, LLaVA, PaliGemma, Gemma 3)."""
TOKENS_PER_TILE = (TILE // PATCH) ** 2 // 4
"""Image tokens per tile after a 2x2 pixel shuffle / pooling (4)."""
QWEN_MIN_PIXELS = 16 * 16
QWEN_MAX_PIXELS = 64 * 64
"""Qwen pixel budget: a 32x32 image gives 4 image tokens, a 64x64 one 16."""


@dataclass(frozen=True)
class Dims:
    """Text-decoder sizes shared by every family: `num_layers` layers, `hidden_size` wide, 16-wide heads."""

    num_layers: int
    hidden_size: int

    @property
    def heads(self) -> int:
        """Attention heads (head_dim 16 where the width allows)."""
        return max(1, self.hidden_size // 16)

    @property
    def head_dim(self) -> int:
        """Per-head width."""
        return self.hidden_size // self.heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads (grouped-query attention with 2 queries per key where possible)."""
        return max(1, self.heads // 2)


# ---------------------------------------------------------------- shared pieces


@lru_cache(maxsize=4)
def corpus(seed: int) -> tuple[str, ...]:
    return tuple(caption_corpus(TOKENIZER_SCENES, seed))


def chat_template(*, image: str, turn_start: str = "", turn_end: str = "", generation: str = "", prefix: str = "") -> str:
    """A small Jinja chat template: per message `turn_start`, its images, its texts, `turn_end`.

    transformers renders templates with `trim_blocks`, which drops a newline that directly
    follows a block tag: write such a newline as `{{ '\\n' }}` (see LLaVA's `turn_end`).

    Args:
        image: what one `{"type": "image"}` item renders as (the processor's placeholder).
        turn_start: Jinja opening each message (may use `m['role']`).
        turn_end: Jinja closing each message.
        generation: what `add_generation_prompt=True` appends.
        prefix: Jinja rendered once before the first message (e.g. `{{ bos_token }}`).
    """
    return (
        prefix + "{% for m in messages %}" + turn_start + "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] if c['type'] == 'image' %}" + image + "{% endfor %}"
        "{% for c in m['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}"
        "{% endif %}" + turn_end + "{% endfor %}{% if add_generation_prompt %}" + generation + "{% endif %}"
    )


CHATML = dict(turn_start="<|im_start|>{{ m['role'] }}\n", turn_end="<|im_end|>\n", generation="<|im_start|>assistant\n")
"""ChatML turns (Qwen, InternVL)."""
CHATML_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_NAMED = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>")
GEMMA_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]
GEMMA_NAMED = dict(pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>")


def family_tokenizer(seed: int, special_tokens: list[str], template: str | None, **named: Any):
    return train_tokenizer(list(corpus(seed)), TOKENIZER_VOCAB, special_tokens=special_tokens, chat_template=template, **named)


def token_ids(tokenizer, **tokens: str) -> dict[str, int]:
    """`{name: id}` for special tokens that must exist (raises on a missing one)."""
    out = {}
    for name, token in tokens.items():
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id:
            raise KeyError(f"{token!r} is not in the tokenizer")
        out[name] = i
    return out


def text_config(tokenizer, d: Dims, **extra: Any) -> dict:
    """Decoder config kwargs common to all families; `extra` overrides."""
    cfg = dict(
        vocab_size=len(tokenizer),
        hidden_size=d.hidden_size,
        intermediate_size=2 * d.hidden_size,
        num_hidden_layers=d.num_layers,
        num_attention_heads=d.heads,
        num_key_value_heads=d.kv_heads,
        head_dim=d.head_dim,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    cfg.update(extra)
    return cfg


def vit_config(**extra: Any) -> dict:
    """ViT config kwargs (CLIP / SigLIP / Idefics3 / InternVL naming) for a 32x32 tile of 8x8 patches."""
    cfg = dict(
        hidden_size=VISION_WIDTH,
        intermediate_size=2 * VISION_WIDTH,
        num_hidden_layers=VISION_DEPTH,
        num_attention_heads=VISION_HEADS,
        image_size=TILE,
        patch_size=PATCH,
    )
    cfg.update(extra)
    return cfg


# ---------------------------------------------------------------- Qwen-VL (three generations)
