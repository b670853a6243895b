"""Tiny BERT-style text encoder."""

from __future__ import annotations

from typing import Any

from kit.testing.tiny_families.common import Dims, family_tokenizer


def bert(seed: int, d: Dims) -> tuple[Any, Any]:
    """An all-MiniLM-like BERT encoder (BertModel); the tokenizer wraps every text in `[CLS] ... [SEP]`."""
    import transformers as tf
    from tokenizers import processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    cls_sep = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", special.index("[CLS]")), ("[SEP]", special.index("[SEP]"))]
    )
    tok = family_tokenizer(
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
