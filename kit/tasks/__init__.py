"""Tasks: the LightningModules on the `DiffusionTask` base, registered in `TASKS` (the joint model's task
registers from `kit.joint`). DataModules live in `kit.data`, callbacks in `kit.callbacks`, the assets'
pretraining in `kit.pretrain`; their old paths here fail with one line naming the new one."""

from kit.tasks.base import TASKS, Capability, DiffusionTask, EvaluationSettings, LayerWeights
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


def __getattr__(name: str):
    if name in MOVED:
        raise ImportError(f"kit.tasks.{name} has moved: use {MOVED[name]}.{name} (class_path: {MOVED[name]}.{name})")
    raise AttributeError(f"module 'kit.tasks' has no attribute {name!r}")
