"""Pure-PyTorch references of the layerwise pooling ops: the CPU fallback and the test oracle.

Every op works on a per-token sequence over the tapped layers, `x (T, N, W)`: T tokens, N taps,
W channels split into K heads of `d = W / K`. `x` may be any strided view (for example the
encoder's `(B, N, S, D)` hidden states viewed as `(B*S, N, D)`); nothing here copies it.
A boolean `keep (T, N)` marks the taps a token may use (LAP's layer dropout); every token must
keep at least one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def attention_pool_reference(x: Tensor, query: Tensor, norm_weight: Tensor | None, keep: Tensor | None = None, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Attention pooling over taps: per head, a learned query scores each RMS-normalised tap.

    Args:
        x: `(T, N, W)` the taps of each token.
        query: `(K, d)` one learned query per head, `K * d = W`.
        norm_weight: `(W,)` the weight of the per-tap RMSNorm, or None for no norm.
        keep: `(T, N)` bool, the taps each token may attend to, or None for all.
        eps: the RMSNorm epsilon.

    Returns:
        `(T, W)` the pooled vectors and `(T, N, K)` the attention over taps (detached).
    """
    heads = query.shape[0]
    normed = F.rms_norm(x, (x.shape[-1],), norm_weight, eps) if norm_weight is not None else x  # (T, N, W)
    scores = torch.einsum("tnkd,kd->tnk", rearrange(normed, "t n (k d) -> t n k d", k=heads), query.to(x.dtype))  # (T, N, K)
    scores = scores / math.sqrt(query.shape[1])
    if keep is not None:
        scores = scores.masked_fill(~keep[..., None], float("-inf"))
    attn = scores.float().softmax(dim=1).to(x.dtype)  # (T, N, K): over taps
    pooled = torch.einsum("tnk,tnkd->tkd", attn, rearrange(x, "t n (k d) -> t n k d", k=heads))  # (T, K, d)
    return rearrange(pooled, "t k d -> t (k d)"), attn.detach()


def layer_scale(keep: Tensor) -> Tensor:
    """`(T, N)` bool -> `(T,)`: the inverted-dropout factor N / kept taps of each token."""
    return keep.shape[1] / keep.sum(dim=1).to(torch.float32)


def weighted_sum_reference(x: Tensor, weight: Tensor, keep: Tensor | None = None) -> Tensor:
    """The static variant: one learned weight per tap (LAP's `Linear(N -> 1)`).

    Args:
        x: `(T, N, W)` the taps of each token.
        weight: `(N,)` the weight of each tap.
        keep: `(T, N)` bool or None; dropped taps count as zero and the rest are rescaled by N / kept.

    Returns:
        `(T, W)`.
    """
    w = weight.to(x.dtype)  # (N,)
    if keep is None:
        return torch.einsum("tnw,n->tw", x, w)
    per_token = w * keep.to(x.dtype) * layer_scale(keep)[:, None].to(x.dtype)  # (T, N)
    return torch.einsum("tnw,tn->tw", x, per_token)


def layer_attention_reference(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None = None) -> Tensor:
    """Multi-head self-attention within each token's sequence of taps (no positions, no causality).

    Args:
        q, k, v: `(T, N, K, d)` queries, keys and values per token, tap and head.
        keep: `(T, N)` bool key mask, or None; a token with no kept key attends to all of them.

    Returns:
        `(T, N, K, d)`.
    """
    mask = None
    if keep is not None:
        mask = (keep | ~keep.any(dim=1, keepdim=True))[:, None, None, :]  # (T, 1, 1, N)
    out = F.scaled_dot_product_attention(*(rearrange(t, "t n k d -> t k n d") for t in (q, k, v)), attn_mask=mask)  # (T, K, N, d)
    return rearrange(out, "t k n d -> t n k d")
