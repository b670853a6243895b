"""Side-by-side benchmarks of the layerwise kernels: the harness behind `kernels/bench/*.py` (outside the runtime package: the kit never imports it).

A benchmark names its providers (PyTorch eager, `torch.compile` of the reference, SDPA where
it applies, Triton), and for every provider and direction (forward, backward, both) this
measures the median time, the achieved bandwidth (the bytes the op must move at minimum, over
the time), its fraction of the device's peak memory bandwidth, the peak memory, and the
ratios to eager and to `torch.compile`, all in one process on one device. Rows print as a
Markdown table and are appended, with the device name and the versions, to a JSON-lines file.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from kit.kernels.dispatch import interpreted, triton_constraints

DIRECTIONS = ("fwd", "bwd", "fwd+bwd")
# Peak memory bandwidth (bytes/s) of GPUs by a substring of `torch.cuda.get_device_name`; first match wins.
PEAK_BANDWIDTH = [
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100", 1.555e12),
    ("L40S", 0.864e12),
    ("L4", 0.3e12),
    ("4090", 1.008e12),
]


@dataclass
class Provider:
    """A way to compute the op: `run(inputs) -> output` (differentiable), or why it cannot run here."""

    name: str
    run: Callable[[list[Tensor]], Tensor] | None
    unavailable: str = ""


@dataclass
class Row:
    """One measured (case, provider, direction)."""

    case: str
    provider: str
    direction: str
    ms: float | None = None
    gbps: float | None = None
    peak_fraction: float | None = None
    peak_mem_mb: float | None = None
    vs_eager: float | None = None
    vs_compile: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def peak_bandwidth(device: torch.device) -> float | None:
    """Peak memory bandwidth of the device in bytes/s, when it is a known GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((bw for key, bw in PEAK_BANDWIDTH if key in name), None)


def triton_provider(device: torch.device, dtype: torch.dtype, run: Callable[[list[Tensor]], Tensor]) -> Provider:
    """The Triton provider, or the reason it cannot run on this device and dtype."""
    failed = triton_constraints([torch.zeros(1, device=device, dtype=dtype)])
    name = "triton (interpreter)" if device.type == "cpu" and interpreted() else "triton"
    return Provider(name, None if failed else run, "; ".join(failed))


def compiled_provider(fn: Callable[[list[Tensor]], Tensor], name: str = "torch.compile") -> Provider:
    """`torch.compile` of a reference (dynamic shapes off: every case compiles its own graph)."""
    return Provider(name, torch.compile(fn, dynamic=False))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(step: Callable[[], object], device: torch.device, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _peak_mb(step: Callable[[], object], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    _sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _directions(
    provider: Provider, make_inputs: Callable[[], list[Tensor]], min_bytes: dict[str, int], device: torch.device, warmup: int, reps: int
) -> list[Row]:
    """One provider's rows (case filled in by the caller): forward alone, backward alone, both."""
    inputs = make_inputs()
    wanted = [t for t in inputs if t.requires_grad]
    out = provider.run(inputs)
    grad = torch.randn_like(out)

    def fwd():
        with torch.no_grad():
            return provider.run(inputs)

    def bwd():
        return torch.autograd.grad(out, wanted, grad, retain_graph=True)

    def both():
        return torch.autograd.grad(provider.run(inputs), wanted, grad)

    peak = peak_bandwidth(device)
    rows = []
    for direction, step in zip(DIRECTIONS, (fwd, bwd, both), strict=True):
        ms = _median_ms(step, device, warmup, reps)
        gbps = min_bytes[direction] / (ms * 1e-3) / 1e9
        rows.append(Row("", provider.name, direction, ms, gbps, gbps * 1e9 / peak if peak else None, _peak_mb(step, device)))
    return rows


def measure(
    case: str,
    providers: Sequence[Provider],
    make_inputs: Callable[[], list[Tensor]],
    min_bytes: dict[str, int],
    device: torch.device,
    warmup: int = 3,
    reps: int = 10,
) -> list[Row]:
    """Time every provider in every direction on fresh inputs of one case; fill in ratios and bandwidth."""
    rows: list[Row] = []
    for provider in providers:
        if provider.run is None:
            rows += [Row(case, provider.name, d, note=f"unavailable: {provider.unavailable}") for d in DIRECTIONS]
            continue
        try:
            measured = _directions(provider, make_inputs, min_bytes, device, warmup, reps)
        except Exception as error:  # a provider that fails (a compiler missing, memory) is reported, not fatal
            note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
            measured = [Row("", provider.name, d, note=note) for d in DIRECTIONS]
        for row in measured:
            row.case = case
        rows += measured
    for row in rows:
        for attr, base in (("vs_eager", "eager"), ("vs_compile", "torch.compile")):
            ref = next((r for r in rows if r.provider == base and r.direction == row.direction and r.ms), None)
            if ref and row.ms:
                setattr(row, attr, ref.ms / row.ms)
    peak = peak_bandwidth(device)
    if peak:
        for direction in DIRECTIONS:
            rows.append(Row(case, "bandwidth floor", direction, ms=min_bytes[direction] / peak * 1e3, note="minimum bytes / peak bandwidth"))
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (ratios > 1 mean faster than eager / than torch.compile)."""
    lines = ["| case | provider | dir | ms | GB/s | % peak BW | peak MB | x eager | x compile | note |", "|" + "---|" * 10]
    for r in rows:
        pct = _fmt(None if r.peak_fraction is None else 100 * r.peak_fraction, ".1f")
        cells = [
            r.case,
            r.provider,
            r.direction,
            _fmt(r.ms, ".3f"),
            _fmt(r.gbps, ".1f"),
            pct,
            _fmt(r.peak_mem_mb, ".0f"),
            _fmt(r.vs_eager, ".2f"),
            _fmt(r.vs_compile, ".2f"),
            r.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment(device: torch.device) -> dict:
    """Device and versions recorded with every result."""
    import importlib.metadata as md

    versions = {}
    for package in ("torch", "triton"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return {"device": device_name(device), "peak_bandwidth_gbps": (peak_bandwidth(device) or 0) / 1e9 or None, "interpreter": interpreted(), **versions}


def report(bench: str, rows: Sequence[Row], device: torch.device, out: str | Path) -> None:
    """Print the table and append it, with the environment and a timestamp, to `out` (JSON lines)."""
    env = environment(device)
    print(f"## {bench} on {env['device']} (torch {env['torch']}, triton {env['triton']}{', interpreter' if env['interpreter'] else ''})\n")
    print(markdown(rows))
    record = {"bench": bench, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **env, "rows": [asdict(r) for r in rows]}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"\nappended to {path}")


def parse_args(description: str, argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, torch.device, torch.dtype]:
    """The shared command line: realistic shapes in bf16 on a GPU, small fp32 ones on a CPU."""
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tokens", type=int, default=65536 if gpu else 512, help="tokens (T)")
    p.add_argument("--taps", type=int, default=12, help="tapped layers (N)")
    p.add_argument("--widths", type=int, nargs="+", default=[2560, 4096] if gpu else [256], help="hidden sizes (W) to run")
    p.add_argument("--head-dim", type=int, default=128, help="channels per head (W / heads)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16" if gpu else "float32")
    p.add_argument("--warmup", type=int, default=5 if gpu else 1)
    p.add_argument("--reps", type=int, default=20 if gpu else 3)
    p.add_argument("--out", type=str, default="kernels/bench/results.jsonl", help="JSON-lines file the results are appended to")
    args = p.parse_args(argv)
    return args, torch.device("cuda" if gpu else "cpu"), getattr(torch, args.dtype)
