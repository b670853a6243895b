"""Triton kernel for multi-head self-attention along the layer axis of each token.

Each token's taps form a sequence of at most 64 with head dimension at most 128, so one
program holds a whole (token, head) problem: Q, K, V `(N, d)` are read once, the `(N, N)`
scores never leave registers, and the backward recomputes them instead of storing the
attention matrix (nothing but Q, K, V and the output gradient is read). Keys may be masked
per token (LAP's layer dropout). Inputs may be strided views (`(T, N, K, d)` slices of a
fused QKV projection) as long as the head dimension is contiguous.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

MAX_TAPS = 64
MAX_HEAD_DIM = 128


@triton.jit
def _load(P, t, h, st, sn, sh, nn, dd, ok):
    """The `(BN, BD)` tile of token t, head h of a `(T, N, K, d)` tensor with strides (st, sn, sh, 1), as fp32."""
    return tl.load(P + t.to(tl.int64) * st + h * sh + nn[:, None] * sn + dd[None, :], mask=ok, other=0.0).to(tl.float32)


@triton.jit
def _probabilities(q, k, KEEP, t, skt, skn, nn, N, scale, HAS_KEEP: tl.constexpr, PRECISION: tl.constexpr):
    """Softmax over kept keys of `q k^T * scale`: `(BN, BN)` fp32."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BN, BN)
    key_ok = nn < N
    if HAS_KEEP:
        key_ok = key_ok & (tl.load(KEEP + t.to(tl.int64) * skt + nn * skn, mask=nn < N, other=0) != 0)
    s = tl.where(key_ok[None, :], s, float("-inf"))
    p = tl.exp(s - tl.max(s, axis=1)[:, None])
    return p / tl.sum(p, axis=1)[:, None]


@triton.jit
def _tiles(Q, K, V, t, h, N, D, sqt, sqn, sqh, skt_, skn_, skh_, svt, svn, svh, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The program's (token t, head h): its q, k, v tiles `(BN, BD)` fp32, tap and channel ranges, and their mask."""
    nn = tl.arange(0, BLOCK_N)
    dd = tl.arange(0, BLOCK_D)
    ok = (nn[:, None] < N) & (dd[None, :] < D)
    q = _load(Q, t, h, sqt, sqn, sqh, nn, dd, ok)
    k = _load(K, t, h, skt_, skn_, skh_, nn, dd, ok)
    v = _load(V, t, h, svt, svn, svh, nn, dd, ok)
    return q, k, v, nn, dd, ok


@triton.jit
def _layer_attention_fwd(
    Q, K, V, KEEP, OUT,
    N, D, sqt, sqn, sqh, skt_, skn_, skh_, svt, svn, svh, sot, son, soh, skt, skn, scale,
    HAS_KEEP: tl.constexpr, PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    t, h = tl.program_id(0), tl.program_id(1)
    q, k, v, nn, dd, ok = _tiles(Q, K, V, t, h, N, D, sqt, sqn, sqh, skt_, skn_, skh_, svt, svn, svh, BLOCK_N, BLOCK_D)  # (BN, BD) each
    p = _probabilities(q, k, KEEP, t, skt, skn, nn, N, scale, HAS_KEEP, PRECISION)  # (BN, BN)
    o = tl.dot(p, v, input_precision=PRECISION)  # (BN, BD)
    tl.store(OUT + t.to(tl.int64) * sot + h * soh + nn[:, None] * son + dd[None, :], o.to(OUT.dtype.element_ty), mask=ok)


@triton.jit
def _layer_attention_bwd(
    Q, K, V, KEEP, DO, DQ, DK, DV,
    N, D, sqt, sqn, sqh, skt_, skn_, skh_, svt, svn, svh, sdt, sdn, sdh, sgt, sgn, sgh, skt, skn, scale,
    HAS_KEEP: tl.constexpr, PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    t, h = tl.program_id(0), tl.program_id(1)
    q, k, v, nn, dd, ok = _tiles(Q, K, V, t, h, N, D, sqt, sqn, sqh, skt_, skn_, skh_, svt, svn, svh, BLOCK_N, BLOCK_D)  # (BN, BD) each
    do = _load(DO, t, h, sdt, sdn, sdh, nn, dd, ok)
    p = _probabilities(q, k, KEEP, t, skt, skn, nn, N, scale, HAS_KEEP, PRECISION)  # (BN, BN)
    o = tl.dot(p, v, input_precision=PRECISION)  # recomputed, (BN, BD)
    delta = tl.sum(do * o, axis=1)  # (BN,)
    dv = tl.dot(tl.trans(p), do, input_precision=PRECISION)  # (BN, BD)
    ds = p * (tl.dot(do, tl.trans(v), input_precision=PRECISION) - delta[:, None])  # (BN, BN)
    dq = tl.dot(ds, k, input_precision=PRECISION) * scale
    dk = tl.dot(tl.trans(ds), q, input_precision=PRECISION) * scale
    grad = t.to(tl.int64) * sgt + h * sgh + nn[:, None] * sgn + dd[None, :]  # the three gradients share one layout
    tl.store(DQ + grad, dq.to(DQ.dtype.element_ty), mask=ok)
    tl.store(DK + grad, dk.to(DK.dtype.element_ty), mask=ok)
    tl.store(DV + grad, dv.to(DV.dtype.element_ty), mask=ok)


def _unit_last(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _launch_args(q: Tensor) -> dict:
    T, N, heads, d = q.shape
    return dict(
        grid=(T, heads),
        meta=dict(
            PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
            BLOCK_N=max(16, triton.next_power_of_2(N)),
            BLOCK_D=max(16, triton.next_power_of_2(d)),
            num_warps=4 if N * d <= 4096 else 8,
        ),
    )


class LayerAttention(torch.autograd.Function):
    """`(q, k, v, keep) -> (T, N, K, d)`: softmax(q k^T / sqrt(d)) v within each token, over kept keys."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None):
        q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
        T, N, heads, d = q.shape
        keep_u8 = keep.to(torch.uint8) if keep is not None else None
        out = torch.empty(T, N, heads, d, device=q.device, dtype=q.dtype)
        scale = 1.0 / math.sqrt(d)
        launch = _launch_args(q)
        if T:
            _layer_attention_fwd[launch["grid"]](
                q, k, v, keep_u8 if keep_u8 is not None else q, out,
                N, d, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
                *(keep_u8.stride() if keep_u8 is not None else (0, 0)), scale,
                HAS_KEEP=keep_u8 is not None, **launch["meta"],
            )  # fmt: skip
        ctx.save_for_backward(q, k, v, keep_u8)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        q, k, v, keep_u8 = ctx.saved_tensors
        dout = _unit_last(dout)
        T, N, heads, d = q.shape
        dq, dk, dv = (torch.empty(T, N, heads, d, device=q.device, dtype=q.dtype) for _ in range(3))
        launch = _launch_args(q)
        if T:
            _layer_attention_bwd[launch["grid"]](
                q, k, v, keep_u8 if keep_u8 is not None else q, dout, dq, dk, dv,
                N, d, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *dout.stride()[:3], *dq.stride()[:3],
                *(keep_u8.stride() if keep_u8 is not None else (0, 0)), ctx.scale,
                HAS_KEEP=keep_u8 is not None, **launch["meta"],
            )  # fmt: skip
        return dq, dk, dv, None
