"""`RunSummary`: what an ablation needs to compare runs: parameter counts as scalars, and at the end
of fitting the run's hyperparameters with its final metrics in TensorBoard's HParams tab."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch

from kit.layers import count_parameters
from kit.tasks.base import DiffusionTask

HPARAM_PARTS = ("encoder", "fusion", "backbone", "objective", "optimizer", "lr_scheduler")


def flatten_hparams(config: dict, prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested config -> `{'fusion/class': 'LAPHead', 'fusion/layer_depth': 2, ...}` with values TensorBoard accepts."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "class_path" in value:
            flat[f"{name}/class"] = str(value["class_path"]).rsplit(".", 1)[-1]
            flat.update(flatten_hparams(value.get("init_args") or {}, f"{name}/"))
        elif isinstance(value, dict):
            flat.update(flatten_hparams(value, f"{name}/"))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        elif value is None:
            flat[name] = "None"
        else:
            flat[name] = str(value)
    return flat


class RunSummary(L.Callback):
    """Log `params/trainable`, `params/fusion` and `params/backbone` at the start, and at the end the
    run's hyperparameters (its parts' settings, seed, steps) with its final metrics for the HParams tab.

    The HParams summary goes to `<run>/hparams/` (TensorBoard shows it as a sub-run); `kit compare`
    reads the scalars beside it.

    Args:
        metric_prefixes: logged metrics whose final values enter the summary.
    """

    def __init__(self, metric_prefixes: tuple[str, ...] = ("val/", "eval/")) -> None:
        self.metric_prefixes = tuple(metric_prefixes)

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        counts = {"params/trainable": count_parameters(module, trainable_only=True)}
        parts = module.parts() if isinstance(module, DiffusionTask) else {}  # a pretraining module has no named parts
        for name, part in parts.items():
            trainable = count_parameters(part, trainable_only=True)
            if trainable:  # frozen parts (the encoder, the codec) train nothing
                counts[f"params/{name}"] = trainable
        for logger in trainer.loggers:
            logger.log_metrics(counts, step=0)

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        logger = next((lg for lg in trainer.loggers if isinstance(lg, L.pytorch.loggers.TensorBoardLogger)), None)
        if logger is None or not trainer.is_global_zero:
            return
        from torch.utils.tensorboard import SummaryWriter

        hparams = {k: v for k, v in dict(module.hparams).items() if k in HPARAM_PARTS}
        flat = flatten_hparams(hparams)
        flat.update(seed=os.environ.get("PL_GLOBAL_SEED", "None"), max_steps=trainer.max_steps, steps=trainer.global_step)
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith(self.metric_prefixes) and torch.as_tensor(value).numel() == 1
        }
        with SummaryWriter(log_dir=str(Path(logger.log_dir) / "hparams")) as writer:
            writer.add_hparams(flat, {f"hparams/{k}": v for k, v in metrics.items()}, run_name=".")
