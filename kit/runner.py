"""The kit's Lightning CLI: the parser, the `KitCLI` class and `run_cli`, which builds (and runs) a recipe.

`python -m kit` (`kit.cli`) dispatches its Lightning verbs here; the kit's own verbs (`kit.verbs`)
and notebooks build recipes through `run_cli` too. Recipes are YAML files of `class_path`/`init_args`
blocks; `-c a.yaml -c b.yaml` composes them left to right. The data's geometry (image size, channels)
is linked into the model at instantiation, and every run saves its resolved config beside its logs.
"""

from __future__ import annotations

import re
import sys
import warnings
from importlib import import_module
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningArgumentParser

import kit.backbones  # noqa: F401  (registers backbones so class names resolve)
import kit.fusion  # noqa: F401  (registers fusion heads)
import kit.joint  # noqa: F401  (registers the joint task and its backbone)
from kit.backbones import BACKBONES
from kit.callbacks import PredictionWriter
from kit.checkpoint import UnsafeCheckpointError, check_resume
from kit.compat import RecipeDecidesModel, parser_destinations
from kit.fusion import FUSION_HEADS
from kit.loading import task_class
from kit.tasks import TASKS, moved

LIGHTNING_VERBS = {
    "fit": "train a model from a recipe: python -m kit fit --config recipes/lap.yaml",
    "validate": "run the validation loop of a recipe (optionally --ckpt_path CKPT)",
    "test": "run the test loop of a recipe (optionally --ckpt_path CKPT)",
    "predict": "generate images for the datamodule's prompts (optionally --ckpt_path CKPT)",
}


class KitArgumentParser(LightningArgumentParser):
    """Lightning's parser, with errors that list the registered parts when a name is unknown."""

    def error(self, message: str, ex: Exception | None = None):
        text = str(message)
        keys = re.findall(r'Parser key "([\w.]+)"', text)
        hints = []
        if "fusion" in keys:
            hints.append(f"known fusion heads: {FUSION_HEADS.describe()}")
        if "backbone" in keys:
            hints.append(f"known backbones: {BACKBONES.describe()}")
        old = next(filter(None, map(moved, re.findall(r"kit\.tasks\.[\w.]+", text))), None)  # a class path from before the move
        first = old or _unknown_option(text) or "; ".join([summarize_parser_error(text), *hints])
        return super().error(f"{first}\n(details)\n{text}", ex)


def summarize_parser_error(text: str) -> str:
    """One line out of a nested jsonargparse error: the deepest key and the first reason given for it."""
    keys = [k for k in re.findall(r'Parser key "([\w.]+)"', text) if k != "model" or len(re.findall(r'Parser key "', text)) == 1]
    tail = text[text.rfind('Parser key "') :] if keys else text
    skip = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value")
    reasons = [line.strip().lstrip("- ").strip() for line in tail.splitlines()]
    reason = next((r for r in reasons if r and not r.startswith(skip)), text.strip().splitlines()[0] if text.strip() else "invalid arguments")
    return f"{'.'.join(keys)}: {reason}" if keys else reason


def accepted_arguments(cls: type) -> list[str]:
    """The constructor arguments of `cls` as the parser sees them, `**kwargs` resolved (up the class
    hierarchy and into the functions they are passed to)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "init", fail_untyped=False, sub_configs=True)
    names: list[str] = []
    for dest in parser_destinations(parser):
        prefix, _, rest = dest.partition(".")
        name = rest.split(".")[0]
        if prefix == "init" and name and name not in names:
            names.append(name)
    return names


def _unknown_option(text: str) -> str | None:
    """'unknown setting X of CLASS; it takes: ...' when the parser refused an option a class does not take."""
    import re

    option = re.search(r"Option '(\w+)' is not accepted", text)
    owner = re.findall(r"class_path='([\w.]+)'", text[: option.end() + 400] if option else "")
    if not option:
        return None
    if not owner:
        return f"unknown setting {option.group(1)!r}"
    module, _, name = owner[-1].rpartition(".")
    try:
        params = [
            p for p in accepted_arguments(getattr(import_module(module), name)) if p not in ("spec", "cond_dim", "num_blocks", "in_channels", "input_size")
        ]
    except Exception:  # the list only helps the message; a class the parser cannot read leaves it out
        params = []
    return f"unknown setting {option.group(1)!r} of {owner[-1]}" + (f"; it takes: {', '.join(params)}" if params else "")


def model_arguments(class_path: str | None) -> tuple[str, ...]:
    """The settings that decide what the weights of the recipe's model mean: its task's `model_arguments`; for a
    module that is not a registered task (a pretraining module), those of every task together."""
    try:
        return task_class({"_class_path": class_path}, "the recipe").model_arguments
    except UnsafeCheckpointError:
        return tuple(dict.fromkeys(name for _, task in TASKS.items() for name in task.model_arguments))


class ConfigurationError(Exception):
    """A recipe whose parts cannot be built together; the message is the part's own reason."""


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


