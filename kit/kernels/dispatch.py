"""Choosing between the Triton kernels and the PyTorch references: `KIT_KERNELS=auto|triton|torch`.

- `torch`: always the reference.
- `auto` (the default): Triton when it can run these tensors (CUDA tensors, or CPU tensors under
  `TRITON_INTERPRET=1`) and every constraint of the op holds; otherwise the reference, silently.
- `triton`: Triton or a `KernelUnavailable` that names the constraint that failed.

The mode is read at every call, so tests and notebooks can switch it with `monkeypatch.setenv`
or `os.environ` without re-importing anything.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

MODES = ("auto", "triton", "torch")
INTERPRETER_DTYPES = (torch.float32,)
GPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class KernelUnavailable(RuntimeError):
    """`KIT_KERNELS=triton` was asked for an op whose Triton kernel cannot run these inputs."""


def kernel_mode() -> str:
    """The current `KIT_KERNELS` mode (`auto` when unset)."""
    mode = os.environ.get("KIT_KERNELS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"KIT_KERNELS={mode!r} is not a mode; choose one of {', '.join(MODES)}")
    return mode


def interpreted() -> bool:
    """True when Triton runs kernels in its CPU interpreter (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_constraints(tensors: Sequence[Tensor]) -> list[str]:
    """Why Triton cannot run on these tensors at all (empty when it can): install, device, dtype."""
    if importlib.util.find_spec("triton") is None:
        return ["triton is not installed (pip install 'kit[triton]')"]
    devices = {t.device.type for t in tensors}
    if len(devices) > 1:
        return [f"tensors on several devices {sorted(devices)}"]
    device = devices.pop()
    dtypes = {t.dtype for t in tensors if t.is_floating_point()}
    if device == "cpu":
        if not interpreted():
            return ["CPU tensors need TRITON_INTERPRET=1 (set before kit.kernels is imported)"]
        allowed = INTERPRETER_DTYPES
    elif device == "cuda":
        if interpreted():
            return ["TRITON_INTERPRET=1 runs kernels on the CPU; unset it for CUDA tensors"]
        allowed = GPU_DTYPES
    else:
        return [f"device {device!r} has no Triton backend"]
    bad = sorted(str(d) for d in dtypes if d not in allowed)
    if bad:
        return [
            f"dtype {', '.join(bad)} is not supported on {device}{' under the interpreter' if device == 'cpu' else ''} (supported: {', '.join(str(d) for d in allowed)})"
        ]
    return []


def use_triton(op: str, tensors: Sequence[Tensor], checks: Callable[[], list[str]] | None = None) -> bool:
    """Whether `op` should run its Triton kernel on `tensors`; `checks()` lists the op's own failed constraints."""
    mode = kernel_mode()
    if mode == "torch":
        return False
    failed = triton_constraints(tensors)
    if not failed and checks is not None:
        failed = checks()
    if not failed:
        return True
    if mode == "triton":
        raise KernelUnavailable(f"{op}: KIT_KERNELS=triton but " + "; ".join(failed))
    return False
