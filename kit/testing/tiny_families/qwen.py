"""Tiny Qwen2-VL, Qwen2.5-VL, Qwen3-VL and the text-only Qwen2."""

from __future__ import annotations

from typing import Any

from kit.testing.tiny_families import common

QWEN_VL_TOKENS = [*common.CHATML_TOKENS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def qwen_vl(seed: int, d: common.Dims, *, generation: str, vision: dict, rope: dict, patch: int) -> tuple[Any, Any]:
    """Shared Qwen2-VL / Qwen2.5-VL / Qwen3-VL builder; `generation` picks the classes."""
    import transformers as tf

    cls = {
        "qwen2_vl": (tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor, tf.Qwen2VLVideoProcessor),
        "qwen2_5_vl": (tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor, tf.Qwen2VLVideoProcessor),
        "qwen3_vl": (tf.Qwen3VLConfig, tf.Qwen3VLForConditionalGeneration, tf.Qwen3VLProcessor, tf.Qwen3VLVideoProcessor),
    }
    config_cls, model_cls, processor_cls, video_cls = cls[generation]
    template = common.chat_template(image="<|vision_start|><|image_pad|><|vision_end|>", **common.CHATML)
    tok = common.family_tokenizer(
        seed,
        QWEN_VL_TOKENS,
        template,
        **common.CHATML_NAMED,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    pixels = dict(patch_size=patch, merge_size=2, temporal_patch_size=2, min_pixels=common.QWEN_MIN_PIXELS, max_pixels=common.QWEN_MAX_PIXELS)
    processor = processor_cls(
        image_processor=tf.Qwen2VLImageProcessor(**pixels),
        video_processor=video_cls(**pixels),
        tokenizer=tok,
        chat_template=template,
    )
    half = d.head_dim // 2  # M-RoPE splits head_dim/2 frequencies over (time, height, width)
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [half - 2 * (half // 3), half // 3, half // 3], **rope}
    ids = common.token_ids(
        tok, image_token_id="<|image_pad|>", video_token_id="<|video_pad|>", vision_start_token_id="<|vision_start|>", vision_end_token_id="<|vision_end|>"
    )
    vision = dict(depth=common.VISION_DEPTH, num_heads=common.VISION_HEADS, patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, **vision)
    config = config_cls(text_config=common.text_config(tok, d, rope_parameters=rope), vision_config=vision, **ids)
    return model_cls(config), processor


def qwen2_vl(seed: int, d: common.Dims) -> tuple[Any, Any]:
    """Qwen2-VL: ViT with `embed_dim`, merger to the text width, M-RoPE."""
    return qwen_vl(
        seed, d, generation="qwen2_vl", vision=dict(embed_dim=common.VISION_WIDTH, hidden_size=d.hidden_size, mlp_ratio=2), rope={}, patch=common.PATCH
    )


def qwen2_5_vl(seed: int, d: common.Dims) -> tuple[Any, Any]:
    """Qwen2.5-VL: windowed ViT (one window layer, one full layer), merger to `out_hidden_size`."""
    vision = dict(
        hidden_size=common.VISION_WIDTH,
        intermediate_size=2 * common.VISION_WIDTH,
        out_hidden_size=d.hidden_size,
        window_size=2 * 2 * common.PATCH,  # 2x2 merged units per window
        fullatt_block_indexes=[common.VISION_DEPTH - 1],
    )
    return qwen_vl(seed, d, generation="qwen2_5_vl", vision=vision, rope={}, patch=common.PATCH)


def qwen3_vl(seed: int, d: common.Dims) -> tuple[Any, Any]:
    """Qwen3-VL: learned position grid, DeepStack features from the first vision layer, interleaved M-RoPE."""
    vision = dict(
        hidden_size=common.VISION_WIDTH,
        intermediate_size=2 * common.VISION_WIDTH,
        out_hidden_size=d.hidden_size,
        num_position_embeddings=16,  # a 4x4 grid, interpolated to the image's patch grid
        deepstack_visual_indexes=[0],
    )
    return qwen_vl(seed, d, generation="qwen3_vl", vision=vision, rope={"mrope_interleaved": True}, patch=common.PATCH)


# ---------------------------------------------------------------- InternVL (transformers-native port)


def qwen2(seed: int, d: common.Dims) -> tuple[Any, Any]:
    """A ChatML decoder LLM (Qwen2ForCausalLM); image items in the chat are ignored."""
    import transformers as tf

    template = common.chat_template(image="", **common.CHATML)
    tok = common.family_tokenizer(seed, common.CHATML_TOKENS, template, **common.CHATML_NAMED)
    return tf.Qwen2ForCausalLM(tf.Qwen2Config(**common.text_config(tok, d))), tok
