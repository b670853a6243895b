"""The small dataclasses that pass between the stages of the kit.

    batch -> FrozenEncoder -> EncoderOutput -> FusionHead -> Conditioning -> Backbone

Each stage only knows its input and output types. Shapes use these letters:
B batch, N tapped layers, S encoder tokens, D encoder width, M conditioning tokens,
C conditioning width (`cond_dim`), L backbone blocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum, StrEnum, nonmember

import torch
from torch import Tensor


class TokenKind(IntEnum):
    """What an encoder token is; heads keep the kinds they want (UniFusion drops system/instruction)."""

    SYSTEM = 0  # system prompt and chat-template scaffolding
    INSTRUCTION = 1  # the user's instruction when the VLM rewrites it (VERIFI)
    IMAGE = 2  # image placeholder tokens expanded by the processor
    GENERATED = 3  # tokens the VLM generated (VERIFI rewrites)
    PROMPT = 4  # the user's prompt, encoded directly
    ECHO = 5  # the first copy of an echoed prompt: read by the encoder, dropped by heads (FrozenEncoder `echo`)


DEFAULT_KEEP_KINDS: tuple[TokenKind, ...] = (TokenKind.PROMPT, TokenKind.IMAGE, TokenKind.GENERATED)
"""The kinds UniFusion conditions on: everything but the system prompt and the instruction."""


@dataclass(frozen=True)
class EncoderSpec:
    """What a fusion head needs to know about the frozen encoder it reads.

    Args:
        name: the model's name or path, as recorded in recipes and caches.
        hidden_size: D, the width of each hidden state.
        num_layers: the encoder's depth; hidden state 0 is the embeddings, `num_layers` the last layer.
        taps: the hidden-state indices the encoder returns, in order (length N).
    """

    name: str
    hidden_size: int
    num_layers: int
    taps: tuple[int, ...]

    @property
    def num_taps(self) -> int:
        return len(self.taps)


@dataclass
class EncoderOutput:
    """Hidden states of the tapped layers of a frozen encoder.

    Args:
        hidden_states: `(B, N, S, D)` the tapped hidden states, in the order of `EncoderSpec.taps`.
        mask: `(B, S)` bool, True for real tokens, False for padding.
        kinds: `(B, S)` long, a `TokenKind` per token (meaningless where `mask` is False).
    """

    hidden_states: Tensor
    mask: Tensor
    kinds: Tensor

    def select(self, keep: tuple[TokenKind, ...] | list[TokenKind]) -> EncoderOutput:
        """Keep only tokens of the given kinds, packed to the left and padded to the longest row.

        Every row keeps at least one position (masked out when it has no such token), so
        attention over the result never sees an all-padding row.
        """
        keep_t = torch.tensor([int(k) for k in keep], device=self.kinds.device)
        wanted = self.mask & torch.isin(self.kinds, keep_t)  # (B, S)
        lengths = wanted.sum(dim=1)  # (B,)
        width = max(int(lengths.max()), 1)
        # stable sort puts wanted tokens first, in their original order
        order = torch.sort((~wanted).to(torch.int8), dim=1, stable=True).indices[:, :width]  # (B, M)
        new_mask = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]  # (B, M)
        b, n, _, d = self.hidden_states.shape
        gather = order[:, None, :, None].expand(b, n, width, d)
        hidden = torch.gather(self.hidden_states, 2, gather)  # (B, N, M, D)
        return EncoderOutput(hidden, new_mask, torch.gather(self.kinds, 1, order))

    def to(self, device: torch.device | str) -> EncoderOutput:
        return EncoderOutput(self.hidden_states.to(device), self.mask.to(device), self.kinds.to(device))


class Choice(StrEnum):
    """A setting with a few named values (a string of the same name is the same value). `of` turns a string into
    the member or a one-line error naming the `label` and every value."""

    @classmethod
    def of(cls, value: str):
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown {cls.label} {value!r}; known: {', '.join(cls)}") from None


class PerLayerMode(Choice):
    """How a backbone uses per-layer conditioning `per_layer[:, i]` at block i (`Backbone.feed_layer`)."""

    label = nonmember("per_layer_mode")
    add = "add"
    """hidden-state injection: the block reads its conditioning tokens plus encoder layer i's"""
    replace = "replace"
    """key-value fusion: the block reads encoder layer i's tokens in place of its conditioning tokens"""


