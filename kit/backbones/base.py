"""The backbone contract and its registry.

A backbone maps a noised input, a time in [0, 1] and a `Conditioning` to a prediction with
`out_channels` channels (by default its input's) on the input's grid. It knows nothing of
diffusion (the objective decides what the prediction means) and nothing of the encoder. It
declares which conditioning fields it consumes and refuses, at build time, a fusion head that
provides none of them.

What every patch-token family shares lives here: the patch-size check, the patch embedding with
its positions, the embedders' initialisation, unpatchifying, gradient checkpointing, and the one
meaning of per-layer conditioning (`feed_layer`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from kit.layers import PatchEmbed, TimestepEmbedder, sincos_2d
from kit.registry import Registry
from kit.types import Conditioning, PerLayerMode


class IncompatibleHeadError(ValueError):
    """A fusion head whose outputs a backbone cannot consume."""


@dataclass
class Capture:
    """The image tokens a backbone recorded after block `block` (1-based) inside `Backbone.capturing`."""

    block: int
    tokens: Tensor | None = None


class Backbone(nn.Module, ABC):
    """Base class of denoising backbones.

    Args:
        in_channels: channels of the (pixel or latent) input.
        input_size: side of the square input in pixels or latent cells.
        positions: what the image tokens' 2D sin-cos positions count: `patch` (patch indices, DiT's
            convention) or `pixel` (input pixels: patch index x patch size). With large patches (a 3x3
            token grid) patch indices leave all but the highest frequencies nearly constant across
            tokens; pixel units make every token's position distinct in many more dimensions. On latents
            the task sets `pixel_stride` (image pixels per latent cell), so `pixel` still counts image pixels.
        patch_size: patch side; `input_size` must be a multiple of it.
        out_channels: channels of the prediction (`in_channels` when None).
        gradient_checkpointing: recompute block activations in the backward pass (`run_block`).
    """

    consumes: ClassVar[frozenset[str]] = frozenset()
    """The `Conditioning` fields this backbone reads."""

    test_settings: ClassVar[tuple[dict, ...]] = ({},)
    """Small constructor settings the contract tests build this backbone with (3 channels, 8 px input);
    a registered backbone is enrolled in those tests with them, so a new one lists its variants here."""

    captures: ClassVar[bool] = False
    """Whether `forward` records image tokens for `capturing` (representation alignment, `kit.training.repa`)."""

    registry_name: ClassVar[str] = ""

    def __init__(
        self,
        in_channels: int,
        input_size: int,
        positions: Literal["patch", "pixel"] = "patch",
        *,
        patch_size: int = 1,
        out_channels: int | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if positions not in ("patch", "pixel"):
            raise ValueError(f"unknown positions {positions!r}; choose patch or pixel")
        if patch_size < 1 or input_size % patch_size:
            raise ValueError(f"input size {input_size} is not a multiple of the patch size {patch_size}")
        if out_channels is not None and out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.input_size = input_size
        self.patch_size = patch_size
        self.positions = positions
        self.pixel_stride = 1  # image pixels per input cell: 1 on pixels, the autoencoder's factor on latents
        self.gradient_checkpointing = gradient_checkpointing
        self._capture: Capture | None = None  # the open `capturing` context's record, if any

    # ------------------------------------------------------------- shared by the patch-token families
    def embed_patches(self, x: Tensor, positions_dtype: torch.dtype | None = None) -> Tensor:
        """x `(B, C, H, W)` -> patch tokens `(B, T, W)` with their sin-cos positions (needs `x_embedder` and `width`).
        The positions are cast to `positions_dtype` (the tokens' dtype when None; under autocast an fp32 input's
        dtype keeps the sum in fp32)."""
        _, _, h, w = x.shape
        p = self.patch_size
        tokens = self.x_embedder(x)  # (B, T, W)
        return tokens + self.image_positions(h // p, w // p, self.width, p, tokens.device).to(positions_dtype or tokens.dtype)[None]

    def unpatchify(self, out: Tensor, h: int, w: int) -> Tensor:
        """Per-token patches `(B, T, p*p*C_out)` -> the prediction `(B, C_out, H, W)` on an `h x w` input."""
        p = self.patch_size
        return rearrange(out, "b (h w) (p q c) -> b c (h p) (w q)", h=h // p, w=w // p, p=p, q=p)

    def init_embedders(self) -> None:
        """DiT's initialisation of the embedders: the patch projection Xavier-uniform as a linear map with
        zero bias, then every timestep MLP normal(0.02)."""
        weight = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        for module in self.modules():
            if isinstance(module, TimestepEmbedder):
                for layer in module.mlp:
                    if isinstance(layer, nn.Linear):
                        nn.init.normal_(layer.weight, std=0.02)

    def run_block(self, block: nn.Module, *args: Tensor):
        """`block(*args)`, recomputed in the backward pass when `gradient_checkpointing` is on and training."""
        if self.gradient_checkpointing and self.training:
            return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    @staticmethod
    def feed_layer(current: Tensor, layer: Tensor, mode: PerLayerMode, fresh: Tensor | None = None) -> Tensor:
        """The conditioning tokens block i reads under per-layer conditioning, one meaning in every family:
        'replace' (key-value fusion) reads `layer`, encoder layer i's tokens, in place of `current` (plus
        `fresh`, what a family adds to tokens entering its stream anew, e.g. a type embedding); 'add'
        (hidden-state injection) reads `current + layer`. Shapes `(B, M, W)`."""
        if mode == PerLayerMode.replace:
            return layer if fresh is None else layer + fresh
        return current + layer

    def image_positions(self, rows: int, cols: int, width: int, patch_size: int, device: torch.device | None = None) -> Tensor:
        """The fixed 2D sin-cos positions of a `rows x cols` token grid -> `(rows*cols, width)`, in the units of `positions`."""
        return sincos_2d(rows, cols, width, device, spacing=float(patch_size * self.pixel_stride) if self.positions == "pixel" else 1.0)

    @property
    @abstractmethod
    def cond_dim(self) -> int:
        """The conditioning width this backbone expects from a fusion head."""

    @abstractmethod
    def forward(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        """x: `(B, C, H, W)`, t: `(B,)` in [0, 1], cond -> prediction `(B, out_channels, H, W)`."""

    @property
    def token_width(self) -> int:
        """The width of the image tokens that `capturing` records (a family's `width`)."""
        width = getattr(self, "width", None)
        if not isinstance(width, int):
            raise NotImplementedError(f"{type(self).__name__} has no token width (set `width` or override token_width)")
        return width

    @property
    def capture_depth(self) -> int:
        """How many blocks `capturing` can read after (1..capture_depth)."""
        return self.num_blocks or 0

    @contextmanager
    def capturing(self, block: int) -> Iterator[Capture]:
        """Within this context every forward keeps its image tokens after block `block` (1-based) in the yielded
        `Capture`'s `tokens` `(B, T, W)`, T the token grid in reading order, W `token_width`; they stay in the
        graph. Outside it nothing is kept."""
        self.check_capture(block)
        self._capture = capture = Capture(block)
        try:
            yield capture
        finally:
            self._capture = None

    def check_capture(self, block: int) -> None:
        """Raise `ValueError` unless `capturing(block)` can record: a backbone that records, a block it has."""
        if not self.captures:
            raise ValueError(f"{type(self).__name__} cannot record its image tokens (representation alignment needs a backbone with captures = True)")
        if not 1 <= block <= self.capture_depth:
            raise ValueError(f"cannot record image tokens after block {block}: {type(self).__name__} has blocks 1..{self.capture_depth}")

    def record(self, index: int, image_tokens: Tensor) -> None:
        """Called by `forward` after block `index` (0-based) with its image tokens `(B, T, W)`."""
        if self._capture is not None and self._capture.block == index + 1:
            self._capture.tokens = image_tokens

    @property
    def num_blocks(self) -> int | None:
        """How many blocks per-layer conditioning must feed (None when the backbone takes none)."""
        return None

    def per_layer_of(self, cond: Conditioning) -> Tensor | None:
        """`cond.per_layer` `(B, L, M, W)` after checking that L is this backbone's depth (None if absent)."""
        per_layer = cond.per_layer
        if per_layer is not None and per_layer.shape[1] != self.num_blocks:
            raise ValueError(f"per-layer conditioning has {per_layer.shape[1]} layers but {type(self).__name__} has {self.num_blocks} blocks")
        return per_layer

    def check_head(self, head: nn.Module) -> None:
        """Raise `IncompatibleHeadError` if `head` provides no field this backbone consumes, or
        per-layer conditioning for a different number of blocks."""
        provides = frozenset(getattr(head, "provides", frozenset()))
        if not provides & self.consumes:
            raise IncompatibleHeadError(
                f"fusion head {type(head).__name__} provides {sorted(provides)} but backbone {type(self).__name__} "
                f"consumes {sorted(self.consumes)}: pick a head that provides one of them"
            )
        layers = getattr(head, "num_output_layers", None)
        if "per_layer" in provides and "per_layer" in self.consumes and layers is not None and layers != self.num_blocks:
            raise IncompatibleHeadError(
                f"fusion head {type(head).__name__} feeds {layers} blocks but backbone {type(self).__name__} has {self.num_blocks}: "
                "match the head's layers to the backbone's depth"
            )


class TransformerBackbone(Backbone):
    """The settings the transformer families share (the DiT families, U-ViT) and their patch embedding; a
    family adds its time path, its blocks, its own arguments (or other defaults) and `forward`.

    Args:
        in_channels: channels of the input (3 for pixels, the VAE's for latents).
        input_size: side of the square input.
        patch_size: patch side; `input_size` must be a multiple of it.
        width: token width (also the conditioning width asked of the fusion head).
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width multiple.
        gradient_checkpointing: recompute block activations in the backward pass to save memory.
        positions: what the image tokens' sin-cos positions count, `patch` or `pixel` (see `Backbone`).
        out_channels: channels of the prediction (`in_channels` when None).
    """

    def __init__(
        self,
        in_channels: int,
        input_size: int,
        *,
        patch_size: int = 2,
        width: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        gradient_checkpointing: bool = False,
        positions: Literal["patch", "pixel"] = "patch",
        out_channels: int | None = None,
    ) -> None:
        super().__init__(in_channels, input_size, positions, patch_size=patch_size, out_channels=out_channels, gradient_checkpointing=gradient_checkpointing)
        self.width, self.depth, self.num_heads, self.mlp_ratio = width, depth, num_heads, mlp_ratio
        self.x_embedder = PatchEmbed(in_channels, patch_size, width)

    @property
    def cond_dim(self) -> int:
        return self.width

    @property
    def num_blocks(self) -> int | None:
        return self.depth if "per_layer" in self.consumes else None


BACKBONES: Registry[Backbone] = Registry("backbone", Backbone)
