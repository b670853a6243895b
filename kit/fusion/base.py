"""The fusion-head contract, its registry, and the pieces heads share.

A fusion head turns the frozen encoder's tapped hidden states into the `Conditioning` a
backbone consumes. It is built from `(EncoderSpec, cond_dim, num_blocks)`: the module passes
the encoder's description, the backbone's conditioning width and its depth (None for a
backbone without per-layer hooks), so none of them appears in a recipe. Every head provides
`null_conditioning` for classifier-free guidance (a learned null token by default).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from einops import rearrange
from timm.layers import Attention, RmsNorm
from torch import Tensor, nn

from kit.layers import RotaryAttention, TransformerBlock, rotary_tables
from kit.registry import Registry
from kit.types import Conditioning, EncoderOutput, EncoderSpec, TokenKind

KindName = Literal["system", "instruction", "image", "generated", "prompt", "echo"]
RefinerPositions = Literal["none", "rope"]
InputNorm = Literal["rms", "standardize"]


class FusionHead(nn.Module, ABC):
    """Base class of fusion heads.

    The task builds every head as `Head(spec, cond_dim, num_blocks, **settings)`: the first three come
    from the encoder and the backbone, the settings from the recipe. So a head's docstring documents
    its settings only; the three are described here once.

    Args:
        spec: the frozen encoder's description (width, depth, tapped layers).
        cond_dim: the width of the conditioning the backbone expects.
        num_blocks: the backbone's depth when it takes per-layer conditioning, else None; only
            per-layer heads (key-value fusion, injection) use it.
        keep_kinds: token kinds the head conditions on; UniFusion drops system and instruction tokens.
        input_norm: how the raw tapped features are normalised: `rms`, each head's own per-token RMS
            norm (the papers'), or `standardize`: every tapped layer's dimensions standardised by their
            statistics over the training tokens (`FeatureStandardizer`), in place of that RMS norm.
    """

    provides: ClassVar[frozenset[str]] = frozenset({"tokens"})
    """The `Conditioning` fields this head fills; backbones refuse heads that share none with them."""

    test_settings: ClassVar[tuple[dict, ...]] = ({},)
    """Small constructor settings the contract tests build this head with (on `kit.testing.TINY_SPEC`);
    a registered head is enrolled in those tests with them, so a new head lists its variants here."""

    registry_name: ClassVar[str] = ""

    def __init__(
        self,
        spec: EncoderSpec,
        cond_dim: int,
        num_blocks: int | None = None,
        *,
        keep_kinds: tuple[KindName, ...] = ("prompt", "image", "generated"),
        input_norm: InputNorm = "rms",
    ) -> None:
        super().__init__()
        if input_norm not in ("rms", "standardize"):
            raise ValueError(f"{self.registry_name or type(self).__name__}: unknown input_norm {input_norm!r}; choose rms or standardize")
        self.spec = spec
        self.cond_dim = cond_dim
        self.num_blocks = num_blocks
        self.positions: tuple[int, ...] = tuple(range(spec.num_taps))  # the taps the head reads, as indices into spec.taps
        self.keep_kinds = tuple(TokenKind[k.upper()] for k in keep_kinds)
        self.null_tokens = nn.Parameter(torch.empty(1, 1, cond_dim))
        nn.init.normal_(self.null_tokens, std=0.02)
        self.standardizer = FeatureStandardizer(spec.num_taps, spec.hidden_size) if input_norm == "standardize" else None

    @abstractmethod
    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Encoder hidden states `(B, N, S, D)` -> conditioning (tokens `(B, M, cond_dim)` + mask ...)."""

    def null_conditioning(self, batch_size: int) -> Conditioning:
        """The 'no prompt' conditioning used for CFG dropout and unconditional sampling."""
        tokens = self.null_tokens.expand(batch_size, -1, -1)  # (B, 1, C)
        mask = torch.ones(batch_size, 1, dtype=torch.bool, device=tokens.device)
        return Conditioning(tokens=tokens, mask=mask)

    def layer_weights(self) -> Tensor | None:
        """`(N,)` how much each layer of `weighted_layers` contributes, for logging; None if the head has no such notion."""
        return None

    @property
    def weighted_layers(self) -> tuple[int, ...]:
        """The encoder hidden-state indices that `layer_weights()` refers to, in order: the layers of the taps the head
        reads (`positions`, every tap unless a head narrows them)."""
        return tuple(self.spec.taps[p] for p in self.positions)

    def select(self, enc: EncoderOutput) -> EncoderOutput:
        """Keep only the token kinds this head conditions on; standardise their features under `input_norm=standardize`."""
        enc = enc.select(self.keep_kinds)
        if self.standardizer is None:
            return enc
        hidden = rearrange(enc.hidden_states, "b n m d -> b m n d")  # (B, M, N, D)
        out = torch.zeros_like(hidden)
        out[enc.mask] = self.standardizer(hidden[enc.mask])  # (T, N, D): statistics of real tokens only
        return EncoderOutput(rearrange(out, "b m n d -> b n m d"), enc.mask, enc.kinds)

    def tap_norm(self) -> nn.Module:
        """The per-token RMS norm for raw tapped features `(..., D)`; the identity when `select` standardises them."""
        return RmsNorm(self.spec.hidden_size) if self.standardizer is None else nn.Identity()


FUSION_HEADS: Registry[FusionHead] = Registry("fusion head", FusionHead)


def tap_positions(spec: EncoderSpec, taps: int | Sequence[int] | None, head: str) -> tuple[int, ...]:
    """Which of the encoder's taps a head reads, as positions into `spec.taps`.

    Args:
        spec: the encoder's description.
        taps: None for all of them; an int k for every k-th tap counted back from the deepest
            (so the last layer is always read); a list of hidden-state indices (negative ones
            count from the end of `spec.taps`), each of which the encoder must return.
        head: the head's name, for error messages.
    """
    if taps is None:
        return tuple(range(spec.num_taps))
    if isinstance(taps, int):
        if taps < 1:
            raise ValueError(f"{head}: a tap stride must be at least 1, got {taps}")
        return tuple(range(spec.num_taps - 1, -1, -taps))[::-1]
    wanted = [spec.taps[t] if -spec.num_taps <= t < 0 else t for t in taps]
    missing = [t for t in wanted if t not in spec.taps]
    if missing or not wanted:
        raise ValueError(
            f"{head}: taps {list(taps)} are not all returned by the encoder {spec.name!r}, which taps hidden states "
            f"{list(spec.taps)} of its {spec.num_layers} layers (0 is the embeddings): pick among those or widen the encoder's `taps`"
        )
    return tuple(spec.taps.index(t) for t in wanted)


def tap_position(spec: EncoderSpec, tap: int, head: str) -> int:
    """Where one hidden-state index sits in `spec.taps` (a negative one counts from the deepest tap: -1 is
    the last layer); the same rule as `tap_positions`, which every head's `tap`, `taps` and `layers` follow."""
    return tap_positions(spec, [tap], head)[0]


class TokenRefiner(nn.Module):
    """Bidirectional transformer blocks over the token axis, with a padding mask (UniFusion's refiner).

    Args:
        dim: token width.
        depth: number of blocks (0 makes it the identity).
        num_heads: attention heads.
        mlp_ratio: MLP width multiple.
        positions: `none` (the paper's refiner: order only as the encoder's features carry it) or
            `rope`: rotary positions over the kept tokens, numbered in order, in every block. A
            causal VLM's word states hold an object's attributes and its place in different
            tokens (benchmarks/vlm_feature_probe.py); relative positions let the refiner join them.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, positions: RefinerPositions = "none") -> None:
        super().__init__()
        if positions not in ("none", "rope"):
            raise ValueError(f"refiner positions must be 'none' or 'rope', got {positions!r}")
        if positions == "rope" and (dim // num_heads) % 2:
            raise ValueError(f"rope refiner positions need an even head width, got {dim} / {num_heads} heads")
        self.positions = positions
        attn = RotaryAttention if positions == "rope" else Attention
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_ratio, attn_layer=attn) for _ in range(depth))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: `(B, M, dim)`; mask: `(B, M)` bool. Returns `(B, M, dim)`."""
        rope = None
        if self.positions == "rope" and len(self.blocks):
            head_dim = x.shape[-1] // self.blocks[0].attn.num_heads
            rope = rotary_tables(mask.long().cumsum(dim=1) - 1, head_dim)  # kept tokens numbered 0, 1, ... in order
        for block in self.blocks:
            x = block(x, mask, rope)  # (B, M, dim)
        return x


class SingleSequenceHead(FusionHead):
    """A head that reduces the tapped layers to one token sequence, then refines and adapts it.

    Subclasses implement `reduce` (the kept tokens' tapped states -> one sequence) and, when the
    reduction has modules of its own, `build_reducer`, which runs before the refiner and the adaptor
    are built and returns the width of the sequence it makes. Settings this class does not know are
    passed to `build_reducer`.

    Args:
        refiner_depth: bidirectional blocks over the tokens before the adaptor (0 for none).
        num_heads: attention heads of the refiner (and of the reducer's blocks, if it has any).
        mlp_ratio: MLP width multiple of the refiner (and of the reducer's blocks).
        refiner_positions: `none` or `rope` (rotary token positions in the refiner; see `TokenRefiner`).
        keep_kinds: token kinds the head conditions on.
        input_norm: `rms` or `standardize` (see `FusionHead`).
        reducer: the reducer's own settings, for `build_reducer`.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        cond_dim: int,
        num_blocks: int | None = None,
        *,
        refiner_depth: int = 0,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        refiner_positions: RefinerPositions = "none",
        keep_kinds: tuple[KindName, ...] = ("prompt", "image", "generated"),
        input_norm: InputNorm = "rms",
        **reducer,
    ) -> None:
        super().__init__(spec, cond_dim, num_blocks, keep_kinds=keep_kinds, input_norm=input_norm)
        width = self.build_reducer(num_heads=num_heads, mlp_ratio=mlp_ratio, **reducer)
        self.refiner = TokenRefiner(width, refiner_depth, num_heads, mlp_ratio, refiner_positions)
        self.adaptor = Adaptor(width, cond_dim)

    def build_reducer(self, *, num_heads: int, mlp_ratio: float) -> int:
        """Build the reduction's modules (none by default) -> the width of the sequence `reduce` returns."""
        return self.spec.hidden_size

    @abstractmethod
    def reduce(self, enc: EncoderOutput) -> Tensor:
        """The kept tokens' tapped states (`enc.hidden_states` `(B, N, M, D)`, `enc.mask` `(B, M)`) -> `(B, M, W)` one sequence."""

    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Hidden states `(B, N, S, D)` -> tokens `(B, M, cond_dim)` over the kept tokens, with mask `(B, M)`."""
        enc = self.select(enc)
        x = self.reduce(enc)  # (B, M, W)
        x = self.refiner(x, enc.mask)  # (B, M, W)
        tokens = self.adaptor(x) * enc.mask[..., None]  # (B, M, C)
        return Conditioning(tokens=tokens, mask=enc.mask)


class FeatureStandardizer(nn.Module):
    """Standardise each tapped layer's features, dimension by dimension, with their running statistics.

    A frozen encoder's hidden states share a large component across tokens and a few dimensions
    carry most of the variance (the shapes VLM: 30-60 % of the energy of taps 1-6 is the mean over
    tokens, per-dimension standard deviations span 10x). Per-token RMS normalisation keeps both;
    subtracting the mean over tokens and dividing by each dimension's spread keeps what differs
    between tokens, at unit scale in every dimension. The statistics are the exact mean and variance
    over every real token seen in training (a cumulative average: the encoder is frozen, so they are
    stationary); they are buffers, saved in checkpoints, and fixed outside training.

    Args:
        num_layers: N, the tapped layers (each has its own statistics).
        dim: D, the feature width.
        eps: added to the variance.
    """

    def __init__(self, num_layers: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(num_layers, dim))
        self.register_buffer("var", torch.ones(num_layers, dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, h: Tensor) -> None:
        """Fold the tokens `h` `(T, N, D)` into the running mean and variance (parallel-variance formula)."""
        n = h.shape[0]
        if n == 0:
            return
        x = h.detach().float()
        mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)  # (N, D) each
        total = self.count + n
        share = float(n / total)
        delta = mean - self.mean
        self.var.copy_((1 - share) * self.var + share * var + share * (1 - share) * delta**2 if self.count > 0 else var)
        self.mean.add_(share * delta)
        self.count.copy_(total)

    def forward(self, h: Tensor) -> Tensor:
        """h `(T, N, D)` real tokens -> `(T, N, D)` standardised (statistics updated first in training)."""
        if self.training:
            self.update(h)
        return ((h.float() - self.mean) * torch.rsqrt(self.var + self.eps)).to(h.dtype)


class Adaptor(nn.Sequential):
    """RMSNorm -> Linear -> GELU -> Linear: maps encoder-width tokens to the backbone's width.

    Args:
        in_dim: input width.
        out_dim: output width (the conditioning width).
        hidden_dim: hidden width; defaults to `out_dim`.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        hidden_dim = hidden_dim or out_dim
        super().__init__(RmsNorm(in_dim), nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))
