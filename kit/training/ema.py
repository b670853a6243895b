"""Exponential moving average of the trainable weights (the frozen encoder is never copied).

ema = EMA(module.named_parameters(), decay=0.999)
ema.update()                  # after each optimizer step
with ema.swapped():           # sample / validate with the averaged weights
    ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class EMA(nn.Module):
    """Shadow copies of parameters, moved towards the live ones after each step.

    A module whose shadows are (non-persistent) buffers: held as a submodule of the task, it moves
    with the task's `.to()` (device and dtype) like its parameters. Its state travels in checkpoints
    through `checkpoint_state()` / `load_checkpoint_state()` (the task's `on_save_checkpoint`), not in
    the task's state dict, whose keys stay those of the networks.

    Args:
        named_parameters: the parameters to average (only those that require grad are kept).
        decay: the averaging decay; the effective decay warms up as min(decay, (1 + n) / (10 + n)).
    """

    def __init__(self, named_parameters: Iterable[tuple[str, nn.Parameter]], decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.params = {name: p for name, p in named_parameters if p.requires_grad}  # live parameters, not registered here
        self._buffer_names = {name: f"shadow_{i}" for i, name in enumerate(self.params)}
        for name, p in self.params.items():
            self.register_buffer(self._buffer_names[name], p.detach().clone(), persistent=False)
        self.updates = 0
        self.active = False  # whether the averaged values are in the parameters right now

    @property
    def shadow(self) -> dict[str, Tensor]:
        """Parameter name -> its averaged value (the buffers, wherever the module now is)."""
        return {name: getattr(self, buffer) for name, buffer in self._buffer_names.items()}

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadow towards the live parameters."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = list(self.params.values())
        shadow = [self.shadow[name] for name in self.params]
        torch._foreach_lerp_(shadow, [p.detach() for p in live], 1.0 - decay)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Within the block the parameters hold the averaged values; the live ones come back after (re-entrant)."""
        if self.active:
            yield
            return
        self._swap()
        self.active = True
        try:
            yield
        finally:
            self._swap()
            self.active = False

    @torch.no_grad()
    def _swap(self) -> None:
        for name, p in self.params.items():
            tmp = p.detach().clone()
            p.copy_(self.shadow[name])
            self.shadow[name].copy_(tmp)

    def checkpoint_state(self) -> dict[str, Tensor | int]:
        """`{"updates": n, "shadow.<parameter name>": tensor}`: what a checkpoint keeps, keyed by the parameters' names."""
        return {"updates": self.updates, **{f"shadow.{k}": v for k, v in self.shadow.items()}}

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what `checkpoint_state` returned."""
        self.updates = int(state["updates"])
        for name in self.shadow:
            self.shadow[name].copy_(state[f"shadow.{name}"])