@dataclass
class Conditioning:
    """What a fusion head hands to a backbone. Any field may be None.

    Args:
        tokens: `(B, M, C)` conditioning tokens.
        mask: `(B, M)` bool, True for real tokens (required with `tokens`).
        pooled: `(B, C)` one vector per sample.
        per_layer: `(B, L, M, C)` one token sequence per backbone block (KV fusion, injection), masked by `mask`.
        per_layer_mode: how a backbone uses `per_layer[:, i]` at block i (`PerLayerMode`: add, replace).
            Every backbone reads it through `Backbone.feed_layer`.
    """

    tokens: Tensor | None = None
    mask: Tensor | None = None
    pooled: Tensor | None = None
    per_layer: Tensor | None = None
    per_layer_mode: PerLayerMode = PerLayerMode.add

    FIELDS = ("tokens", "pooled", "per_layer")

    def __post_init__(self) -> None:
        self.per_layer_mode = PerLayerMode.of(self.per_layer_mode)

    def provided(self) -> frozenset[str]:
        """The names of the fields that are set."""
        return frozenset(f for f in self.FIELDS if getattr(self, f) is not None)

    @property
    def batch_size(self) -> int:
        for f in self.FIELDS:
            value = getattr(self, f)
            if value is not None:
                return value.shape[0]
        raise ValueError("empty Conditioning has no batch size")

    def padded_to(self, length: int) -> Conditioning:
        """Pad the token axis (tokens, mask, per_layer) with masked zeros up to `length`."""
        if self.tokens is None and self.per_layer is None:
            return self
        current = (self.tokens if self.tokens is not None else self.per_layer[:, 0]).shape[1]
        extra = length - current
        if extra < 0:
            raise ValueError(f"cannot pad {current} tokens down to {length}")
        if extra == 0:
            return self

        def pad(x: Tensor | None, dim: int) -> Tensor | None:
            if x is None:
                return None
            shape = list(x.shape)
            shape[dim] = extra
            return torch.cat([x, x.new_zeros(shape)], dim=dim)

        return dataclasses.replace(self, tokens=pad(self.tokens, 1), mask=pad(self.mask, 1), per_layer=pad(self.per_layer, 2))

    def _num_tokens(self) -> int:
        if self.tokens is not None:
            return self.tokens.shape[1]
        return 0 if self.per_layer is None else self.per_layer.shape[2]

    @staticmethod
    def cat(items: list[Conditioning]) -> Conditioning:
        """Concatenate along the batch, padding token axes to the longest."""
        length = max(c._num_tokens() for c in items)
        items = [c.padded_to(length) for c in items]
        out = {}
        for f in ("tokens", "mask", "pooled", "per_layer"):
            values = [getattr(c, f) for c in items]
            if all(v is None for v in values):
                out[f] = None
            elif any(v is None for v in values):
                raise ValueError(f"cannot concatenate Conditioning where only some items have {f!r}")
            else:
                out[f] = torch.cat(values, dim=0)
        return Conditioning(**out, per_layer_mode=items[0].per_layer_mode)

    def where(self, use_other: Tensor, other: Conditioning) -> Conditioning:
        """Row-wise choice: row i comes from `other` where `use_other[i]` is True (CFG dropout).

        Args:
            use_other: `(B,)` bool.
            other: a Conditioning of the same batch size (e.g. the head's null conditioning).
        """
        length = max(self._num_tokens(), other._num_tokens())
        a, b = self.padded_to(length), other.padded_to(length)
        out = {}
        for f in ("tokens", "mask", "pooled", "per_layer"):
            x, y = getattr(a, f), getattr(b, f)
            if x is None and y is None:
                out[f] = None
                continue
            if x is None or y is None:
                raise ValueError(f"cannot mix Conditioning where only one side has {f!r}")
            sel = use_other.view(-1, *([1] * (x.dim() - 1)))
            out[f] = torch.where(sel, y.to(x.dtype), x)
        return Conditioning(**out, per_layer_mode=self.per_layer_mode)


References = list[list]
"""Per sample, the images it refers to (editing sources, composition references), shown to the frozen VLM
before the prompt: `(3, H, W)` tensors in [-1, 1], `(H, W, 3)` uint8 arrays or PIL images; an empty
list for a sample without any."""


@dataclass
class Batch:
    """One training (or validation) batch of a diffusion task, as the kit's data modules collate it.

    Args:
        images: `(B, C, H, W)` in [-1, 1], the targets.
        prompts: B prompts (an empty string asks for the null conditioning).
        references: per sample, the reference or source images the task conditions on (editing,
            multi-reference generation), each `(C, H', W')` in [-1, 1]; None when the task has none.
        encoded: the frozen encoder's cached output for these prompts (`kit cache`); None encodes on the fly.
        skipped: how many items the data dropped from this batch (undecodable files), for the logs.
        targets: per sample, the caption a task that writes text learns to write (the joint model's text target,
            in one register), while `prompts` are what it reads; None: the prompts are both.
    """

    images: Tensor
    prompts: list[str]
    references: References | None = None
    encoded: EncoderOutput | None = None
    skipped: int = 0
    targets: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.shape[0] != len(self.prompts):
            raise ValueError(f"a batch of {self.images.shape[0]} images has {len(self.prompts)} prompts")
        if self.references is not None and len(self.references) != len(self.prompts):
            raise ValueError(f"a batch of {len(self.prompts)} prompts has {len(self.references)} reference lists")
        if self.targets is not None and len(self.targets) != len(self.prompts):
            raise ValueError(f"a batch of {len(self.prompts)} prompts has {len(self.targets)} target captions")

    def __len__(self) -> int:
        return len(self.prompts)
