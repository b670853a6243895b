"""DataModules and datasets: the shapes world, its edits, image folders, edit folders and litdata streams.

Every DataModule yields `kit.types.Batch` and derives from `kit.data.shapes.ImageTextData`, which owns the
loaders (a resumable sampler whose order is drawn from the run's seed), the image geometry the CLI links into
the model (`image_size`, `channels`) and an optional feature cache.
"""

from kit.data.edit_folder import EditFolderData
from kit.data.edits import ShapesEditData, ShapesEditDataset
from kit.data.folder import ImageFolderData
from kit.data.shapes import ImageTextData, ShapesDataModule, ShapesDataset
from kit.data.streaming import StreamingImageTextData

__all__ = [
    "EditFolderData",
    "ImageFolderData",
    "ImageTextData",
    "ShapesDataModule",
    "ShapesDataset",
    "ShapesEditData",
    "ShapesEditDataset",
    "StreamingImageTextData",
]
