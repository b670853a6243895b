"""Layerwise Attention Pooling (LAP), UniFusion's fusion head, with its ablation knobs.

Per token, the hidden states of the tapped VLM layers form a short sequence over the layer
axis. Pre-norm transformer blocks attend across that axis (no positional encoding: the
projector carries layer identity), a projector pools it to one vector, a bidirectional
refiner attends across tokens, and an adaptor maps to the backbone's width (UniFusion,
the layerwise attention pooling section and its ablation of projectors).

Projectors (`projector=`):
- `weight`: one learned weight per layer, the paper's `Linear(N -> 1)`;
- `flatten`: a fully-connected layer over the concatenated layers, `Linear(N*W -> W)`;
- `attention`: per head, a learned query scores each (RMS-normalised) layer of each token and
  the softmax over layers weights the sum: token-dependent pooling.

The layer-axis attention and the `weight` and `attention` projectors run through `kit.kernels`:
fused Triton kernels where they can run, the PyTorch references otherwise (`KIT_KERNELS`).
Parameters and state_dict keys are the same either way.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from timm.layers import Attention, RmsNorm
from torch import Tensor, nn

from kit.fusion.base import FUSION_HEADS, SingleSequenceHead, tap_positions
from kit.kernels import attention_pool, layer_attention, weighted_sum
from kit.layers import TransformerBlock, init_linear_trunc_normal
from kit.types import EncoderOutput, EncoderSpec

ProjectorName = Literal["weight", "flatten", "attention"]


class WeightProjector(nn.Module):
    """One learned weight per layer: `(T, N, W) -> (T, W)`; dropped layers count as zero and the rest are rescaled.

    Args:
        num_layers: N, the layers pooled.
    """

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, num_layers))  # the key of LAP's original Linear(N -> 1)

    def forward(self, h: Tensor, keep: Tensor | None = None) -> Tensor:
        """h `(T, N, W)`, keep `(T, N)` bool or None -> `(T, W)` (fused kernel: `kit.kernels.weighted_sum`)."""
        return weighted_sum(h, self.weight[0], keep)

    def layer_weights(self) -> Tensor:
        return self.weight.detach()[0]


class FlattenProjector(nn.Module):
    """A fully-connected layer over the concatenated layers: `(T, N, W) -> (T, W)`.

    Args:
        num_layers: N, the layers pooled.
        width: W, the width of each layer's vector.
    """

    def __init__(self, num_layers: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_layers * width, width)

    def forward(self, h: Tensor, keep: Tensor | None = None) -> Tensor:
        """h `(T, N, W)`, keep `(T, N)` bool or None -> `(T, W)`."""
        if keep is not None:
            h = h * (keep.shape[1] / keep.sum(dim=1, keepdim=True))[..., None].to(h.dtype) * keep[..., None].to(h.dtype)
        return self.linear(rearrange(h, "t n w -> t (n w)"))

    def layer_weights(self) -> Tensor:
        """`(N,)` the norm of each layer's block of the weight matrix (a size, not a signed weight)."""
        n = self.linear.in_features // self.linear.out_features
        return rearrange(self.linear.weight.detach(), "o (n w) -> n (o w)", n=n).norm(dim=1)


