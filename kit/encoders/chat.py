"""Chat inputs for a frozen (V)LM, with a kind for every token.

`ChatInputs` renders each row (system prompt, images, the user's text) through the model's
chat template and processor, and marks each token SYSTEM (template scaffolding, system
prompt), IMAGE (the image tokens the processor expanded), and PROMPT or INSTRUCTION (the
user's text). The user's span is found without trusting any family's template: the row is
tokenized once with its text and once without, and the tokens that differ are the text's.
The image placeholders sit before the text in every kit template, so the processor's
expansion of them never shifts the span, which is counted from the end of the row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from kit.images import tensor_to_image
from kit.types import TokenKind

Images = list  # one row's images: PIL images, (H, W, 3) uint8 arrays or (3, H, W) tensors in [-1, 1]


def to_pil(image) -> Image.Image:
    """A PIL image, an `(H, W, 3)` uint8 array or a `(3, H, W)` float tensor in [-1, 1] -> RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"an image tensor must be (3, H, W) in [-1, 1], got shape {tuple(image.shape)}")
        image = tensor_to_image(image)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or array.dtype != np.uint8:
        raise ValueError(f"an image array must be (H, W, 3) uint8, got shape {array.shape} and dtype {array.dtype}")
    return Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).convert("RGB")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@dataclass
class Row:
    """One rendered row: token ids, their kinds, and the row's images."""

    ids: list[int]
    kinds: list[int]


class ChatInputs:
    """Renders prompts (and images) into model inputs with token kinds.

    Args:
        tokenizer: the model's tokenizer.
        processor: the model's multimodal processor (None for text-only models).
        image_token_id: the id of the image token the processor expands (None for text-only models).
        use_chat_template: wrap prompts in the chat template when the tokenizer has one.
        max_length: most text tokens per row (template and prompt; image tokens not counted);
            longer prompts are truncated with a warning.
    """

    def __init__(self, tokenizer, processor=None, image_token_id: int | None = None, use_chat_template: bool = True, max_length: int = 128) -> None:
        self.tokenizer = tokenizer
        self.processor = processor
        self.image_token_id = image_token_id
        template_owner = processor if processor is not None and getattr(processor, "chat_template", None) else tokenizer
        self.template_owner = template_owner if getattr(template_owner, "chat_template", None) else None
        self.use_chat_template = use_chat_template and self.template_owner is not None
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    # ------------------------------------------------------------------ text
    def render(self, text: str, system: str | None, num_images: int, generation: bool) -> str:
        """The chat text of one row (image placeholders unexpanded)."""
        messages = [{"role": "system", "content": system}] if system else []
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": text}]
        messages.append({"role": "user", "content": content})
        return self.template_owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def truncate(self, prompt: str, system: str | None, num_images: int, generation: bool) -> str:
        """`prompt`, cut to the row's text budget with a warning that says by how many tokens."""
        if self.use_chat_template:
            overhead = len(self._ids(self.render("", system, num_images, generation)))
            ids = self._ids(prompt)
        else:
            ids = self.tokenizer(prompt)["input_ids"]
            overhead = len(ids) - len(self._ids(prompt))
            ids = self._ids(prompt)
        budget = self.max_length - overhead
        if len(ids) <= budget:
            return prompt
        warnings.warn(f"prompt truncated by {len(ids) - budget} tokens to fit max_length={self.max_length}: {prompt[:60]!r}...", stacklevel=4)
        return self.tokenizer.decode(ids[: max(budget, 0)])

    def span(self, text: str, system: str | None, num_images: int, generation: bool) -> tuple[int, int]:
        """`(tokens before the text, tokens after it)` in the unexpanded row, from a with/without diff."""
        with_text = self._ids(self.render(text, system, num_images, generation))
        without = self._ids(self.render("", system, num_images, generation))
        before = _common_prefix(with_text, without)
        after = _common_prefix(with_text[::-1], without[::-1])
        after = min(after, len(without) - before)  # the two ends may not overlap
        return before, after

    # ------------------------------------------------------------------ batches
    def __call__(
        self,
        prompts: list[str],
        images: list[Images] | None = None,
        system: str | None = None,
        text_kind: TokenKind = TokenKind.PROMPT,
        generation: bool = False,
    ) -> tuple[dict[str, Tensor], list[Row]]:
        """Render a batch; returns the processor's tensors (right-padded) and each row's ids and kinds.

        Args:
            prompts: the user texts.
            images: per row, the images shown before its text (None: no images anywhere).
            system: system prompt of every row.
            text_kind: the kind of the user's tokens (PROMPT, or INSTRUCTION when the VLM rewrites them).
            generation: end each row with the assistant header, ready to generate.
        """
        images = images if images is not None else [[] for _ in prompts]
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} image lists for {len(prompts)} prompts")
        if any(images) and (self.processor is None or self.image_token_id is None):
            raise ValueError("this encoder's model takes no images (it has no image processor or no image token)")
        if any(images) and not self.use_chat_template:
            raise ValueError("image inputs need a chat template that places the images (the tokenizer has none, or use_chat_template is off)")
        prompts = [self.truncate(p, system, len(im), generation) for p, im in zip(prompts, images)]
        if not self.use_chat_template:
            return self._plain(prompts, text_kind)
        texts = [self.render(p, system, len(im), generation) for p, im in zip(prompts, images)]
        nested = [[to_pil(im) for im in row] for row in images]
        if any(nested):
            batch = dict(self.processor(text=texts, images=nested, return_tensors="pt", padding=True, padding_side="right"))
        else:
            batch = dict(self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False))
        batch.pop("labels", None)  # PaliGemma's processor adds training labels
        batch = right_padded(batch)
        rows = []
        for i, (prompt, im) in enumerate(zip(prompts, images)):
            n = int(batch["attention_mask"][i].sum())
            ids = batch["input_ids"][i, :n].tolist()
            rows.append(Row(ids, self._kinds(ids, prompt, system, len(im), generation, text_kind)))
        return batch, rows

    def _kinds(self, ids: list[int], prompt: str, system: str | None, num_images: int, generation: bool, text_kind: TokenKind) -> list[int]:
        before, after = self.span(prompt, system, num_images, generation)
        unexpanded = self._ids(self.render(prompt, system, num_images, generation))
        expected = unexpanded[before : len(unexpanded) - after]
        tail = unexpanded[len(unexpanded) - after :]
        # the text ends where the template's tail starts, counted from the end (images come earlier)
        stop = len(ids) - len(tail)
        if ids[stop - len(expected) : stop] != expected or ids[stop:] != tail:
            # a processor added tokens of its own (PaliGemma appends a newline): find the text instead
            found = [j for j in range(len(ids) - len(expected), -1, -1) if ids[j : j + len(expected)] == expected]
            stop = found[0] + len(expected) if found else stop
        kinds = [int(TokenKind.SYSTEM)] * len(ids)
        for j in range(max(stop - len(expected), 0), stop):
            kinds[j] = int(text_kind)
        if self.image_token_id is not None:
            for j, t in enumerate(ids):
                if t == self.image_token_id:
                    kinds[j] = int(TokenKind.IMAGE)
        return kinds

    def _plain(self, prompts: list[str], text_kind: TokenKind) -> tuple[dict[str, Tensor], list[Row]]:
        """No chat template: the tokenizer's own special tokens (BERT's [CLS]/[SEP]) are SYSTEM."""
        rows = []
        for p in prompts:
            enc = self.tokenizer(p, return_special_tokens_mask=True)
            rows.append(Row(enc["input_ids"], [int(TokenKind.SYSTEM) if s else int(text_kind) for s in enc["special_tokens_mask"]]))
        return pad_rows(rows, self.pad_id), rows


