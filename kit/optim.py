"""Learning-rate schedules that take the run's total step count from the module."""

from __future__ import annotations

import math
import warnings

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

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume at the saved step, but on this run's schedule: a resumed run with a longer (or
        shorter) `max_steps` stretches the cosine to its new end, and says so."""
        saved = state_dict.get("total_steps", self.total_steps)
        mine = {k: getattr(self, k) for k in ("total_steps", "warmup_steps", "min_ratio", "base_lrs")}  # the recipe's
        super().load_state_dict(state_dict)
        self.__dict__.update(mine)
        if saved != self.total_steps:
            warnings.warn(
                f"WarmupCosine: resumed at step {self.last_epoch} of a schedule planned for {saved} steps; "
                f"the cosine now runs to this run's {self.total_steps} steps",
                stacklevel=2,
            )
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
