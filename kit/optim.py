"""Learning-rate schedules that take the run's total step count from the module."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosine(LRScheduler):
    """Linear warmup from 0, then cosine decay to `min_ratio` of the base rate at `total_steps`.

    Args:
        optimizer: the wrapped optimizer.
        total_steps: optimizer steps in the run (the module passes the trainer's estimate).
        warmup_steps: steps of linear warmup.
        min_ratio: final learning rate as a fraction of the base rate.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 100, min_ratio: float = 0.1) -> None:
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """Multiplier of the base rate at `step`."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
