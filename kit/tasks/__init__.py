"""Tasks (LightningModules on the `DiffusionTask` base), DataModules and callbacks."""

from kit.tasks.autoencoder import AutoencoderPretraining
from kit.tasks.base import TASKS, DiffusionTask
from kit.tasks.callbacks import LayerWeightLogger, SampleGrid, SuiteEvaluation
from kit.tasks.data import ShapesDataModule, ShapesDataset
from kit.tasks.edit_data import ShapesEditData, ShapesEditDataset
from kit.tasks.edit_folder import EditFolderData
from kit.tasks.editing import ImageEditing
from kit.tasks.final_checkpoint import FinalCheckpoint
from kit.tasks.folder import ImageFolderData
from kit.tasks.joint import JointImageText, JointSample
from kit.tasks.streaming import StreamingImageTextData
from kit.tasks.summary import RunSummary
from kit.tasks.text_latent import TextLatentCodec, TextLatentPretraining
from kit.tasks.text_to_image import TextToImage

__all__ = [
    "AutoencoderPretraining",
    "TASKS",
    "DiffusionTask",
    "EditFolderData",
    "FinalCheckpoint",
    "ImageEditing",
    "ImageFolderData",
    "JointImageText",
    "JointSample",
    "LayerWeightLogger",
    "RunSummary",
    "SampleGrid",
    "StreamingImageTextData",
    "SuiteEvaluation",
    "ShapesDataModule",
    "ShapesDataset",
    "ShapesEditData",
    "ShapesEditDataset",
    "TextLatentCodec",
    "TextLatentPretraining",
    "TextToImage",
]
