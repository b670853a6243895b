"""Training-step throughput, peak memory and model FLOPs utilisation per DiT preset, on whatever device is present.

    python benchmarks/train_step.py                                   # CPU: DiT-S/2 and DiT-B/2, fp32, batch 4
    python benchmarks/train_step.py --presets b2 --precision bf16 --batch 64 --device cuda --out results/gpu/train_step.jsonl

Each preset is `recipes/lap.yaml` with `recipes/backbones/dit_<preset>.yaml` on 32-px shapes renders: at patch 2
that is 256 image tokens, the token grid of a 256-px image's 32x32 VAE latent (the FLOPs differ from the latent
model's only in the patch embedding's 3 against 4 input channels). Two modes per preset:

- `cached`: the batch carries the frozen encoder's features (as a feature cache or stored litdata features do),
  so a step is the fusion head and the backbone, forward and backward, and the optimizer;
- `on_the_fly`: the frozen encoder runs inside every step as well.

Model FLOPs are counted once per mode with `torch.utils.flop_counter.FlopCounterMode` over one step's forward and
backward (the frozen encoder's forward included on the fly); MFU = FLOPs per second / the device's peak
(`--peak-tflops`, or the dense bf16 / tf32 peak of known GPUs; none on the CPU, where only TFLOP/s is reported).
The first `--warmup` steps are not timed. Appends one JSON line per (preset, mode) to `--out`.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEAK_TFLOPS = {  # dense tensor-core peaks (bf16/fp16, and tf32 for fp32) from the vendors' data sheets
    "H100": {"bf16": 989.0, "fp32": 494.5},
    "H200": {"bf16": 989.0, "fp32": 494.5},
    "A100": {"bf16": 312.0, "fp32": 156.0},
}


def peak_tflops(device: torch.device, precision: str, given: float | None) -> float | None:
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((p[precision] for key, p in PEAK_TFLOPS.items() if key in name), None)


def build(preset: str, batch: int, device: torch.device):
    """The recipe's module and one training batch `(images (B, 3, 32, 32), prompts)` on `device`."""
    from kit.cli import run_cli

    args = ["fit", "-c", str(ROOT / "recipes/lap.yaml"), "-c", str(ROOT / f"recipes/backbones/dit_{preset}.yaml"), "--trainer.logger=false"]
    args += [
        "--data.init_args.image_size=32",
        f"--data.init_args.batch_size={batch}",
        "--data.init_args.num_workers=0",
        "--model.init_args.autoencoder=null",
    ]  # pixels: the DiT presets are measured on raw 32-px inputs
    cli = run_cli(args, run=False)
    module, data = cli.model.to(device), cli.datamodule
    batch_ = data.collate([data.train_set[i] for i in range(batch)])
    return module, batch_.images.to(device), batch_.prompts


def step_fn(module, images, prompts, mode: str, dtype: torch.dtype | None):
    """One optimisation step of the recipe's loss; `cached` encodes once, outside the step."""
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    encoded = None
    if mode == "cached":
        with torch.no_grad():
            encoded = module.encoder(prompts)
    autocast = torch.autocast(images.device.type, dtype=dtype) if dtype is not None else torch.autocast(images.device.type, enabled=False)

    def step():
        with autocast:
            features = encoded
            if features is None:
                with torch.no_grad():
                    features = module.encoder(prompts)
            cond = module.fusion(features)
            loss = module.objective.loss(module.backbone, images, cond)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def count_flops(step) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["s2", "b2"], help="backbone presets (recipes/backbones/dit_<preset>.yaml)")
    p.add_argument("--modes", nargs="+", default=["cached", "on_the_fly"], choices=["cached", "on_the_fly"])
    p.add_argument("--batch", type=int, default=4, help="samples per step")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast (weights stay fp32)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's peak for MFU (known GPUs are looked up)")
    p.add_argument("--out", default=str(ROOT / "results" / "train_step.jsonl"))
    args = p.parse_args(argv)
    from kit.analysis.provenance import append_record, command_line, commit

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    peak = peak_tflops(device, args.precision, args.peak_tflops)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(
        f"{'preset':8} {'mode':11} {'samples/s':>10} {'s/step':>8} {'TFLOP/s':>8} {'MFU':>6} {'peak MiB':>9}   ({where}, {args.precision}, batch {args.batch})"
    )
    for preset in args.presets:
        module, images, prompts = build(preset, args.batch, device)
        params = sum(p.numel() for p in module.backbone.parameters())
        for mode in args.modes:
            step = step_fn(module, images, prompts, mode, dtype)
            flops = count_flops(step)
            for _ in range(max(args.warmup - 1, 0)):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = (time.perf_counter() - started) / args.steps
            achieved = flops / seconds / 1e12
            row = {
                "preset": preset,
                "mode": mode,
                "backbone_params_m": round(params / 1e6, 1),
                "batch": args.batch,
                "precision": args.precision,
                "seconds_per_step": round(seconds, 4),
                "samples_per_sec": round(args.batch / seconds, 2),
                "tflops_per_step": round(flops / 1e12, 4),
                "achieved_tflops": round(achieved, 3),
                "mfu": round(achieved / peak, 4) if peak else None,
                "peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
                "device": where,
            }
            mfu = f"{100 * row['mfu']:5.1f}%" if row["mfu"] is not None else "     -"
            mem = f"{row['peak_memory_mib']:9d}" if row["peak_memory_mib"] is not None else "        -"
            print(f"{preset:8} {mode:11} {row['samples_per_sec']:10.2f} {seconds:8.3f} {achieved:8.3f} {mfu} {mem}")
            append_record(args.out, {"command": command_line("benchmarks/train_step.py", argv), "commit": commit(), **row})
        del module
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
