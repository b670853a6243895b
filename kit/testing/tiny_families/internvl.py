"""Tiny InternVL (the family's chat layout, processor and image-context tokens)."""

from __future__ import annotations

from typing import Any

from kit.testing.tiny_families.common import (
    CHATML,
    CHATML_NAMED,
    CHATML_TOKENS,
    PATCH,
    TILE,
    TOKENS_PER_TILE,
    Dims,
    chat_template,
    family_tokenizer,
    text_config,
    token_ids,
    vit_config,
)


def internvl(seed: int, d: Dims) -> tuple[Any, Any]:
    """InternVL 3 (HF port): InternViT tiles of 32x32 (up to 4 crops + thumbnail), pixel shuffle, Qwen2 decoder."""
    import transformers as tf

    template = chat_template(image="<IMG_CONTEXT>\n", **CHATML)
    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
    tok = family_tokenizer(seed, [*CHATML_TOKENS, *named.values()], template, **CHATML_NAMED, extra_special_tokens=named)
    image_processor = tf.GotOcr2ImageProcessor(size={"height": TILE, "width": TILE}, crop_to_patches=True, min_patches=1, max_patches=4)
    video_processor = tf.InternVLVideoProcessor(size={"height": TILE, "width": TILE})
    processor = tf.InternVLProcessor(
        image_processor=image_processor, video_processor=video_processor, tokenizer=tok, image_seq_length=TOKENS_PER_TILE, chat_template=template
    )
    config = tf.InternVLConfig(
        vision_config=vit_config(image_size=[TILE, TILE], patch_size=[PATCH, PATCH]),
        text_config=dict(model_type="qwen2", **text_config(tok, d)),
        image_seq_length=TOKENS_PER_TILE,
        downsample_ratio=0.5,
        **token_ids(tok, image_token_id="<IMG_CONTEXT>"),
    )
    return tf.InternVLForConditionalGeneration(config), processor


# ---------------------------------------------------------------- Idefics3 / SmolVLM
