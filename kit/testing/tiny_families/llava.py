"""Tiny LLaVA."""

from __future__ import annotations

from typing import Any

from kit.testing.tiny_families.common import PATCH, TILE, VISION_WIDTH, Dims, chat_template, family_tokenizer, text_config, token_ids, vit_config


def llava(seed: int, d: Dims) -> tuple[Any, Any]:
    """LLaVA 1.5: CLIP ViT (CLS dropped, penultimate layer), MLP projector, Llama decoder; 16 image tokens."""
    import transformers as tf

    template = chat_template(
        image="<image>\n", prefix="{{ bos_token }}", turn_start="{{ m['role'] | upper }}: ", turn_end="{{ '\\n' }}", generation="ASSISTANT:"
    )
    tok = family_tokenizer(
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
        vision_config=dict(model_type="clip_vision_model", projection_dim=VISION_WIDTH, **vit_config()),
        text_config=dict(model_type="llama", **text_config(tok, d)),
        image_seq_length=(TILE // PATCH) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        **token_ids(tok, image_token_index="<image>"),
    )
    return tf.LlavaForConditionalGeneration(config), processor


# ---------------------------------------------------------------- PaliGemma
