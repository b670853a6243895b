"""Fused kernels for layerwise pooling, each with a PyTorch reference that is also the CPU fallback.

    attention_pool(x, query, norm_weight, keep)  per-token softmax over taps, one read of each tap
    weighted_sum(x, weight, keep)                the static variant (LAP's Linear(N -> 1))
    layer_attention(q, k, v, keep)               self-attention along each token's taps

`KIT_KERNELS=auto|triton|torch` picks the implementation (`kit.kernels.dispatch`). The code lives
here and not in a top-level `kernels` package because Hugging Face libraries probe for a package
of that name; the top-level `kernels/` folder holds the docs and benchmarks.
"""

from kit.kernels.dispatch import KernelUnavailable, kernel_mode, triton_constraints
from kit.kernels.ops import attention_pool, layer_attention, weighted_sum

__all__ = ["KernelUnavailable", "attention_pool", "kernel_mode", "layer_attention", "triton_constraints", "weighted_sum"]
