"""Tasks: the LightningModules on the `DiffusionTask` base, registered in `TASKS` (the joint model's task
registers from `kit.joint`). DataModules live in `kit.data`, callbacks in `kit.callbacks`, the assets'
pretraining in `kit.pretrain`; their old paths here fail with one line naming the new one."""

from kit.tasks.base import TASKS, DiffusionTask
from kit.tasks.contract import Capability, EvaluationSettings, LayerWeights
from kit.tasks.editing import ImageEditing
from kit.tasks.text_to_image import TextToImage

__all__ = ["TASKS", "Capability", "DiffusionTask", "EvaluationSettings", "ImageEditing", "LayerWeights", "TextToImage"]

MOVED = {
    **dict.fromkeys(
        ("ShapesDataModule", "ShapesDataset", "ShapesEditData", "ShapesEditDataset", "EditFolderData", "ImageFolderData", "StreamingImageTextData"), "kit.data"
    ),
    **dict.fromkeys(("SampleGrid", "LayerWeightLogger", "SuiteEvaluation", "PredictionWriter", "FinalCheckpoint", "RunSummary"), "kit.callbacks"),
    **dict.fromkeys(("AutoencoderPretraining", "TextLatentPretraining"), "kit.pretrain"),
    **dict.fromkeys(("JointImageText", "JointSample", "TextLatentCodec"), "kit.joint"),
}
"""Names that `kit.tasks` exported before the package held only tasks -> where they live now."""

MOVED_MODULES = {
    "kit.tasks.data": "kit.data.shapes",
    "kit.tasks.edit_data": "kit.data.edits",
    "kit.tasks.edit_folder": "kit.data.edit_folder",
    "kit.tasks.folder": "kit.data.folder",
    "kit.tasks.streaming": "kit.data.streaming",
    "kit.tasks.callbacks": "kit.callbacks.monitors",
    "kit.tasks.final_checkpoint": "kit.callbacks.final_checkpoint",
    "kit.tasks.summary": "kit.callbacks.summary",
    "kit.tasks.checkpoint": "kit.checkpoint",
    "kit.tasks.autoencoder": "kit.pretrain.autoencoder",
    "kit.tasks.text_latent": "kit.joint.codec",
    "kit.tasks.joint": "kit.joint.task",
    "kit.tasks.joint_sampling": "kit.joint.sampling",
    "kit.tasks.ema": "kit.training.ema",
    "kit.tasks.repa": "kit.training.repa",
}
"""Modules of `kit.tasks` before it held only tasks -> the module that holds their contents now."""


def moved(class_path: str) -> str | None:
    """'X has moved: use Y' for a class path that names an old home of a moved class, else None."""
    module, _, name = class_path.rpartition(".")
    if module == "kit.tasks" and name in MOVED:
        return f"{class_path} has moved: use {MOVED[name]}.{name}"
    if module in MOVED_MODULES:
        return f"{class_path} has moved: use {MOVED_MODULES[module]}.{name}"
    return None


def __getattr__(name: str):
    if name in MOVED:
        raise ImportError(moved(f"kit.tasks.{name}"))
    raise AttributeError(f"module 'kit.tasks' has no attribute {name!r}")
