"""Tiny Idefics3 / SmolVLM."""

from __future__ import annotations

from typing import Any

from kit.testing.tiny_families.common import TILE, TOKENS_PER_TILE, Dims, chat_template, family_tokenizer, text_config, token_ids, vit_config


def idefics3(seed: int, d: Dims) -> tuple[Any, Any]:
    """Idefics3 (SmolVLM layout): images resized to 64 px, split into 32 px tiles + a global view, Llama decoder."""
    import transformers as tf

    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    template = chat_template(
        image="<image>", turn_start="<|im_start|>{{ m['role'] | capitalize }}:", turn_end="<end_of_utterance>\n", generation="<|im_start|>Assistant:"
    )
    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>", *grid]
    tok = family_tokenizer(
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
        vision_config=vit_config(), text_config=dict(model_type="llama", **text_config(tok, d)), scale_factor=2, **token_ids(tok, image_token_id="<image>")
    )
    return tf.Idefics3ForConditionalGeneration(config), processor


# ---------------------------------------------------------------- LLaVA 1.5
