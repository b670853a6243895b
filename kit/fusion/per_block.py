"""Per-block heads: each backbone block reads its own encoder layer (the UniFusion paper's baselines).

- key-value fusion: block i's conditioning tokens are encoder layer `layers[i]`, projected, so the
  keys and values the block's attention sees for the prompt come from that layer;
- hidden-state injection: a last-layer token sequence conditions the backbone as usual, and
  before block i the projection of encoder layer `layers[i]` is added to it.

Both need a layer-to-layer match between encoder and backbone, which LAP avoids: each block
gets a distinct layer, so the encoder must return at least as many taps as the backbone has
blocks. The module passes the backbone's depth as `num_blocks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kit.fusion.base import FUSION_HEADS, Adaptor, FusionHead, InputNorm, KindName
from kit.layers import init_linear_trunc_normal
from kit.types import Conditioning, EncoderOutput, EncoderSpec, PerLayerMode


def block_layers(spec: EncoderSpec, num_blocks: int | None, layers: Sequence[int] | None, head: str) -> tuple[int, ...]:
    """Positions into `spec.taps` feeding backbone blocks 0..L-1.

    Args:
        spec: the encoder's description.
        num_blocks: the backbone's depth L (None: the backbone takes no per-layer conditioning).
        layers: hidden-state indices, one per block; None spreads the deepest taps evenly so that
            the last block reads the last layer.
        head: the head's name, for error messages.
    """
    if num_blocks is None:
        raise ValueError(
            f"{head} feeds each backbone block its own encoder layer, so it needs a backbone with per-layer conditioning hooks (dit, dit_xattn, mmdit); this backbone has none"
        )
    if layers is None:
        if num_blocks > spec.num_taps:
            raise ValueError(
                f"{head} gives each of the backbone's {num_blocks} blocks its own encoder layer, but the encoder {spec.name!r} "
                f"returns only {spec.num_taps} taps {list(spec.taps)}: use a backbone of depth <= {spec.num_taps} or tap more layers"
            )
        return tuple(round((i + 1) * spec.num_taps / num_blocks) - 1 for i in range(num_blocks))
    if len(layers) != num_blocks:
        raise ValueError(f"{head}: `layers` lists {len(layers)} encoder layers but the backbone has {num_blocks} blocks: give one per block")
    missing = [t for t in layers if t not in spec.taps]
    if missing:
        raise ValueError(f"{head}: layers {missing} are not returned by the encoder {spec.name!r}, which taps hidden states {list(spec.taps)}")
    return tuple(spec.taps.index(t) for t in layers)


class PerLayerProjection(nn.Module):
    """An independent RMSNorm + Linear per block, applied to all blocks at once.

    Args:
        num_layers: L, one projection per block.
        in_dim: encoder width D.
        out_dim: conditioning width C.
        eps: RMSNorm epsilon.
    """

    def __init__(self, num_layers: int, in_dim: int, out_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.norm_weight = nn.Parameter(torch.ones(num_layers, in_dim))
        self.weight = nn.Parameter(torch.empty(num_layers, out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(num_layers, out_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, h: Tensor) -> Tensor:
        """h `(B, L, M, D)` -> `(B, L, M, C)`."""
        h = h * torch.rsqrt(h.float().pow(2).mean(dim=-1, keepdim=True) + self.eps).to(h.dtype) * self.norm_weight[:, None].to(h.dtype)
        return torch.einsum("blmd,lcd->blmc", h, self.weight.to(h.dtype)) + self.bias[:, None].to(h.dtype)


class PerBlockHead(FusionHead):
    """Base of the per-block heads: the block-to-layer map and one projection per block. The backbone's
    depth (`num_blocks`) must not exceed the encoder's taps.

    Args:
        layers: hidden-state indices, one per backbone block; None spreads the taps evenly, last block on the last layer.
        keep_kinds: token kinds the head conditions on.
        input_norm: `rms` (each block's projection keeps its own RMSNorm) or `standardize` the
            encoder's features first (see `FusionHead`).
    """

    provides = frozenset({"per_layer"})

    def __init__(
        self,
        spec: EncoderSpec,
        cond_dim: int,
        num_blocks: int | None = None,
        *,
        layers: list[int] | None = None,
        keep_kinds: tuple[KindName, ...] = ("prompt", "image", "generated"),
        input_norm: InputNorm = "rms",
    ) -> None:
        super().__init__(spec, cond_dim, num_blocks, keep_kinds=keep_kinds, input_norm=input_norm)
        self.positions = block_layers(spec, num_blocks, layers, self.registry_name)
        self.num_output_layers = len(self.positions)
        self.project = PerLayerProjection(len(self.positions), spec.hidden_size, cond_dim)

    def per_layer(self, enc: EncoderOutput) -> Tensor:
        """Selected encoder output -> `(B, L, M, C)` the projected layer of each block, zero behind the mask."""
        return self.project(enc.hidden_states[:, list(self.positions)]) * enc.mask[:, None, :, None]


@FUSION_HEADS.register("kv_fusion")
class KVFusionHead(PerBlockHead):
    """Key-value fusion: block i attends to encoder layer `layers[i]` (projected) in place of a shared
    sequence (arguments: `PerBlockHead`)."""

    test_settings = ({"num_blocks": 3}, {"num_blocks": 2, "layers": [2, 6], "input_norm": "standardize"})

    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Hidden states `(B, N, S, D)` -> per_layer `(B, L, M, cond_dim)` ('replace'), mask `(B, M)`."""
        enc = self.select(enc)
        return Conditioning(mask=enc.mask, per_layer=self.per_layer(enc), per_layer_mode=PerLayerMode.replace)

    def null_conditioning(self, batch_size: int) -> Conditioning:
        """The learned null token, fed to every block."""
        per_layer = self.null_tokens[:, None].expand(batch_size, self.num_output_layers, -1, -1)  # (B, L, 1, C)
        mask = torch.ones(batch_size, 1, dtype=torch.bool, device=per_layer.device)
        return Conditioning(mask=mask, per_layer=per_layer, per_layer_mode=PerLayerMode.replace)


@FUSION_HEADS.register("injection")
class InjectionHead(PerBlockHead):
    """Hidden-state injection: last-layer tokens (adapted) condition the backbone, and before block i
    the projection of encoder layer `layers[i]` is added to them. The injections start at zero, so
    training starts from last-layer conditioning (arguments: `PerBlockHead`)."""

    test_settings = ({"num_blocks": 4}, {"num_blocks": 1, "layers": [5], "input_norm": "standardize"})

    provides = frozenset({"tokens", "per_layer"})

    def __init__(self, spec: EncoderSpec, cond_dim: int, num_blocks: int | None = None, **kwargs) -> None:
        super().__init__(spec, cond_dim, num_blocks, **kwargs)
        self.adaptor = Adaptor(spec.hidden_size, cond_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Adaptor trunc-normal(0.02), zero bias; injection projections zero (no injection at the start)."""
        init_linear_trunc_normal(self)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, enc: EncoderOutput) -> Conditioning:
        """Hidden states `(B, N, S, D)` -> tokens `(B, M, C)` from the last tap, per_layer `(B, L, M, C)` ('add'), mask `(B, M)`."""
        enc = self.select(enc)
        tokens = self.adaptor(enc.hidden_states[:, -1]) * enc.mask[..., None]  # (B, M, C)
        return Conditioning(tokens=tokens, mask=enc.mask, per_layer=self.per_layer(enc), per_layer_mode=PerLayerMode.add)

    def null_conditioning(self, batch_size: int) -> Conditioning:
        """The learned null token, with nothing injected."""
        tokens = self.null_tokens.expand(batch_size, -1, -1)  # (B, 1, C)
        per_layer = tokens.new_zeros(batch_size, self.num_output_layers, 1, self.cond_dim)  # (B, L, 1, C)
        mask = torch.ones(batch_size, 1, dtype=torch.bool, device=tokens.device)
        return Conditioning(tokens=tokens, mask=mask, per_layer=per_layer, per_layer_mode=PerLayerMode.add)