def per_token(batch: dict[str, Tensor]) -> list[str]:
    """The names of the `(B, S)` per-token tensors of a processor's batch (ids, masks, token types)."""
    shape = batch["input_ids"].shape
    return [k for k, v in batch.items() if isinstance(v, Tensor) and v.shape == shape and not v.is_floating_point()]


def right_padded(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Move each row's tokens to the left end (some processors pad on the left whatever they are told)."""
    mask = batch["attention_mask"].bool()
    if all(bool(mask[i, : int(mask[i].sum())].all()) for i in range(mask.shape[0])):
        return batch
    out = dict(batch)
    for k in per_token(batch):
        v = batch[k]
        moved = torch.zeros_like(v)
        for i in range(v.shape[0]):
            real = v[i][mask[i]]
            moved[i, : real.numel()] = real
        out[k] = moved
    return out


def pad_rows(rows: list[Row], pad_id: int, extra: dict[str, list[list[int]]] | None = None) -> dict[str, Tensor]:
    """Right-pad rows into `input_ids` and `attention_mask` (and any per-token `extra` lists, padded with 0)."""
    length = max(len(r.ids) for r in rows)
    out = {"input_ids": torch.full((len(rows), length), pad_id, dtype=torch.long), "attention_mask": torch.zeros((len(rows), length), dtype=torch.long)}
    for name in extra or {}:
        out[name] = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        out["input_ids"][i, : len(r.ids)] = torch.tensor(r.ids)
        out["attention_mask"][i, : len(r.ids)] = 1
        for name, values in (extra or {}).items():
            out[name][i, : len(values[i])] = torch.tensor(values[i])
    return out


def kinds_tensor(rows: list[Row], length: int) -> Tensor:
    """Per-row kinds -> `(B, length)` long, SYSTEM where padded."""
    out = torch.full((len(rows), length), int(TokenKind.SYSTEM), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r.kinds)] = torch.tensor(r.kinds)
    return out
