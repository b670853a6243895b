"""Tasks (LightningModules on the `DiffusionTask` base), DataModules and callbacks."""

from kit.tasks.base import TASKS, DiffusionTask
from kit.tasks.callbacks import LayerWeightLogger, SampleGrid, SuiteEvaluation
from kit.tasks.data import ShapesDataModule, ShapesDataset
from kit.tasks.folder import ImageFolderData
from kit.tasks.summary import RunSummary
from kit.tasks.text_to_image import TextToImage

__all__ = [
    "TASKS",
    "DiffusionTask",
    "ImageFolderData",
    "LayerWeightLogger",
    "RunSummary",
    "SampleGrid",
    "SuiteEvaluation",
    "ShapesDataModule",
    "ShapesDataset",
    "TextToImage",
]
