"""LightningModules, DataModules and callbacks."""

from kit.tasks.callbacks import LayerWeightLogger, SampleGrid, SuiteEvaluation
from kit.tasks.data import ShapesDataModule, ShapesDataset
from kit.tasks.folder import ImageFolderData
from kit.tasks.summary import RunSummary
from kit.tasks.text_to_image import TextToImage

__all__ = ["ImageFolderData", "LayerWeightLogger", "RunSummary", "SampleGrid", "SuiteEvaluation", "ShapesDataModule", "ShapesDataset", "TextToImage"]
