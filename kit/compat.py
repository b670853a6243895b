"""The one module that touches private API (Lightning's, torch's, argparse's), where no public way exists.

- `under_cli()`: whether a module is being built by `LightningCLI`, which hands `save_hyperparameters` the
  parsed recipe (plain data that rebuilds every part on load). Built by hand, a task records its plain
  settings and leaves its parts (objects) out. Lightning keeps this in a private context variable.
- `RecipeDecidesModel`: `LightningCLI` merges a `--ckpt_path` checkpoint's recorded hyperparameters into the
  parsed config before any public hook runs (so another recipe would silently train the checkpoint's model).
  This mixin replaces that private step with the public-named hook `check_ckpt_path()`.
- `attached_trainer(module)`: the module's trainer or None (`LightningModule.trainer` raises when there is none).
- `start_method(strategy)`: how a DDP strategy starts its processes ('popen', 'spawn', ...; None for others).
- `ddp_ignore(module, names)`: parameters and buffers torch's DDP must not broadcast (EMA averages).
- `parser_destinations(parser)`: every destination an argparse/jsonargparse parser fills.

`tests/test_architecture.py` pins it against the installed Lightning, so an upgrade that moves them fails there,
in one place, rather than silently changing what a checkpoint records or resumes.
"""

from __future__ import annotations

from argparse import ArgumentParser

import lightning as L
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters


def under_cli() -> bool:
    """True while `LightningCLI` instantiates a module (its parsed config is what `save_hyperparameters` records)."""
    return _given_hyperparameters.get() is not None


class RecipeDecidesModel(LightningCLI):
    """A `LightningCLI` whose `--ckpt_path` never rewrites the parsed model config: `check_ckpt_path()` runs in
    place of Lightning's merge of the checkpoint's hyperparameters."""

    def _parse_ckpt_path(self) -> None:  # Lightning's private step between parsing and instantiation
        self.check_ckpt_path()

    def check_ckpt_path(self) -> None:
        """Check the parsed config against `--ckpt_path`'s checkpoint (nothing by default)."""


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The trainer `module` is attached to, or None (built by hand, or sampled outside a fit)."""
    return module._trainer


def start_method(strategy) -> str | None:
    """The process start method of a DDP strategy (`ddp`: 'popen'; `ddp_spawn`: 'spawn'), None for other strategies."""
    return getattr(strategy, "_start_method", None)


def ddp_ignore(module, names: list[str]) -> None:
    """Have torch's `DistributedDataParallel` leave these parameters and buffers of `module` alone (no broadcast)."""
    module._ddp_params_and_buffers_to_ignore = list(names)


def parser_destinations(parser: ArgumentParser) -> list[str]:
    """Every destination (`init.width`, ...) the parser's arguments fill, in order."""
    return [action.dest for action in parser._actions]
