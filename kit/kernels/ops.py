"""The dispatching entry points: each validates its inputs, then runs the Triton kernel or the reference.

Shape errors are raised whatever the mode (they are bugs in the caller); constraints that only
the Triton kernel has (sizes it was written for, dtypes, devices) decide between the kernel and
the reference as `kit.kernels.dispatch` describes.
"""

from __future__ import annotations

from torch import Tensor

from kit.kernels.dispatch import use_triton
from kit.kernels.reference import attention_pool_reference, layer_attention_reference, weighted_sum_reference


def _check_keep(keep: Tensor | None, T: int, N: int, op: str) -> None:
    if keep is not None and (keep.dtype.is_floating_point or tuple(keep.shape) != (T, N)):
        raise ValueError(f"{op}: keep must be a bool tensor of shape ({T}, {N}), got {keep.dtype} {tuple(keep.shape)}")


def attention_pool(x: Tensor, query: Tensor, norm_weight: Tensor | None = None, keep: Tensor | None = None, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Attention pooling over taps, `(T, N, W) -> (T, W)`, plus the `(T, N, K)` attention (detached).

    See `kit.kernels.reference.attention_pool_reference` for the arguments.
    """
    op = "attention_pool"
    if x.dim() != 3 or query.dim() != 2 or query.shape[0] * query.shape[1] != x.shape[2]:
        raise ValueError(f"{op}: x must be (T, N, W) and query (K, d) with K * d = W; got x {tuple(x.shape)}, query {tuple(query.shape)}")
    if norm_weight is not None and tuple(norm_weight.shape) != (x.shape[2],):
        raise ValueError(f"{op}: norm_weight must be ({x.shape[2]},), got {tuple(norm_weight.shape)}")
    _check_keep(keep, x.shape[0], x.shape[1], op)

    def checks() -> list[str]:
        from kit.kernels.triton_pool import MAX_WIDTH

        return [f"width {x.shape[2]} > {MAX_WIDTH} (a program holds a whole row)"] if x.shape[2] > MAX_WIDTH else []

    tensors = [t for t in (x, query, norm_weight) if t is not None]
    if use_triton(op, tensors, checks):
        from kit.kernels.triton_pool import AttentionPool

        return AttentionPool.apply(x, query, norm_weight, keep, eps, True)
    return attention_pool_reference(x, query, norm_weight, keep, eps)


def weighted_sum(x: Tensor, weight: Tensor, keep: Tensor | None = None) -> Tensor:
    """The static variant, one learned weight per tap: `(T, N, W), (N,) -> (T, W)`.

    See `kit.kernels.reference.weighted_sum_reference` for the arguments.
    """
    op = "weighted_sum"
    if x.dim() != 3 or tuple(weight.shape) != (x.shape[1],):
        raise ValueError(f"{op}: x must be (T, N, W) and weight (N,); got x {tuple(x.shape)}, weight {tuple(weight.shape)}")
    _check_keep(keep, x.shape[0], x.shape[1], op)
    if use_triton(op, [x, weight]):
        from kit.kernels.triton_pool import WeightedSum

        return WeightedSum.apply(x, weight, keep)
    return weighted_sum_reference(x, weight, keep)


def layer_attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None = None) -> Tensor:
    """Self-attention along the tap axis of each token: `(T, N, K, d) x3 -> (T, N, K, d)`.

    See `kit.kernels.reference.layer_attention_reference` for the arguments.
    """
    op = "layer_attention"
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"{op}: q, k and v must all be (T, N, K, d); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    T, N, _, d = q.shape
    _check_keep(keep, T, N, op)
    if keep is not None:
        keep = keep | ~keep.any(dim=1, keepdim=True)  # a token with no kept key attends to all of them

    def checks() -> list[str]:
        from kit.kernels.triton_layer_attention import MAX_HEAD_DIM, MAX_TAPS

        failed = [f"{N} taps > {MAX_TAPS}"] if N > MAX_TAPS else []
        return failed + ([f"head dim {d} > {MAX_HEAD_DIM}"] if d > MAX_HEAD_DIM else [])

    if use_triton(op, [q, k, v], checks):
        from kit.kernels.triton_layer_attention import LayerAttention

        return LayerAttention.apply(q, k, v, keep)
    return layer_attention_reference(q, k, v, keep)
