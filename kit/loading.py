"""Loading a trained task from its checkpoint: `load_checkpoint(path)` -> the task, ready to `generate`.

    from kit.loading import load_checkpoint
    task = load_checkpoint("runs/lap/version_0/checkpoints/last.ckpt")
    images = task.generate(["a red circle in the top left"])   # (1, 3, H, W) in [-1, 1]

The checkpoint is read as data and its recorded config checked first (`kit.checkpoint`); the task is rebuilt as
the class the checkpoint records (`_class_path`, written by the CLI), which must be registered in
`kit.tasks.TASKS`: the class is looked up there, never imported from the checkpoint's text. The settings a task
declares as `weight_file_arguments` are not re-read: their weights are in the checkpoint's own state.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import torch

import kit.joint  # noqa: F401  (registers the joint task)
from kit.checkpoint import UnsafeCheckpointError, check_recorded_config, read_checkpoint, upgrade_class_paths
from kit.tasks import TASKS, Capability, DiffusionTask, TextToImage


def task_class(hparams: dict, path: str) -> type[DiffusionTask]:
    """The registered task a checkpoint's config records as `_class_path` (`TextToImage` when it records
    none: a module built by hand). One line naming the known tasks when it is not one of them."""
    class_path = hparams.get("_class_path")
    if class_path is None:
        return TextToImage
    package, _, name = str(class_path).rpartition(".")
    for _, cls in TASKS.items():  # kit.tasks.TextToImage or kit.tasks.text_to_image.TextToImage, never imported from the text
        if package and cls.__name__ == name and f"{cls.__module__}.".startswith(f"{package}.") and getattr(sys.modules.get(package), name, None) is cls:
            return cls
    raise UnsafeCheckpointError(f"checkpoint {path!r} holds a {class_path!r}, which is not a diffusion task of the kit; known tasks: {TASKS.describe()}")


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    encoder_model: str | None = None,
    trust: bool = False,
    require: Capability | None = None,
) -> DiffusionTask:
    """Rebuild the module saved in a checkpoint written by `python -m kit fit`, refusing configs that would run code.

    Args:
        path: the `.ckpt` file.
        map_location: device to load onto.
        encoder_model: load the frozen encoder from this name or path instead of the recorded one
            (also how to accept a recorded encoder that is not shipped with the kit).
        trust: accept the checkpoint's recorded encoder and `trust_remote_code` as they are.
        require: refuse, before building anything, a task without this capability (one line naming the task).
    """
    raw = io.BytesIO(Path(path).read_bytes()) if Path(path).is_file() else None  # read once: checked, then built from
    checkpoint = read_checkpoint(path, map_location, raw)
    hparams = checkpoint.get("hyper_parameters")
    legacy = [k for k in ("hparams", "module_arguments") if k in checkpoint]  # Lightning would merge these too
    if legacy:
        raise UnsafeCheckpointError(f"checkpoint {str(path)!r} carries legacy hyperparameter keys {legacy}, which the kit never writes; refused")
    if not isinstance(hparams, dict) or "encoder" not in hparams:
        raise ValueError(f"checkpoint {str(path)!r} records no model config (was it written by `python -m kit fit`?)")
    recorded = upgrade_class_paths(hparams)
    cls = task_class(recorded, str(path))
    if require is not None and require not in cls.capabilities:
        able = [name for name, task in TASKS.items() if require in task.capabilities]
        raise ValueError(
            f"checkpoint {str(path)!r} holds a {cls.registry_name} model ({cls.__name__}), which cannot do {require}; tasks that can: {', '.join(able)}"
        )
    safe = check_recorded_config(recorded, str(path), file_arguments=cls.weight_file_arguments, encoder_model=encoder_model, trust=trust)
    overrides = {k: v for k, v in safe.items() if not k.startswith("_") and v != hparams.get(k)}  # another encoder, moved class paths
    for name in cls.weight_file_arguments:
        if hparams.get(name):
            overrides[name] = None  # the weights read from that file are in the checkpoint's own state
    raw.seek(0)
    module = cls.load_from_checkpoint(raw, map_location=map_location, weights_only=True, **overrides)
    return module.eval()