class KitCLI(RecipeDecidesModel):
    """LightningCLI with the kit's links: the data decides image size and channels of the model."""

    def instantiate_classes(self) -> None:
        """Build the parts; a part that refuses its configuration surfaces with its own message. A run
        given `--ckpt_path` takes its weights from that checkpoint, so the model's `init_from` is not read."""
        sub = self.config.get("subcommand")
        recipe = self.config[sub] if sub else self.config
        model = recipe.get("model")
        if recipe.get("ckpt_path") and model is not None and hasattr(model, "init_args") and model.init_args.get("init_from"):
            model.init_args.init_from = None
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, FileNotFoundError) as e:
            cause = _root_cause(e)
            raise ConfigurationError(f"{type(cause).__name__}: {cause}") from cause
        except MisconfigurationException as e:  # Lightning's own refusals: no GPU for a GPU recipe, and the like
            hint = ""
            if "gpu backend" in str(e).lower():
                hint = " (this recipe asks for a GPU and none is present; on the CPU add --trainer.accelerator=cpu --trainer.devices=1)"
            raise ConfigurationError(f"{type(e).__name__}: {e}{hint}") from e

    def check_ckpt_path(self) -> None:
        """`--ckpt_path`: the recipe decides the model, never the checkpoint. Lightning would merge the
        checkpoint's recorded hyperparameters into the config (so another recipe silently trained the
        checkpoint's model); here a checkpoint whose model differs from the recipe's is refused, naming
        the differences, before any run folder exists. Other differences follow the recipe, with a warning."""
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt or ckpt in ("last", "hpc", "registry"):
            return
        recipe = self.config[sub]
        model = recipe.model.init_args.as_dict() if recipe.model is not None and hasattr(recipe.model, "init_args") else {}
        if model:
            model["_class_path"] = recipe.model.class_path
        data = recipe.data.init_args.as_dict() if recipe.data is not None and hasattr(recipe.data, "init_args") else {}
        for key, linked in (("image_size", "image_size"), ("in_channels", "channels")):  # linked from the data at instantiation
            if linked in data:
                model[key] = data[linked]
        try:
            followed = check_resume(ckpt, model, model_arguments(model.get("_class_path")))
        except (FileNotFoundError, ValueError) as e:
            raise ConfigurationError(str(e)) from e
        if followed:
            warnings.warn(f"resuming {ckpt}: these settings follow the recipe, not the checkpoint: {'; '.join(followed)}", stacklevel=2)

    def before_predict(self) -> None:
        """`predict` writes its images: a `PredictionWriter` into the run's folder unless the recipe has a writer."""
        if not any(isinstance(c, BasePredictionWriter) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter())

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.image_size", "model.init_args.image_size", apply_on="instantiate")
        parser.link_arguments("data.channels", "model.init_args.in_channels", apply_on="instantiate")


def run_cli(args: list[str] | dict[str, Any] | None = None, run: bool = True, cli_class: type[KitCLI] = KitCLI) -> KitCLI:
    """Build (and by default run) the Lightning CLI; `args` as on the command line or as a dict.

    Notebooks call this to train a recipe in-process, e.g.
    `run_cli(["fit", "-c", "recipes/lap.yaml", "--trainer.max_steps=200"])`. With
    `run=False` the parts are only built (a leading verb is then ignored).
    """
    if not run and isinstance(args, list) and args and args[0] in LIGHTNING_VERBS:
        args = args[1:]
    with warnings.catch_warnings():
        # args given on purpose while the host process (pytest, Jupyter) has its own argv
        warnings.filterwarnings("ignore", message=".*not recommended to provide both args and command line arguments.*")
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # the frozen encoder, by design
        warnings.filterwarnings("ignore", message=r".*define a `flops_per_batch`.*")  # we log samples/s, not FLOPs
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")  # inside Lightning 2.6.6
        # the training sampler continues from the step (kit.data.shapes.ResumableSampler), which Lightning cannot see
        warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")
        return _build_cli(args, run, cli_class)


def _build_cli(args: list[str] | dict[str, Any] | None, run: bool, cli_class: type[KitCLI]) -> KitCLI:
    return cli_class(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_class=KitArgumentParser,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "python -m kit"},  # usage lines name the command users type, not __main__.py
        args=args,
        run=run,
    )


class PretrainCLI(KitCLI):
    """The CLI of the kit's pretraining verbs (`pretrain-vlm`, `pretrain-autoencoder`): a `fit` whose model is
    sized by the data's render size (`data.init_args.image_size` is linked to `model.init_args.image_size`)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")


def run_pretraining(argv: list[str]) -> int:
    """`fit` a pretraining recipe (`argv`: Lightning options and recipes); a recipe that cannot be built is one
    line on stderr and exit code 2."""
    try:
        run_cli(["fit", *argv], cli_class=PretrainCLI)
    except ConfigurationError as e:
        print(f"error: the recipe cannot be built: {e}", file=sys.stderr)
        return 2
    return 0
