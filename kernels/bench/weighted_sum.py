"""The static variant (one learned weight per tap): Triton vs PyTorch eager vs torch.compile.

    python kernels/bench/weighted_sum.py                      # GPU: 65,536 tokens, 12 taps, W 2560 and 4096, bf16
    TRITON_INTERPRET=1 python kernels/bench/weighted_sum.py   # CPU: small fp32 shapes, Triton in its interpreter

Minimum bytes: forward reads the taps and writes one vector per token; backward reads the taps
(for the weights' gradient) and the output gradient and writes the taps' gradient. On a known
GPU the table adds the bandwidth floor (those bytes at peak bandwidth).
"""

from __future__ import annotations

import torch
from harness import Provider, compiled_provider, measure, parse_args, report, triton_provider

from kit.kernels.reference import weighted_sum_reference


def main() -> None:
    args, device, dtype = parse_args(__doc__.splitlines()[0])
    rows = []
    T, N = args.tokens, args.taps
    for W in args.widths:
        e = torch.finfo(dtype).bits // 8

        def make_inputs(W=W):
            x = torch.randn(N, T, W, device=device, dtype=dtype).transpose(0, 1).requires_grad_()  # (T, N, W) view
            return [x, torch.full((N,), 1.0 / N, device=device, dtype=dtype).requires_grad_()]

        def reference(inputs):
            return weighted_sum_reference(*inputs)

        def fused(inputs):
            from kit.kernels.triton_pool import WeightedSum

            return WeightedSum.apply(*inputs, None)

        providers = [Provider("eager", reference), compiled_provider(reference), triton_provider(device, dtype, fused)]
        fwd = (T * N * W + T * W) * e
        bwd = (2 * T * N * W + T * W) * e
        case = f"T={T} N={N} W={W} {args.dtype}"
        rows += measure(case, providers, make_inputs, {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}, device, args.warmup, args.reps)
    report("weighted_sum", rows, device, args.out)


if __name__ == "__main__":
    main()
