"""Tiny PaliGemma and Gemma 3."""

from __future__ import annotations

from typing import Any

from kit.testing.tiny_families import common


def paligemma(seed: int, d: common.Dims) -> tuple[Any, Any]:
    """PaliGemma: SigLIP (16 image tokens), linear projector, Gemma decoder with a bidirectional prefix.

    The processor adds 1,152 `<locXXXX>`/`<segXXX>` tokens to the tokenizer, so it is built
    before the vocabulary is sized; it also inserts `<bos>` after the images and `\\n` after the prompt.
    """
    import transformers as tf

    template = common.chat_template(image="<image>")
    tok = common.family_tokenizer(seed, [*common.GEMMA_TOKENS, "<image>"], template, **common.GEMMA_NAMED, extra_special_tokens={"image_token": "<image>"})
    image_processor = tf.SiglipImageProcessor(size={"height": common.TILE, "width": common.TILE})
    image_processor.image_seq_length = (common.TILE // common.PATCH) ** 2
    processor = tf.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok, chat_template=template)
    text = common.text_config(tok, d, model_type="gemma")  # after the processor: len(tok) counts the location tokens
    config = tf.PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", projection_dim=d.hidden_size, **common.vit_config()),
        text_config=text,
        projection_dim=d.hidden_size,
        hidden_size=d.hidden_size,
        vocab_size=len(tok),
        **common.token_ids(tok, image_token_index="<image>"),
    )
    return tf.PaliGemmaForConditionalGeneration(config), processor


# ---------------------------------------------------------------- Gemma 3


def gemma3(seed: int, d: common.Dims) -> tuple[Any, Any]:
    """Gemma 3: SigLIP (16 patches average-pooled to 4 soft tokens), Gemma 3 decoder with sliding-window layers."""
    import transformers as tf

    template = common.chat_template(
        image="<start_of_image>",
        prefix="{{ bos_token }}",
        turn_start="<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n",
        turn_end="<end_of_turn>\n",
        generation="<start_of_turn>model\n",
    )
    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = common.family_tokenizer(
        seed, [*common.GEMMA_TOKENS, "<start_of_turn>", "<end_of_turn>", *named.values()], template, **common.GEMMA_NAMED, extra_special_tokens=named
    )
    image_processor = tf.Gemma3ImageProcessor(size={"height": common.TILE, "width": common.TILE}, do_pan_and_scan=False)
    processor = tf.Gemma3Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=common.TOKENS_PER_TILE, chat_template=template)
    text = common.text_config(tok, d, query_pre_attn_scalar=d.head_dim, sliding_window=64)
    config = tf.Gemma3Config(
        vision_config=dict(model_type="siglip_vision_model", **common.vit_config()),
        text_config=text,
        mm_tokens_per_image=common.TOKENS_PER_TILE,
        **common.token_ids(tok, image_token_index="<image_soft_token>", boi_token_index="<start_of_image>", eoi_token_index="<end_of_image>"),
    )
    return tf.Gemma3ForConditionalGeneration(config), processor


# ---------------------------------------------------------------- text-only
