"""VERIFI: the frozen VLM rewrites the prompt, and only what it wrote (and the images) conditions.

UniFusion's VLM-Enabled Rewriting Injection with Flexible Inference. Under a fixed system
prompt the VLM rewrites the user's prompt (looking at the reference images, if any) into a
detailed description; the encoder then takes the hidden states of the generated tokens in
one teacher-forced pass over `[system, images, instruction, generated]`, and marks system
and instruction tokens so that heads drop them. Causal attention makes those states the
same as during generation, so the pass costs one forward, not one per token.

`Rewriter` holds the settings (they enter the feature cache's fingerprint) and a cache of
rewrites keyed by system prompt, prompt and image bytes, in memory and optionally on disk.
Flexible inference: change `system_prompt` or set `enabled=False` at inference time.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

DEFAULT_SYSTEM_PROMPT = "Rewrite the prompt as a detailed description of the scene."
"""The shapes VLM's training system prompt; real VLMs take any instruction of this kind."""


class Rewriter:
    """VERIFI prompt rewriting by the frozen VLM.

    Args:
        system_prompt: the system prompt the VLM rewrites under (fixed in training; may change at inference).
        max_new_tokens: longest rewrite in tokens.
        enabled: rewrite at all; off encodes the raw prompt (flexible inference).
        cache_size: rewrites kept in memory (least recently used dropped first).
        cache_file: a JSON-lines file that keeps rewrites across runs (read at start, appended to).
    """

    def __init__(
        self,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_new_tokens: int = 96,
        enabled: bool = True,
        cache_size: int = 100_000,
        cache_file: str | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.enabled = enabled
        self.cache_size = cache_size
        self.cache_file = Path(cache_file) if cache_file else None
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        if self.cache_file is not None and self.cache_file.is_file():
            for line in self.cache_file.read_text().splitlines():
                entry = json.loads(line)
                self._cache[entry["key"]] = entry["ids"]

    def fingerprint(self) -> dict:
        """What changes the rewrites (the cache is not part of it)."""
        return {"enabled": self.enabled, "system_prompt": self.system_prompt, "max_new_tokens": self.max_new_tokens, "decoding": "greedy"}

    def key(self, model_id: str, prompt: str, images: list) -> str:
        """Cache key of one rewrite: model, settings, prompt and the bytes of its images."""
        h = hashlib.sha256(json.dumps([model_id, self.system_prompt, self.max_new_tokens, prompt]).encode())
        for image in images:
            h.update(image.tobytes())
            h.update(str(image.size).encode())
        return h.hexdigest()

    def get(self, key: str) -> list[int] | None:
        ids = self._cache.get(key)
        if ids is None:
            self.misses += 1
            return None
        self.hits += 1
        self._cache.move_to_end(key)
        return ids

    def put(self, key: str, ids: list[int]) -> None:
        self._cache[key] = ids
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        if self.cache_file is not None:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            with self.cache_file.open("a") as f:
                f.write(json.dumps({"key": key, "ids": ids}) + "\n")

    def __repr__(self) -> str:
        return f"Rewriter(enabled={self.enabled}, system_prompt={self.system_prompt!r}, max_new_tokens={self.max_new_tokens})"


def configure_rewriting(encoder, rewrite: str | None = None, system_prompt: str | None = None) -> None:
    """Flexible inference: turn an encoder's VERIFI rewriting on or off and/or change its system prompt.

    Args:
        encoder: a `FrozenEncoder`.
        rewrite: 'on', 'off', or None to keep what the recipe trained with.
        system_prompt: a different rewriting system prompt (None keeps the recipe's).
    """
    if rewrite not in (None, "on", "off"):
        raise ValueError(f"rewrite must be 'on' or 'off', got {rewrite!r}")
    if rewrite == "on" and encoder.rewriter is None:
        encoder.set_rewriter(Rewriter())
    if encoder.rewriter is None:
        if system_prompt is not None:
            raise ValueError("--system-prompt changes the rewriting system prompt, but this model does not rewrite (add --rewrite on)")
        return
    if rewrite is not None:
        encoder.rewriter.enabled = rewrite == "on"
    if system_prompt is not None:
        encoder.rewriter.system_prompt = system_prompt
