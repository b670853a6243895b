"""Build the shapes VLM (tokenizer, processor, tiny Qwen2-VL) and turn conversations into tensors.

The model is a stock `Qwen2VLForConditionalGeneration` with a stock `Qwen2VLProcessor`, so
once saved it loads through the same Auto classes as any real checkpoint.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kit.vlm.tasks import Conversation, corpus
from kit.vlm.tiny import tiny_qwen2_vl_config, train_tokenizer

IGNORE = -100
"""Label of positions that do not count in the loss."""


def build_processor(tokenizer, image_size: int = 32, patch_size: int = 4, merge_size: int = 2):
    """A `Qwen2VLProcessor` whose pixel budget keeps an `image_size` render at its size.

    Args:
        tokenizer: the (trained) tokenizer, with the chat template set.
        image_size: side of the renders the VLM sees.
        patch_size: vision patch side.
        merge_size: patches merged per side into one LLM token.
    """
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    pixels = image_size * image_size
    kwargs = dict(min_pixels=pixels, max_pixels=pixels, patch_size=patch_size, merge_size=merge_size, temporal_patch_size=2)
    image = Qwen2VLImageProcessor(**kwargs)
    video = Qwen2VLVideoProcessor(**kwargs)
    return Qwen2VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=tokenizer.chat_template)


def build_shapes_vlm(
    *,
    hidden_size: int = 128, num_layers: int = 8, num_heads: int = 4, intermediate_size: int = 512,  # the text decoder
    vision_width: int = 128, vision_depth: int = 4, vision_heads: int = 4, patch_size: int = 4,  # the vision tower
    vocab_size: int = 1024, tokenizer_scenes: int = 4000,  # the tokenizer
    image_size: int = 32,
    seed: int = 0,
):  # fmt: skip
    """Tokenizer, processor and a freshly initialised tiny Qwen2-VL for the shapes world.

    Args:
        hidden_size: text width.
        num_layers: text decoder depth (the hidden states LAP taps).
        num_heads: text attention heads.
        intermediate_size: text MLP width.
        vision_width: vision transformer width.
        vision_depth: vision transformer depth.
        vision_heads: vision attention heads.
        vocab_size: BPE vocabulary size (special tokens included).
        tokenizer_scenes: scenes whose task texts train the tokenizer.
        image_size: render side the processor keeps.
        patch_size: vision patch side; 2x2 patches merge into one LLM token.
        seed: seed of the corpus and of the weights.
    """
    from transformers import Qwen2VLForConditionalGeneration

    tokenizer = train_tokenizer(corpus(tokenizer_scenes, seed), vocab_size=vocab_size)
    config = tiny_qwen2_vl_config(tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads)
    config.text_config.intermediate_size = intermediate_size
    vision = config.vision_config
    vision.embed_dim, vision.depth, vision.num_heads, vision.patch_size = vision_width, vision_depth, vision_heads, patch_size
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    return tokenizer, build_processor(tokenizer, image_size, patch_size), model


def encode(processor, conversations: list[Conversation], with_answer: bool = True) -> dict[str, Tensor]:
    """Conversations -> model inputs; with answers, also `labels` that count only the answers.

    Training batches are right-padded and carry labels: every position before the
    assistant's answer is `IGNORE`, the answer and its end-of-turn token count. Prompts
    for generation (`with_answer=False`) end with the assistant header and are left-padded.
    """
    tokenizer = processor.tokenizer
    texts = [processor.apply_chat_template(c.messages(with_answer=False), tokenize=False, add_generation_prompt=True) for c in conversations]
    images = [im for c in conversations for im in c.images]
    if not with_answer:
        return dict(processor(text=texts, images=images or None, return_tensors="pt", padding=True, padding_side="left"))
    end = tokenizer.eos_token  # '<|im_end|>' closes the answer
    full = [t + c.answer + end for t, c in zip(texts, conversations)]
    batch = dict(processor(text=full, images=images or None, return_tensors="pt", padding=True, padding_side="right"))
    answer_lengths = [len(tokenizer(c.answer + end, add_special_tokens=False)["input_ids"]) for c in conversations]
    labels = batch["input_ids"].clone()
    lengths = batch["attention_mask"].sum(1)
    for i, (n, a) in enumerate(zip(lengths.tolist(), answer_lengths)):
        labels[i, : n - a] = IGNORE
        labels[i, n:] = IGNORE
    batch["labels"] = labels
    return batch
