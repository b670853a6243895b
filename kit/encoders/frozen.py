"""`FrozenEncoder`: any Hugging Face model as a frozen, layer-tapped text encoder.

Frozen as `kit.encoders.base.FrozenModel` defines it, and its forward runs under `torch.no_grad`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from kit.encoders.base import FrozenModel
from kit.types import EncoderOutput, EncoderSpec, TokenKind

ASSETS = Path(__file__).resolve().parent.parent / "assets"
_SENTINEL = "\u2063KIT_PROMPT\u2063"


def resolve_model_path(name: str) -> str:
    """`kit:<asset>` -> the asset directory shipped in `kit/assets/`; anything else unchanged."""
    if not name.startswith("kit:"):
        return name
    path = ASSETS / name[len("kit:") :]
    if not (path / "config.json").is_file():
        known = sorted(p.name for p in ASSETS.iterdir() if (p / "config.json").is_file()) if ASSETS.is_dir() else []
        raise FileNotFoundError(f"no shipped model {name!r} (looked in {path}); shipped models: {', '.join('kit:' + k for k in known) or 'none'}")
    return str(path)


def parse_taps(taps: str | list[int], num_layers: int) -> tuple[int, ...]:
    """Hidden-state indices to tap. Index 0 is the embeddings, `num_layers` the last layer.

    Args:
        taps: ``"all"`` (layers 1..num_layers), ``"last"``, ``"every:K"`` (every K-th layer
            counted back from the last, so the last layer is always included), or an explicit
            list of indices (negative indices count from the end, -1 being the last layer).
        num_layers: the encoder's depth.
    """
    if isinstance(taps, str):
        if taps == "all":
            return tuple(range(1, num_layers + 1))
        if taps == "last":
            return (num_layers,)
        if taps.startswith("every:"):
            step = int(taps.split(":", 1)[1])
            if step < 1:
                raise ValueError(f"taps 'every:K' needs K >= 1, got {taps!r}")
            return tuple(sorted(range(num_layers, 0, -step)))
        raise ValueError(f"unknown taps {taps!r}; use 'all', 'last', 'every:K' or a list of layer indices")
    resolved = [t + num_layers + 1 if t < 0 else t for t in taps]
    bad = [t for t, r in zip(taps, resolved, strict=False) if not 0 <= r <= num_layers]
    if bad:
        raise ValueError(f"taps {bad} do not exist: the encoder has {num_layers} layers (hidden states 0..{num_layers})")
    if not resolved:
        raise ValueError("taps is empty")
    return tuple(resolved)


def _load_model(path: str, dtype: torch.dtype, revision: str | None, trust_remote_code: bool) -> nn.Module:
    """The most complete Auto class that accepts the checkpoint (generation needs the LM head)."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText

    errors = []
    for auto in (AutoModelForImageTextToText, AutoModelForCausalLM, AutoModel):
        try:
            return auto.from_pretrained(path, dtype=dtype, revision=revision, trust_remote_code=trust_remote_code)
        except ValueError as e:  # "Unrecognized configuration class ... for this kind of AutoModel"
            errors.append(f"{auto.__name__}: {e}")
    raise ValueError(f"no transformers Auto class can load {path!r}:\n" + "\n".join(errors))


class FrozenEncoder(FrozenModel):
    """A frozen Hugging Face model that returns the hidden states of chosen layers per token.

    Args:
        model: model name, local path, or `kit:<asset>` for a model shipped with the kit.
        taps: which hidden states to return: 'all', 'last', 'every:K' or a list of indices
            (0 = embeddings, num_layers = last layer, negatives count from the end).
        system_prompt: system message placed before the prompt when the tokenizer has a chat
            template; its tokens are marked SYSTEM so heads can drop them.
        use_chat_template: wrap prompts in the tokenizer's chat template when it has one.
        max_length: longest token sequence; longer prompts are truncated with a warning.
        dtype: weight dtype ('float32', 'bfloat16', 'float16').
        revision: model revision on the hub (recorded for caches; ignored for local paths).
        trust_remote_code: run code shipped with the checkpoint; off unless a recipe turns it on.
    """

    def __init__(
        self,
        model: str,
        taps: str | list[int] = "all",
        system_prompt: str | None = None,
        use_chat_template: bool = True,
        max_length: int = 128,
        dtype: str = "float32",
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = model
        self.revision = revision
        path = resolve_model_path(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        self.model = _load_model(path, getattr(torch, dtype), revision, trust_remote_code)
        text_config = self.model.config.get_text_config()
        self.num_layers = int(text_config.num_hidden_layers)
        self.hidden_size = int(text_config.hidden_size)
        self.taps = parse_taps(taps, self.num_layers)
        self.max_length = max_length
        self.system_prompt = system_prompt
        self.use_chat_template = use_chat_template and getattr(self.tokenizer, "chat_template", None) is not None
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._prefix, self._suffix = self._template_ids()
        self.freeze()

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec(name=self.name, hidden_size=self.hidden_size, num_layers=self.num_layers, taps=self.taps)

    def _template_ids(self) -> tuple[list[int], list[int]]:
        """Token ids of the chat template before and after the prompt (SYSTEM kind)."""
        if not self.use_chat_template:
            return [], []
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": _SENTINEL})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False)
        before, after = text.split(_SENTINEL)
        encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        return encode(before), encode(after)

    def tokenize(self, prompts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Prompts -> right-padded `(B, S)` input ids, attention mask and token kinds."""
        rows: list[tuple[list[int], list[int]]] = []
        budget = self.max_length - len(self._prefix) - len(self._suffix)
        for prompt in prompts:
            if self.use_chat_template:
                ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
                kinds = [TokenKind.PROMPT] * len(ids)
            else:
                enc = self.tokenizer(prompt, return_special_tokens_mask=True)
                ids = enc["input_ids"]
                kinds = [TokenKind.SYSTEM if s else TokenKind.PROMPT for s in enc["special_tokens_mask"]]
            if len(ids) > budget:
                warnings.warn(f"prompt truncated by {len(ids) - budget} tokens to fit max_length={self.max_length}: {prompt[:60]!r}...", stacklevel=3)
                ids, kinds = ids[:budget], kinds[:budget]
            rows.append((self._prefix + ids + self._suffix, [TokenKind.SYSTEM] * len(self._prefix) + kinds + [TokenKind.SYSTEM] * len(self._suffix)))
        length = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        kinds = torch.full((len(rows), length), int(TokenKind.SYSTEM), dtype=torch.long)
        for i, (ids, ks) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = True
            kinds[i, : len(ids)] = torch.tensor([int(k) for k in ks])
        return input_ids, mask, kinds

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> EncoderOutput:
        """Encode a batch of prompts. Returns hidden states `(B, N_taps, S, D)`, mask and kinds `(B, S)`."""
        device = next(self.model.parameters()).device
        input_ids, mask, kinds = (t.to(device) for t in self.tokenize(prompts))
        out = self.model(input_ids=input_ids, attention_mask=mask.long(), output_hidden_states=True, use_cache=False)
        hidden = getattr(out, "hidden_states", None)
        if hidden is None:
            raise TypeError(f"{type(self.model).__name__} returned no hidden_states; FrozenEncoder needs a model that supports output_hidden_states")
        stacked = torch.stack([hidden[i] for i in self.taps], dim=1)  # (B, N, S, D)
        return EncoderOutput(hidden_states=stacked, mask=mask, kinds=kinds)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layers={self.num_layers}, hidden={self.hidden_size}, taps={list(self.taps)}"
