"""Self-attention along the tap axis: Triton vs PyTorch SDPA (eager) vs einsum maths vs torch.compile.

    python kernels/bench/layer_attention.py                      # GPU: 65,536 tokens, 12 taps, W 2560 and 4096, bf16
    TRITON_INTERPRET=1 python kernels/bench/layer_attention.py   # CPU: small fp32 shapes, Triton in its interpreter

The `eager` baseline is PyTorch's SDPA, which timm's `Attention` calls; `einsum math` writes the
softmax out, and `torch.compile` compiles that. q, k and v are strided slices of one fused `(T, N, 3, K, d)` projection, as LAP's blocks make
them. Minimum bytes: forward reads q, k, v and writes the output; backward reads q, k, v and
the output gradient and writes three gradients.
"""

from __future__ import annotations

import math

import torch
from einops import einsum
from harness import Provider, compiled_provider, measure, parse_args, report, triton_provider

from kit.kernels.reference import layer_attention_reference


def eager_math(inputs):
    """softmax(q k^T / sqrt(d)) v written out with einsum (what a hand-written module does)."""
    q, k, v = inputs[0].unbind(dim=2)
    scores = einsum(q, k, "t n h d, t m h d -> t h n m") / math.sqrt(q.shape[-1])
    return einsum(scores.softmax(dim=-1), v, "t h n m, t m h d -> t n h d")


def main() -> None:
    args, device, dtype = parse_args(__doc__.splitlines()[0])
    rows = []
    T, N = args.tokens, args.taps
    for W in args.widths:
        heads, d = W // args.head_dim, args.head_dim
        e = torch.finfo(dtype).bits // 8

        def make_inputs(heads=heads, d=d):
            return [torch.randn(T, N, 3, heads, d, device=device, dtype=dtype).requires_grad_()]

        def sdpa(inputs):
            return layer_attention_reference(*inputs[0].unbind(dim=2))

        def fused(inputs):
            from kit.kernels.triton_layer_attention import LayerAttention

            return LayerAttention.apply(*inputs[0].unbind(dim=2), None)

        providers = [
            Provider("eager", sdpa),
            Provider("einsum math", eager_math),
            compiled_provider(eager_math),
            triton_provider(device, dtype, fused),
        ]
        fwd, bwd = 4 * T * N * W * e, 7 * T * N * W * e
        case = f"T={T} N={N} W={W} K={heads} d={d} {args.dtype}"
        rows += measure(case, providers, make_inputs, {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}, device, args.warmup, args.reps)
    report("layer_attention", rows, device, args.out)


if __name__ == "__main__":
    main()
