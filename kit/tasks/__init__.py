"""LightningModules, DataModules and callbacks."""

from kit.tasks.callbacks import LayerWeightLogger, SampleGrid
from kit.tasks.data import ShapesDataModule, ShapesDataset
from kit.tasks.text_to_image import TextToImage

__all__ = ["LayerWeightLogger", "SampleGrid", "ShapesDataModule", "ShapesDataset", "TextToImage"]
