"""Tiny InternVL (the family's chat layout, processor and image-context tokens)."""

from __future__ import annotations

from typing import Any

from kit.testing.tiny_families import common


def internvl(seed: int, d: common.Dims) -> tuple[Any, Any]:
    """InternVL 3 (HF port): InternViT tiles of 32x32 (up to 4 crops + thumbnail), pixel shuffle, Qwen2 decoder."""
    import transformers as tf

    template = common.chat_template(image="<IMG_CONTEXT>\n", **common.CHATML)
    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
    tok = common.family_tokenizer(seed, [*common.CHATML_TOKENS, *named.values()], template, **common.CHATML_NAMED, extra_special_tokens=named)
    image_processor = tf.GotOcr2ImageProcessor(size={"height": common.TILE, "width": common.TILE}, crop_to_patches=True, min_patches=1, max_patches=4)
    video_processor = tf.InternVLVideoProcessor(size={"height": common.TILE, "width": common.TILE})
    processor = tf.InternVLProcessor(
        image_processor=image_processor, video_processor=video_processor, tokenizer=tok, image_seq_length=common.TOKENS_PER_TILE, chat_template=template
    )
    config = tf.InternVLConfig(
        vision_config=common.vit_config(image_size=[common.TILE, common.TILE], patch_size=[common.PATCH, common.PATCH]),
        text_config=dict(model_type="qwen2", **common.text_config(tok, d)),
        image_seq_length=common.TOKENS_PER_TILE,
        downsample_ratio=0.5,
        **common.token_ids(tok, image_token_id="<IMG_CONTEXT>"),
    )
    return tf.InternVLForConditionalGeneration(config), processor


# ---------------------------------------------------------------- Idefics3 / SmolVLM