class AttentionProjector(nn.Module):
    """Per head, a learned query scores each RMS-normalised layer; the softmax over layers weights their sum.

    `(T, N, W) -> (T, W)`. The mean attention of the last forward is kept for logging.

    Args:
        num_layers: N, the layers pooled.
        width: W, the width of each layer's vector.
        num_heads: heads; each scores its own `W / heads` slice.
    """

    def __init__(self, num_layers: int, width: int, num_heads: int) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"LAP attention projector: width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm = RmsNorm(width)
        self.query = nn.Parameter(torch.empty(num_heads, width // num_heads))
        self.register_buffer("mean_attention", torch.full((num_layers,), 1.0 / num_layers), persistent=False)

    def forward(self, h: Tensor, keep: Tensor | None = None) -> Tensor:
        """h `(T, N, W)`, keep `(T, N)` bool or None -> `(T, W)` (fused kernel: `kit.kernels.attention_pool`)."""
        pooled, attn = attention_pool(h, self.query, self.norm.weight, keep, self.norm.eps)  # (T, W), (T, N, K)
        if attn.shape[0]:
            self.mean_attention = attn.float().mean(dim=(0, 2))
        return pooled

    def layer_weights(self) -> Tensor:
        return self.mean_attention


class LayerAxisAttention(Attention):
    """timm's `Attention` (same parameters and state_dict keys) running `kit.kernels.layer_attention`.

    Each token's taps are the sequence: `(T, N, W)` with a `(T, N)` key mask, no attention dropout.
    """

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """x `(T, N, W)`, attn_mask `(T, 1, 1, N)` bool (as `TransformerBlock` passes it) or None -> `(T, N, W)`."""
        if is_causal or self.gate is not None or (self.training and self.attn_drop.p > 0):
            raise ValueError("LayerAxisAttention supports neither causal masks, gates nor attention dropout")
        q, k, v = rearrange(self.qkv(x), "t n (three k d) -> three t n k d", three=3, k=self.num_heads)  # (T, N, K, d) each
        keep = attn_mask[:, 0, 0, :] if attn_mask is not None else None  # (T, N)
        out = layer_attention(self.q_norm(q), self.k_norm(k), v, keep)  # (T, N, K, d)
        out = self.norm(rearrange(out, "t n k d -> t n (k d)"))  # (T, N, W)
        return self.proj_drop(self.proj(out))


@FUSION_HEADS.register("lap")
class LAPHead(SingleSequenceHead):
    """Layerwise attention pooling over the tapped layers (the reduction), then a token refiner and the adaptor.

    Args:
        taps: the encoder taps LAP reads: None for all of them, k for every k-th counted back from
            the deepest (the paper taps every 3rd layer), or a list of hidden-state indices.
        width: width of the layer-axis blocks and the refiner; None keeps the encoder's width.
        layer_depth: transformer blocks attending across the layer axis (the paper uses 2; 0 for none).
        projector: how the layers are pooled to one vector: `weight` (one learned weight per layer,
            the paper's), `flatten` (a linear layer over all layers) or `attention` (a learned query
            per head scores each layer of each token).
        refiner_depth: bidirectional blocks attending across tokens after pooling (the paper uses 2; 0 turns it off).
        layer_dropout: in training, the probability of dropping each layer of a sample (at least
            one is kept); the blocks do not attend to dropped layers and the projector skips them.
        kwargs: `SingleSequenceHead`'s other settings: `num_heads` (here also of the layer-axis blocks and
            the attention projector), `mlp_ratio` (of both stacks), `refiner_positions` (`rope` lets the
            refiner join an object's words to its place phrase), `keep_kinds`, and `input_norm` (`rms`
            per token is the paper's).
    """

    test_settings = (
        {},
        {"width": 32, "layer_depth": 1, "refiner_depth": 0},
        {"taps": 2, "projector": "attention", "layer_dropout": 0.3},
        {"taps": [2, 6], "projector": "flatten", "layer_depth": 0, "layer_dropout": 0.5},
        {"refiner_depth": 1, "refiner_positions": "rope"},
        {"input_norm": "standardize"},
    )

    def __init__(
        self,
        spec: EncoderSpec,
        cond_dim: int,
        num_blocks: int | None = None,
        *,
        taps: int | list[int] | None = None,
        width: int | None = None,
        layer_depth: int = 2,
        projector: ProjectorName = "weight",
        refiner_depth: int = 2,
        layer_dropout: float = 0.0,
        **kwargs,
    ) -> None:
        if not 0.0 <= layer_dropout < 1.0:
            raise ValueError(f"lap: layer_dropout must be in [0, 1), got {layer_dropout}")
        super().__init__(
            spec, cond_dim, num_blocks, refiner_depth=refiner_depth, taps=taps, width=width, layer_depth=layer_depth, projector=projector, **kwargs
        )
        self.layer_dropout = layer_dropout
        self.initialize_weights()

    def build_reducer(
        self, *, num_heads: int, mlp_ratio: float, taps: int | list[int] | None, width: int | None, layer_depth: int, projector: ProjectorName
    ) -> int:
        """The layer-axis stack: input norm and projection, `layer_depth` blocks across layers, the projector."""
        self.positions = tap_positions(self.spec, taps, "lap")
        n = len(self.positions)
        width = width or self.spec.hidden_size
        self.in_norm = self.tap_norm()  # tapped layers differ wildly in scale
        self.in_proj = nn.Identity() if width == self.spec.hidden_size else nn.Linear(self.spec.hidden_size, width)
        self.layer_blocks = nn.ModuleList(TransformerBlock(width, num_heads, mlp_ratio, attn_layer=LayerAxisAttention) for _ in range(layer_depth))
        if projector == "weight":
            self.projector = WeightProjector(n)
        elif projector == "flatten":
            self.projector = FlattenProjector(n, width)
        elif projector == "attention":
            self.projector = AttentionProjector(n, width, num_heads)
        else:
            raise ValueError(f"lap: unknown projector {projector!r}; choose one of weight, flatten, attention")
        return width

    def initialize_weights(self) -> None:
        """Linear layers trunc-normal(0.02), zero bias; the weight projector starts as the mean over
        layers, the flatten projector as the mean (identity blocks scaled by 1/N), the attention
        queries at zero (uniform attention, so also the mean)."""
        init_linear_trunc_normal(self)
        n = len(self.positions)
        if isinstance(self.projector, WeightProjector):
            nn.init.constant_(self.projector.weight, 1.0 / n)
        elif isinstance(self.projector, FlattenProjector):
            width = self.projector.linear.out_features
            with torch.no_grad():
                self.projector.linear.weight.copy_(torch.eye(width).repeat(1, n) / n)
        else:
            nn.init.zeros_(self.projector.query)

    def layer_weights(self) -> Tensor:
        """`(N,)` each read layer's weight in the pooling: learned weights, block norms (flatten) or
        the mean attention of the last forward pass (attention)."""
        return self.projector.layer_weights()

    def _kept_layers(self, mask: Tensor, n: int) -> Tensor | None:
        """Layer dropout: `(T, N)` bool, the same draw for all tokens of a sample; None when off."""
        if not (self.training and self.layer_dropout > 0):
            return None
        keep = torch.rand(mask.shape[0], n, device=mask.device) >= self.layer_dropout  # (B, N)
        rescue = torch.nn.functional.one_hot(torch.randint(n, (mask.shape[0],), device=mask.device), n).bool()
        keep = torch.where(keep.any(dim=1, keepdim=True), keep, rescue)  # (B, N): at least one layer each
        return keep[:, None, :].expand(-1, mask.shape[1], -1)[mask]  # (T, N)

    def reduce(self, enc: EncoderOutput) -> Tensor:
        """Kept tokens' tapped states `(B, N, M, D)` -> `(B, M, W)`: each real token's layers attend to each
        other and are pooled to one vector; padding stays zero."""
        mask = enc.mask  # (B, M)
        h = rearrange(enc.hidden_states[:, list(self.positions)], "b n m d -> b m n d")[mask]  # (T, N', D): real tokens only
        keep = self._kept_layers(mask, h.shape[1])  # (T, N') or None
        h = self.in_proj(self.in_norm(h))  # (T, N', W)
        for block in self.layer_blocks:
            h = block(h, keep)  # (T, N', W): attention across the layer axis of each token
        pooled = self.projector(h, keep)  # (T, W)
        x = pooled.new_zeros(*mask.shape, pooled.shape[-1])  # (B, M, W)
        x[mask] = pooled
        return x
