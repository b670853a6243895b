"""The fusion-head contract, its registry, and the pieces heads share.

A fusion head turns the frozen encoder's tapped hidden states into the `Conditioning` a
backbone consumes. It is built from `(EncoderSpec, cond_dim)`: the module passes both, so
widths never appear in recipes. Every head provides `null_conditioning` for
classifier-free guidance (a learned null token by default).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch
from timm.layers import RmsNorm
from torch import Tensor, nn

from kit.layers import TransformerBlock
from kit.registry import Registry
from kit.types import Conditioning, EncoderOutput, EncoderSpec, TokenKind

KindName = Literal["system", "instruction", "image", "generated", "prompt"]


class FusionHead(nn.Module, ABC):
    """Base class of fusion heads.

    Args:
        spec: the frozen encoder's description (width, depth, tapped layers).
        cond_dim: the width of the conditioning the backbone expects.
        keep_kinds: token kinds the head conditions on; UniFusion drops system and instruction tokens.
    """

    provides: ClassVar[frozenset[str]] = frozenset({"tokens"})
    """The `Conditioning` fields this head fills; backbones refuse heads that share none with them."""

    registry_name: ClassVar[str] = ""

    def __init__(self, spec: EncoderSpec, cond_dim: int, *, keep_kinds: tuple[KindName, ...] = ("prompt", "image", "generated")) -> None:
        super().__init__()
        self.spec = spec
        self.cond_dim = cond_dim
        self.keep_kinds = tuple(TokenKind[k.upper()] for k in keep_kinds)
        self.null_tokens = nn.Parameter(torch.empty(1, 1, cond_dim))
        nn.init.normal_(self.null_tokens, std=0.02)

    @abstractmethod
    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Encoder hidden states `(B, N, S, D)` -> conditioning (tokens `(B, M, cond_dim)` + mask ...)."""

    def null_conditioning(self, batch_size: int) -> Conditioning:
        """The 'no prompt' conditioning used for CFG dropout and unconditional sampling."""
        tokens = self.null_tokens.expand(batch_size, -1, -1)  # (B, 1, C)
        mask = torch.ones(batch_size, 1, dtype=torch.bool, device=tokens.device)
        return Conditioning(tokens=tokens, mask=mask)

    def layer_weights(self) -> Tensor | None:
        """`(N,)` how much each tapped layer contributes, for logging; None if the head has no such notion."""
        return None

    def select(self, enc: EncoderOutput) -> EncoderOutput:
        """Keep only the token kinds this head conditions on."""
        return enc.select(self.keep_kinds)


FUSION_HEADS: Registry[FusionHead] = Registry("fusion head", FusionHead)


class TokenRefiner(nn.Module):
    """Bidirectional transformer blocks over the token axis, with a padding mask (UniFusion's refiner).

    Args:
        dim: token width.
        depth: number of blocks (0 makes it the identity).
        num_heads: attention heads.
        mlp_ratio: MLP width multiple.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: `(B, M, dim)`; mask: `(B, M)` bool. Returns `(B, M, dim)`."""
        for block in self.blocks:
            x = block(x, mask)  # (B, M, dim)
        return x


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
