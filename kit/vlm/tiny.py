"""A tiny Qwen2-VL-architecture VLM for the shapes world, built offline from a config.

`build_tiny_vlm` trains a byte-level BPE tokenizer on the world's captions (every chat and
vision control token is a special token), sizes a Qwen2-VL config to it, initialises the
weights from a seed and saves model + tokenizer in Hugging Face format, so that
`FrozenEncoder` loads it with the same Auto classes it uses for real checkpoints.

The kit ships the result under `kit/assets/`; recipes refer to it as `kit:<name>`
(see `kit.encoders.resolve_model_path`). Rebuild it with
`python -m kit build-tiny-vlm --out kit/assets/shapes-vlm-random`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kit.world import STYLES, caption, sample_scene, scene_rng

if TYPE_CHECKING:
    from tokenizers.processors import PostProcessor

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, as Qwen uses it; images become vision start / pad / end."""

WORLD_SPLIT_TOKENIZER = 7
"""Scene split used for the tokenizer corpus (disjoint from training and validation)."""


def caption_corpus(num_scenes: int, seed: int = 0) -> list[str]:
    """Captions of every register for `num_scenes` scenes: the tokenizer's training text."""
    texts = []
    for i in range(num_scenes):
        rng = scene_rng(seed, WORLD_SPLIT_TOKENIZER, i)
        scene = sample_scene(rng)
        texts.extend(caption(scene, style, rng) for style in STYLES)
    texts += ["system", "user", "assistant", "Describe the image in detail.", "Rewrite the prompt as a detailed description."]
    return texts


def train_tokenizer(
    texts: list[str],
    vocab_size: int = 1024,
    *,
    special_tokens: list[str] | None = None,
    chat_template: str | None = CHAT_TEMPLATE,
    post_processor: PostProcessor | None = None,
    **named_tokens: Any,
):
    """A byte-level BPE tokenizer wrapped for transformers, with the chat template set.

    With only `texts` and `vocab_size` it is the Qwen ChatML tokenizer of the shipped tiny VLM.

    Args:
        texts: training sentences.
        vocab_size: BPE target vocabulary size (special tokens included).
        special_tokens: every control token, each kept whole as a special token; defaults to
            `SPECIAL_TOKENS` (Qwen's), and then `named_tokens` default to Qwen's too.
        chat_template: Jinja chat template stored on the tokenizer (None: none).
        post_processor: optional `tokenizers` post-processor (e.g. BERT's `[CLS] $A [SEP]`).
        **named_tokens: `PreTrainedTokenizerFast` keyword arguments naming special tokens
            (`bos_token`, `eos_token`, `pad_token`, `extra_special_tokens={...}`, ...).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if special_tokens is None:
        special_tokens = SPECIAL_TOKENS
        named_tokens = named_tokens or dict(
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    if post_processor is not None:
        bpe.post_processor = post_processor
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **named_tokens)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def tiny_qwen2_vl_config(tokenizer, *, hidden_size: int = 128, num_layers: int = 8, num_heads: int = 4):
    """A Qwen2-VL config sized for the shapes world, with token ids taken from `tokenizer`.

    Args:
        tokenizer: supplies the vocabulary size and the special-token ids.
        hidden_size: text width (also the vision merger's output width).
        num_layers: text decoder depth.
        num_heads: text attention heads (head_dim = hidden_size / num_heads).
    """
    from transformers import Qwen2VLConfig

    head_dim = hidden_size // num_heads
    half = head_dim // 2  # M-RoPE splits head_dim/2 frequencies over (time, height, width)
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(depth=2, embed_dim=64, hidden_size=hidden_size, num_heads=2, patch_size=4, spatial_merge_size=2, temporal_patch_size=2)
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def build_tiny_vlm(out: str | Path, *, seed: int = 0, num_scenes: int = 4000, hidden_size: int = 128, num_layers: int = 8, embedding_std: float = 0.1) -> Path:
    """Train the tokenizer, initialise a tiny Qwen2-VL from `seed` and save both to `out`.

    Args:
        out: target directory (created).
        seed: weight-initialisation and corpus seed.
        num_scenes: scenes whose captions train the tokenizer.
        hidden_size: text width.
        num_layers: text depth.
        embedding_std: standard deviation of the token embeddings.
    """
    from transformers import Qwen2VLForConditionalGeneration

    out = Path(out)
    tokenizer = train_tokenizer(caption_corpus(num_scenes, seed))
    config = tiny_qwen2_vl_config(tokenizer, hidden_size=hidden_size, num_layers=num_layers)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    # With the usual 0.02 embedding init, a random decoder's residual stream is soon dominated
    # by a component shared by all tokens (cosine ~0.96 between 'circle' and 'square' at the
    # last layer), which hides the prompt from any head. Embeddings of std 0.1 keep tokens
    # apart (cosine ~0.45 at the last layer) while the layers still mix in some context.
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, embedding_std)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
