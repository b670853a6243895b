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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
def _corpus(seed: int) -> tuple[str, ...]:
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


def _tokenizer(seed: int, special_tokens: list[str], template: str | None, **named: Any):
    return train_tokenizer(list(_corpus(seed)), TOKENIZER_VOCAB, special_tokens=special_tokens, chat_template=template, **named)


def _ids(tokenizer, **tokens: str) -> dict[str, int]:
    """`{name: id}` for special tokens that must exist (raises on a missing one)."""
    out = {}
    for name, token in tokens.items():
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id:
            raise KeyError(f"{token!r} is not in the tokenizer")
        out[name] = i
    return out


def _text(tokenizer, d: Dims, **extra: Any) -> dict:
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


def _vit(**extra: Any) -> dict:
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

QWEN_VL_TOKENS = [*CHATML_TOKENS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def _qwen_vl(seed: int, d: Dims, *, generation: str, vision: dict, rope: dict, patch: int) -> tuple[Any, Any]:
    """Shared Qwen2-VL / Qwen2.5-VL / Qwen3-VL builder; `generation` picks the classes."""
    import transformers as tf

    cls = {
        "qwen2_vl": (tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor, tf.Qwen2VLVideoProcessor),
        "qwen2_5_vl": (tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor, tf.Qwen2VLVideoProcessor),
        "qwen3_vl": (tf.Qwen3VLConfig, tf.Qwen3VLForConditionalGeneration, tf.Qwen3VLProcessor, tf.Qwen3VLVideoProcessor),
    }
    config_cls, model_cls, processor_cls, video_cls = cls[generation]
    template = chat_template(image="<|vision_start|><|image_pad|><|vision_end|>", **CHATML)
    tok = _tokenizer(
        seed,
        QWEN_VL_TOKENS,
        template,
        **CHATML_NAMED,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    pixels = dict(patch_size=patch, merge_size=2, temporal_patch_size=2, min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS)
    processor = processor_cls(
        image_processor=tf.Qwen2VLImageProcessor(**pixels),
        video_processor=video_cls(**pixels),
        tokenizer=tok,
        chat_template=template,
    )
    half = d.head_dim // 2  # M-RoPE splits head_dim/2 frequencies over (time, height, width)
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [half - 2 * (half // 3), half // 3, half // 3], **rope}
    ids = _ids(
        tok, image_token_id="<|image_pad|>", video_token_id="<|video_pad|>", vision_start_token_id="<|vision_start|>", vision_end_token_id="<|vision_end|>"
    )
    vision = dict(depth=VISION_DEPTH, num_heads=VISION_HEADS, patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, **vision)
    config = config_cls(text_config=_text(tok, d, rope_parameters=rope), vision_config=vision, **ids)
    return model_cls(config), processor


def _qwen2_vl(seed: int, d: Dims) -> tuple[Any, Any]:
    """Qwen2-VL: ViT with `embed_dim`, merger to the text width, M-RoPE."""
    return _qwen_vl(seed, d, generation="qwen2_vl", vision=dict(embed_dim=VISION_WIDTH, hidden_size=d.hidden_size, mlp_ratio=2), rope={}, patch=PATCH)


def _qwen2_5_vl(seed: int, d: Dims) -> tuple[Any, Any]:
    """Qwen2.5-VL: windowed ViT (one window layer, one full layer), merger to `out_hidden_size`."""
    vision = dict(
        hidden_size=VISION_WIDTH,
        intermediate_size=2 * VISION_WIDTH,
        out_hidden_size=d.hidden_size,
        window_size=2 * 2 * PATCH,  # 2x2 merged units per window
        fullatt_block_indexes=[VISION_DEPTH - 1],
    )
    return _qwen_vl(seed, d, generation="qwen2_5_vl", vision=vision, rope={}, patch=PATCH)


def _qwen3_vl(seed: int, d: Dims) -> tuple[Any, Any]:
    """Qwen3-VL: learned position grid, DeepStack features from the first vision layer, interleaved M-RoPE."""
    vision = dict(
        hidden_size=VISION_WIDTH,
        intermediate_size=2 * VISION_WIDTH,
        out_hidden_size=d.hidden_size,
        num_position_embeddings=16,  # a 4x4 grid, interpolated to the image's patch grid
        deepstack_visual_indexes=[0],
    )
    return _qwen_vl(seed, d, generation="qwen3_vl", vision=vision, rope={"mrope_interleaved": True}, patch=PATCH)


# ---------------------------------------------------------------- InternVL (transformers-native port)


def _internvl(seed: int, d: Dims) -> tuple[Any, Any]:
    """InternVL 3 (HF port): InternViT tiles of 32x32 (up to 4 crops + thumbnail), pixel shuffle, Qwen2 decoder."""
    import transformers as tf

    template = chat_template(image="<IMG_CONTEXT>\n", **CHATML)
    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
    tok = _tokenizer(seed, [*CHATML_TOKENS, *named.values()], template, **CHATML_NAMED, extra_special_tokens=named)
    image_processor = tf.GotOcr2ImageProcessor(size={"height": TILE, "width": TILE}, crop_to_patches=True, min_patches=1, max_patches=4)
    video_processor = tf.InternVLVideoProcessor(size={"height": TILE, "width": TILE})
    processor = tf.InternVLProcessor(
        image_processor=image_processor, video_processor=video_processor, tokenizer=tok, image_seq_length=TOKENS_PER_TILE, chat_template=template
    )
    config = tf.InternVLConfig(
        vision_config=_vit(image_size=[TILE, TILE], patch_size=[PATCH, PATCH]),
        text_config=dict(model_type="qwen2", **_text(tok, d)),
        image_seq_length=TOKENS_PER_TILE,
        downsample_ratio=0.5,
        **_ids(tok, image_token_id="<IMG_CONTEXT>"),
    )
    return tf.InternVLForConditionalGeneration(config), processor


# ---------------------------------------------------------------- Idefics3 / SmolVLM


def _idefics3(seed: int, d: Dims) -> tuple[Any, Any]:
    """Idefics3 (SmolVLM layout): images resized to 64 px, split into 32 px tiles + a global view, Llama decoder."""
    import transformers as tf

    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    template = chat_template(
        image="<image>", turn_start="<|im_start|>{{ m['role'] | capitalize }}:", turn_end="<end_of_utterance>\n", generation="<|im_start|>Assistant:"
    )
    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>", *grid]
    tok = _tokenizer(
        seed,
        special,
        template,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = tf.Idefics3ImageProcessor(size={"longest_edge": 2 * TILE}, max_image_size={"longest_edge": TILE}, do_image_splitting=True)
    processor = tf.Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=TOKENS_PER_TILE, chat_template=template)
    config = tf.Idefics3Config(
        vision_config=_vit(), text_config=dict(model_type="llama", **_text(tok, d)), scale_factor=2, **_ids(tok, image_token_id="<image>")
    )
    return tf.Idefics3ForConditionalGeneration(config), processor


# ---------------------------------------------------------------- LLaVA 1.5


def _llava(seed: int, d: Dims) -> tuple[Any, Any]:
    """LLaVA 1.5: CLIP ViT (CLS dropped, penultimate layer), MLP projector, Llama decoder; 16 image tokens."""
    import transformers as tf

    template = chat_template(
        image="<image>\n", prefix="{{ bos_token }}", turn_start="{{ m['role'] | upper }}: ", turn_end="{{ '\\n' }}", generation="ASSISTANT:"
    )
    tok = _tokenizer(
        seed,
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        template,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = tf.LlavaImageProcessor(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE})
    processor = tf.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )
    config = tf.LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", projection_dim=VISION_WIDTH, **_vit()),
        text_config=dict(model_type="llama", **_text(tok, d)),
        image_seq_length=(TILE // PATCH) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        **_ids(tok, image_token_index="<image>"),
    )
    return tf.LlavaForConditionalGeneration(config), processor


# ---------------------------------------------------------------- PaliGemma


def _paligemma(seed: int, d: Dims) -> tuple[Any, Any]:
    """PaliGemma: SigLIP (16 image tokens), linear projector, Gemma decoder with a bidirectional prefix.

    The processor adds 1,152 `<locXXXX>`/`<segXXX>` tokens to the tokenizer, so it is built
    before the vocabulary is sized; it also inserts `<bos>` after the images and `\\n` after the prompt.
    """
    import transformers as tf

    template = chat_template(image="<image>")
    tok = _tokenizer(seed, [*GEMMA_TOKENS, "<image>"], template, **GEMMA_NAMED, extra_special_tokens={"image_token": "<image>"})
    image_processor = tf.SiglipImageProcessor(size={"height": TILE, "width": TILE})
    image_processor.image_seq_length = (TILE // PATCH) ** 2
    processor = tf.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok, chat_template=template)
    text = _text(tok, d, model_type="gemma")  # after the processor: len(tok) counts the location tokens
    config = tf.PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", projection_dim=d.hidden_size, **_vit()),
        text_config=text,
        projection_dim=d.hidden_size,
        hidden_size=d.hidden_size,
        vocab_size=len(tok),
        **_ids(tok, image_token_index="<image>"),
    )
    return tf.PaliGemmaForConditionalGeneration(config), processor


# ---------------------------------------------------------------- Gemma 3


def _gemma3(seed: int, d: Dims) -> tuple[Any, Any]:
    """Gemma 3: SigLIP (16 patches average-pooled to 4 soft tokens), Gemma 3 decoder with sliding-window layers."""
    import transformers as tf

    template = chat_template(
        image="<start_of_image>",
        prefix="{{ bos_token }}",
        turn_start="<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n",
        turn_end="<end_of_turn>\n",
        generation="<start_of_turn>model\n",
    )
    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = _tokenizer(seed, [*GEMMA_TOKENS, "<start_of_turn>", "<end_of_turn>", *named.values()], template, **GEMMA_NAMED, extra_special_tokens=named)
    image_processor = tf.Gemma3ImageProcessor(size={"height": TILE, "width": TILE}, do_pan_and_scan=False)
    processor = tf.Gemma3Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=TOKENS_PER_TILE, chat_template=template)
    text = _text(tok, d, query_pre_attn_scalar=d.head_dim, sliding_window=64)
    config = tf.Gemma3Config(
        vision_config=dict(model_type="siglip_vision_model", **_vit()),
        text_config=text,
        mm_tokens_per_image=TOKENS_PER_TILE,
        **_ids(tok, image_token_index="<image_soft_token>", boi_token_index="<start_of_image>", eoi_token_index="<end_of_image>"),
    )
    return tf.Gemma3ForConditionalGeneration(config), processor


# ---------------------------------------------------------------- text-only


def _qwen2(seed: int, d: Dims) -> tuple[Any, Any]:
    """A ChatML decoder LLM (Qwen2ForCausalLM); image items in the chat are ignored."""
    import transformers as tf

    template = chat_template(image="", **CHATML)
    tok = _tokenizer(seed, CHATML_TOKENS, template, **CHATML_NAMED)
    return tf.Qwen2ForCausalLM(tf.Qwen2Config(**_text(tok, d))), tok


def _bert(seed: int, d: Dims) -> tuple[Any, Any]:
    """An all-MiniLM-like BERT encoder (BertModel); the tokenizer wraps every text in `[CLS] ... [SEP]`."""
    import transformers as tf
    from tokenizers import processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    cls_sep = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", special.index("[CLS]")), ("[SEP]", special.index("[SEP]"))]
    )
    tok = _tokenizer(
        seed, special, None, post_processor=cls_sep, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    config = tf.BertConfig(
        vocab_size=len(tok),
        hidden_size=d.hidden_size,
        num_hidden_layers=d.num_layers,
        num_attention_heads=d.heads,
        intermediate_size=4 * d.hidden_size,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    return tf.BertModel(config, add_pooling_layer=True), tok


_BUILDERS: dict[str, Callable[[int, Dims], tuple[Any, Any]]] = {
    "qwen2_vl": _qwen2_vl,
    "qwen2_5_vl": _qwen2_5_vl,
    "qwen3_vl": _qwen3_vl,
    "internvl": _internvl,
    "idefics3": _idefics3,
    "llava": _llava,
    "paligemma": _paligemma,
    "gemma3": _gemma3,
    "qwen2": _qwen2,
    "bert": _bert,
}
assert tuple(_BUILDERS) == FAMILIES


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
    if family not in _BUILDERS:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    out = Path(out)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model, processor = _BUILDERS[family](seed, Dims(num_layers=num_layers, hidden_size=hidden_size))
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out
