"""Attention pooling over taps: Triton vs PyTorch eager vs torch.compile of the reference.

    python kernels/bench/attention_pool.py                      # GPU: 65,536 tokens, 12 taps, W 2560 and 4096, bf16
    TRITON_INTERPRET=1 python kernels/bench/attention_pool.py   # CPU: small fp32 shapes, Triton in its interpreter

The taps are a `(T, N, W)` view of per-layer `(N, T, W)` storage, as hidden states lie. Minimum
bytes: forward reads the taps and writes the pooled vectors; backward reads taps, output and
its gradient and writes the taps' gradient.
"""

from __future__ import annotations

import torch
from harness import Provider, compiled_provider, measure, parse_args, report, triton_provider

from kit.kernels.reference import attention_pool_reference


def main() -> None:
    args, device, dtype = parse_args(__doc__.splitlines()[0])
    rows = []
    T, N = args.tokens, args.taps
    for W in args.widths:
        heads = W // args.head_dim
        e = torch.finfo(dtype).bits // 8

        def make_inputs(W=W, heads=heads):
            x = torch.randn(N, T, W, device=device, dtype=dtype).transpose(0, 1).requires_grad_()  # (T, N, W) view
            query = (0.5 * torch.randn(heads, W // heads, device=device, dtype=dtype)).requires_grad_()
            norm = torch.ones(W, device=device, dtype=dtype).requires_grad_()
            return [x, query, norm]

        def reference(inputs):
            return attention_pool_reference(*inputs)[0]

        def fused(inputs):
            from kit.kernels.triton_pool import AttentionPool

            return AttentionPool.apply(*inputs, None, 1e-6, True)[0]  # with the attention LAP logs

        providers = [Provider("eager", reference), compiled_provider(reference), triton_provider(device, dtype, fused)]
        fwd = (T * N * W + T * W) * e
        bwd = (2 * T * N * W + 2 * T * W) * e
        case = f"T={T} N={N} W={W} K={heads} {args.dtype}"
        rows += measure(case, providers, make_inputs, {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}, device, args.warmup, args.reps)
    report("attention_pool", rows, device, args.out)


if __name__ == "__main__":
    main()
