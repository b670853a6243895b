"""Parameter counts and forward FLOPs of a model, per part.

FLOPs are counted by `torch.utils.flop_counter` on one forward pass of one sample and
reported as multiply-adds (GMACs), the unit of the DiT paper's "Gflops" (DiT-XL/2 at
256 px: 118.6). Backbones can be described on the meta device, so the largest presets cost
no memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kit.types import Conditioning


@dataclass
class PartReport:
    """One row of a description."""

    name: str
    kind: str
    params: int
    trainable: int
    gmacs: float

    def row(self) -> str:
        return f"{self.name:<10} {self.kind:<32} {self.params / 1e6:>10.2f} M {self.trainable / 1e6:>10.2f} M {self.gmacs:>10.3f}"


def count(module: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def gmacs(fn) -> float:
    """Multiply-adds (in billions) of calling `fn()`."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / 1e9


def class_conditioning(num_classes: int, width: int, device: torch.device | str = "cpu") -> tuple[nn.Embedding, Conditioning]:
    """A DiT-style class-label table (with a null class for CFG) and the one-token conditioning it gives."""
    table = nn.Embedding(num_classes + 1, width, device=device)
    label = torch.zeros(1, dtype=torch.long, device=device)
    return table, Conditioning(tokens=table(label)[:, None], mask=torch.ones(1, 1, dtype=torch.bool, device=device))


def describe_backbone(backbone: nn.Module, cond: Conditioning) -> PartReport:
    """Parameters and GMACs of one backbone forward at its own input size."""
    device = next(backbone.parameters()).device
    x = torch.zeros(1, backbone.in_channels, backbone.input_size, backbone.input_size, device=device)
    t = torch.full((1,), 0.5, device=device)
    total, trainable = count(backbone)
    with torch.no_grad():
        macs = gmacs(lambda: backbone(x, t, cond))
    return PartReport("backbone", type(backbone).__name__, total, trainable, macs)


def describe_module(module, prompt: str) -> list[PartReport]:
    """Encoder, fusion head and backbone of a `TextToImage`-like module, for one prompt."""
    with torch.no_grad():
        enc_total, enc_trainable = count(module.encoder)
        enc_macs = gmacs(lambda: module.encoder([prompt]))
        enc = module.encoder([prompt])
        head_total, head_trainable = count(module.fusion)
        head_macs = gmacs(lambda: module.fusion(enc))
        cond = module.fusion(enc)
    return [
        PartReport("encoder", type(module.encoder.model).__name__, enc_total, enc_trainable, enc_macs),
        PartReport("fusion", type(module.fusion).__name__, head_total, head_trainable, head_macs),
        describe_backbone(module.backbone, cond),
    ]


def table(reports: list[PartReport]) -> str:
    lines = [f"{'part':<10} {'class':<32} {'params':>12} {'trainable':>12} {'GMACs/fwd':>10}"]
    lines += [r.row() for r in reports]
    total = PartReport("total", "", sum(r.params for r in reports), sum(r.trainable for r in reports), sum(r.gmacs for r in reports))
    return "\n".join([*lines, total.row()])
