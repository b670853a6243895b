"""Triton kernels for pooling over taps: attention pooling (online softmax) and the static weighted sum.

Both read each tap of each token exactly once per pass, from wherever it lies (`x` is any
`(T, N, W)` view: three strides, no stacked copy), accumulate in fp32 and write one `(T, W)`
vector per token. Attention pooling keeps the per-(token, head) log-sum-exp of the forward so
that the backward recomputes every attention weight in the same single pass over the taps
that produces the input gradient; the query / norm-weight gradient is reduced per program
(a persistent grid, so the partial sums stay small) and summed on the host.

Attention-pooling maths, per token and head k with `u = g * q / sqrt(d)` (g: RMSNorm weight):
    r_n = rsqrt(mean_w x_n^2 + eps),  s_nk = r_n <x_nk, u_k>,  a_nk = softmax_n(s_nk),  o_k = sum_n a_nk x_nk
    dx_nk = a_nk do_k + ds_nk r_n u_k - (sum_k ds_nk s_nk) r_n^2 x_n / W,  ds_nk = a_nk (<do_k, x_nk> - <do_k, o_k>)
    du_k = sum_{t,n} ds_nk r_n x_nk
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from kit.kernels.dispatch import interpreted

MAX_BLOCK = 4096  # fp32 values of one program's tile (tokens x channels) on a GPU
MAX_WIDTH = 16384  # attention pooling holds a token's whole row (it needs the RMS over all channels)


def _programs(device: torch.device) -> int:
    """A persistent grid size: a few programs per streaming multiprocessor (4 under the interpreter)."""
    if device.type != "cuda":
        return 4
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count


def _tile(heads: int, d: int) -> tuple[int, int]:
    """(tokens per program, warps) for attention pooling: each program holds whole rows of `heads * d` channels."""
    padded = triton.next_power_of_2(heads) * triton.next_power_of_2(d)
    budget = MAX_BLOCK * (64 if interpreted() else 1)  # the interpreter pays per program, not per register
    block_t = 1
    while block_t < 64 and 2 * block_t * padded <= budget:
        block_t *= 2
    return block_t, 8 if padded >= 2048 else 4


@triton.jit
def _attention_pool_fwd(
    X, U, KEEP, OUT, LSE, SCORES,
    T, N, sxt, sxn, sxw, skt, skn, eps,
    W: tl.constexpr, D: tl.constexpr, HEADS: tl.constexpr,
    HAS_NORM: tl.constexpr, HAS_KEEP: tl.constexpr, STORE_SCORES: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)  # (BT,)
    kk = tl.arange(0, BLOCK_K)
    ch = kk[:, None] * D + tl.arange(0, BLOCK_D)[None, :]  # (BK, BD): channel of (head, dim)
    ch_ok = (kk[:, None] < HEADS) & (tl.arange(0, BLOCK_D)[None, :] < D)
    t_ok = t < T
    tile_ok = t_ok[:, None, None] & ch_ok[None]  # (BT, BK, BD)
    tk_ok = t_ok[:, None] & (kk[None, :] < HEADS)  # (BT, BK)
    u = tl.load(U + ch, mask=ch_ok, other=0.0)  # (BK, BD) fp32
    x_ptrs = X + t[:, None, None].to(tl.int64) * sxt + ch[None].to(tl.int64) * sxw  # (BT, BK, BD)
    m_i = tl.full((BLOCK_T, BLOCK_K), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_T, BLOCK_K), tl.float32)
    acc = tl.zeros((BLOCK_T, BLOCK_K, BLOCK_D), tl.float32)
    for n in range(N):
        x = tl.load(x_ptrs + n * sxn, mask=tile_ok, other=0.0).to(tl.float32)  # (BT, BK, BD)
        s = tl.sum(x * u[None], axis=2)  # (BT, BK)
        if HAS_NORM:
            s = s * (1.0 / tl.sqrt(tl.sum(tl.sum(x * x, axis=2), axis=1) / W + eps))[:, None]
        if HAS_KEEP:
            kept = tl.load(KEEP + t.to(tl.int64) * skt + n * skn, mask=t_ok, other=0)  # (BT,)
            s = tl.where(kept[:, None] != 0, s, float("-inf"))
        if STORE_SCORES:
            tl.store(SCORES + (t[:, None].to(tl.int64) * N + n) * HEADS + kk[None, :], s, mask=tk_ok)
        m_new = tl.maximum(m_i, s)
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # no NaN while every tap so far is dropped
        alpha = tl.exp(m_i - m_ref)
        p = tl.exp(s - m_ref)
        l_i = l_i * alpha + p
        acc = acc * alpha[:, :, None] + p[:, :, None] * x
        m_i = m_new
    l_i = tl.where(l_i > 0, l_i, 1.0)  # rows past T (never stored) would divide 0 by 0
    out = acc / l_i[:, :, None]
    tl.store(OUT + t[:, None, None].to(tl.int64) * W + ch[None], out.to(OUT.dtype.element_ty), mask=tile_ok)
    tl.store(LSE + t[:, None].to(tl.int64) * HEADS + kk[None, :], m_i + tl.log(l_i), mask=tk_ok)


@triton.jit
def _attention_pool_bwd(
    X, U, KEEP, OUT, DOUT, LSE, DX, DU_PART,
    T, N, sxt, sxn, sxw, skt, skn, sdt, sdn, eps,
    W: tl.constexpr, D: tl.constexpr, HEADS: tl.constexpr,
    HAS_NORM: tl.constexpr, HAS_KEEP: tl.constexpr, WRITE_DX: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    kk = tl.arange(0, BLOCK_K)
    ch = kk[:, None] * D + tl.arange(0, BLOCK_D)[None, :]  # (BK, BD)
    ch_ok = (kk[:, None] < HEADS) & (tl.arange(0, BLOCK_D)[None, :] < D)
    u = tl.load(U + ch, mask=ch_ok, other=0.0)  # (BK, BD) fp32
    du = tl.zeros((BLOCK_K, BLOCK_D), tl.float32)
    for block in range(pid, tl.cdiv(T, BLOCK_T), tl.num_programs(0)):  # persistent over token blocks
        t = block * BLOCK_T + tl.arange(0, BLOCK_T)  # (BT,)
        t_ok = t < T
        tile_ok = t_ok[:, None, None] & ch_ok[None]
        rows = t[:, None, None].to(tl.int64) * W + ch[None]  # (BT, BK, BD) in the dense (T, W) tensors
        do = tl.load(DOUT + rows, mask=tile_ok, other=0.0).to(tl.float32)
        o = tl.load(OUT + rows, mask=tile_ok, other=0.0).to(tl.float32)
        delta = tl.sum(do * o, axis=2)  # (BT, BK): <do_k, o_k>
        lse = tl.load(LSE + t[:, None].to(tl.int64) * HEADS + kk[None, :], mask=t_ok[:, None] & (kk[None, :] < HEADS), other=0.0)
        x_ptrs = X + t[:, None, None].to(tl.int64) * sxt + ch[None].to(tl.int64) * sxw
        dx_ptrs = DX + t[:, None, None].to(tl.int64) * sdt + ch[None]
        for n in range(N):
            x = tl.load(x_ptrs + n * sxn, mask=tile_ok, other=0.0).to(tl.float32)  # (BT, BK, BD)
            if HAS_NORM:
                r = 1.0 / tl.sqrt(tl.sum(tl.sum(x * x, axis=2), axis=1) / W + eps)  # (BT,)
            else:
                r = tl.full((BLOCK_T,), 1.0, tl.float32)
            s = tl.sum(x * u[None], axis=2) * r[:, None]  # (BT, BK), finite
            if HAS_KEEP:
                kept = tl.load(KEEP + t.to(tl.int64) * skt + n * skn, mask=t_ok, other=0)
                a = tl.where(kept[:, None] != 0, tl.exp(s - lse), 0.0)
            else:
                a = tl.exp(s - lse)
            a = tl.where(t_ok[:, None], a, 0.0)
            ds = a * (tl.sum(do * x, axis=2) - delta)  # (BT, BK)
            du += tl.sum(ds[:, :, None] * r[:, None, None] * x, axis=0)
            if WRITE_DX:
                dx = a[:, :, None] * do + ds[:, :, None] * r[:, None, None] * u[None]
                if HAS_NORM:
                    dx -= (tl.sum(ds * s, axis=1) * r * r / W)[:, None, None] * x
                tl.store(dx_ptrs + n * sdn, dx.to(DX.dtype.element_ty), mask=tile_ok)
    tl.store(DU_PART + pid.to(tl.int64) * W + ch, du, mask=ch_ok)


class AttentionPool(torch.autograd.Function):
    """`(x, query, norm_weight, keep, eps, store_scores) -> (pooled (T, W), attention (T, N, K) or None)`."""

    @staticmethod
    def forward(ctx, x: Tensor, query: Tensor, norm_weight: Tensor | None, keep: Tensor | None, eps: float, store_scores: bool):
        T, N, W = x.shape
        heads, d = query.shape
        scale = 1.0 / math.sqrt(d)
        u = query.float().reshape(W) * scale
        if norm_weight is not None:
            u = u * norm_weight.float()
        keep_u8 = keep.to(torch.uint8) if keep is not None else None
        out = torch.empty(T, W, device=x.device, dtype=x.dtype)
        lse = torch.empty(T, heads, device=x.device, dtype=torch.float32)
        scores = torch.empty(T, N, heads, device=x.device, dtype=torch.float32) if store_scores else lse
        block_t, warps = _tile(heads, d)
        if T:
            _attention_pool_fwd[(triton.cdiv(T, block_t),)](
                x, u, keep_u8 if keep_u8 is not None else x, out, lse, scores,
                T, N, *x.stride(), *(keep_u8.stride() if keep_u8 is not None else (0, 0)), eps,
                W=W, D=d, HEADS=heads, HAS_NORM=norm_weight is not None, HAS_KEEP=keep is not None, STORE_SCORES=store_scores,
                BLOCK_T=block_t, BLOCK_K=triton.next_power_of_2(heads), BLOCK_D=triton.next_power_of_2(d), num_warps=warps,
            )  # fmt: skip
        ctx.save_for_backward(x, u, query, norm_weight, keep_u8, out, lse)
        ctx.eps, ctx.scale = eps, scale
        attn = (scores - lse[:, None, :]).exp().to(x.dtype) if store_scores else None
        if attn is not None:
            ctx.mark_non_differentiable(attn)
        return out, attn

    @staticmethod
    def backward(ctx, dout: Tensor, dattn: Tensor | None):
        x, u, query, norm_weight, keep_u8, out, lse = ctx.saved_tensors
        T, N, W = x.shape
        heads, d = query.shape
        write_dx = ctx.needs_input_grad[0]
        dx = torch.empty(T, N, W, device=x.device, dtype=x.dtype) if write_dx else None
        block_t, warps = _tile(heads, d)
        programs = max(1, min(triton.cdiv(T, block_t), _programs(x.device)))
        du_part = torch.zeros(programs, W, device=x.device, dtype=torch.float32)
        if T:
            _attention_pool_bwd[(programs,)](
                x, u, keep_u8 if keep_u8 is not None else x, out, dout.contiguous(), lse, dx if dx is not None else out, du_part,
                T, N, *x.stride(), *(keep_u8.stride() if keep_u8 is not None else (0, 0)), *(dx.stride()[:2] if dx is not None else (0, 0)), ctx.eps,
                W=W, D=d, HEADS=heads, HAS_NORM=norm_weight is not None, HAS_KEEP=keep_u8 is not None, WRITE_DX=write_dx,
                BLOCK_T=block_t, BLOCK_K=triton.next_power_of_2(heads), BLOCK_D=triton.next_power_of_2(d), num_warps=warps,
            )  # fmt: skip
        du = du_part.sum(dim=0)  # (W,) fp32
        dquery = dnorm = None
        if ctx.needs_input_grad[1]:
            g = norm_weight.float() if norm_weight is not None else 1.0
            dquery = (du * g * ctx.scale).reshape(heads, d).to(query.dtype)
        if norm_weight is not None and ctx.needs_input_grad[2]:
            dnorm = (du * query.float().reshape(W) * ctx.scale).to(norm_weight.dtype)
        return dx, dquery, dnorm, None, None, None


@triton.jit
def _weighted_sum_fwd(
    X, WEIGHT, KEEP, SCALE, OUT,
    T, N, W, sxt, sxn, sxw, skt, skn,
    HAS_KEEP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)  # (BT,)
    c = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)  # (BW,)
    t_ok = t < T
    ok = t_ok[:, None] & (c[None, :] < W)
    x_ptrs = X + t[:, None].to(tl.int64) * sxt + c[None, :].to(tl.int64) * sxw
    acc = tl.zeros((BLOCK_T, BLOCK_W), tl.float32)
    if HAS_KEEP:
        scale = tl.load(SCALE + t, mask=t_ok, other=0.0)  # (BT,): N / kept taps
    for n in range(N):
        w = tl.load(WEIGHT + n).to(tl.float32)
        x = tl.load(x_ptrs + n * sxn, mask=ok, other=0.0).to(tl.float32)
        if HAS_KEEP:
            kept = tl.load(KEEP + t.to(tl.int64) * skt + n * skn, mask=t_ok, other=0)
            acc += tl.where(kept != 0, w * scale, 0.0)[:, None] * x
        else:
            acc += w * x
    tl.store(OUT + t[:, None].to(tl.int64) * W + c[None, :], acc.to(OUT.dtype.element_ty), mask=ok)


@triton.jit
def _weighted_sum_bwd(
    X, WEIGHT, KEEP, SCALE, DOUT, DX, DW_PART,
    T, N, W, sxt, sxn, sxw, skt, skn, sdt, sdn,
    HAS_KEEP: tl.constexpr, WRITE_DX: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_t, pid_w = tl.program_id(0), tl.program_id(1)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    c = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)
    t_ok = t < T
    ok = t_ok[:, None] & (c[None, :] < W)
    do = tl.load(DOUT + t[:, None].to(tl.int64) * W + c[None, :], mask=ok, other=0.0).to(tl.float32)  # (BT, BW)
    if HAS_KEEP:
        scale = tl.load(SCALE + t, mask=t_ok, other=0.0)
    x_ptrs = X + t[:, None].to(tl.int64) * sxt + c[None, :].to(tl.int64) * sxw
    taps = tl.arange(0, BLOCK_N)
    dw = tl.zeros((BLOCK_N,), tl.float32)
    for n in range(N):
        x = tl.load(x_ptrs + n * sxn, mask=ok, other=0.0).to(tl.float32)
        dots = tl.sum(do * x, axis=1)  # (BT,)
        w = tl.load(WEIGHT + n).to(tl.float32)
        if HAS_KEEP:
            kept = tl.load(KEEP + t.to(tl.int64) * skt + n * skn, mask=t_ok, other=0)
            factor = tl.where(kept != 0, scale, 0.0)  # (BT,)
        else:
            factor = tl.full((BLOCK_T,), 1.0, tl.float32)
        dw += tl.where(taps == n, tl.sum(factor * dots, axis=0), 0.0)
        if WRITE_DX:
            dx = (w * factor)[:, None] * do
            tl.store(DX + t[:, None].to(tl.int64) * sdt + n * sdn + c[None, :], dx.to(DX.dtype.element_ty), mask=ok)
    part = (pid_t * tl.num_programs(1) + pid_w).to(tl.int64) * BLOCK_N
    tl.store(DW_PART + part + taps, dw, mask=taps < N)


def _sum_tiles(T: int, W: int) -> tuple[int, int]:
    block_w = min(triton.next_power_of_2(W), 1024)
    budget = MAX_BLOCK * (64 if interpreted() else 1)
    return max(1, min(triton.next_power_of_2(T), budget // block_w, 64)), block_w


class WeightedSum(torch.autograd.Function):
    """`(x, weight, keep) -> (T, W)`: one weight per tap, dropped taps zero and the rest rescaled."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, keep: Tensor | None):
        T, N, W = x.shape
        keep_u8 = keep.to(torch.uint8) if keep is not None else None
        scale = (N / keep.sum(dim=1).to(torch.float32)) if keep is not None else None
        out = torch.empty(T, W, device=x.device, dtype=x.dtype)
        block_t, block_w = _sum_tiles(T, W)
        if T:
            _weighted_sum_fwd[(triton.cdiv(T, block_t), triton.cdiv(W, block_w))](
                x, weight, keep_u8 if keep is not None else x, scale if scale is not None else x, out,
                T, N, W, *x.stride(), *(keep_u8.stride() if keep is not None else (0, 0)),
                HAS_KEEP=keep is not None, BLOCK_T=block_t, BLOCK_W=block_w,
            )  # fmt: skip
        ctx.save_for_backward(x, weight, keep_u8, scale)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        x, weight, keep_u8, scale = ctx.saved_tensors
        T, N, W = x.shape
        write_dx = ctx.needs_input_grad[0]
        dx = torch.empty(T, N, W, device=x.device, dtype=x.dtype) if write_dx else None
        block_t, block_w = _sum_tiles(T, W)
        grid = (triton.cdiv(T, block_t), triton.cdiv(W, block_w))
        block_n = triton.next_power_of_2(N)
        dw_part = torch.zeros(grid[0] * grid[1], block_n, device=x.device, dtype=torch.float32)
        if T:
            _weighted_sum_bwd[grid](
                x, weight, keep_u8 if keep_u8 is not None else x, scale if scale is not None else x, dout.contiguous(),
                dx if dx is not None else x, dw_part,
                T, N, W, *x.stride(), *(keep_u8.stride() if keep_u8 is not None else (0, 0)), *(dx.stride()[:2] if dx is not None else (0, 0)),
                HAS_KEEP=keep_u8 is not None, WRITE_DX=write_dx, BLOCK_T=block_t, BLOCK_W=block_w, BLOCK_N=block_n,
            )  # fmt: skip
        dweight = dw_part.sum(dim=0)[:N].to(weight.dtype) if ctx.needs_input_grad[1] else None
        return dx, dweight, None
