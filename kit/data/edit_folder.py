"""`EditFolderData`: real edit triplets from a folder (source image(s), instruction, target image).

The folder holds an `edits.jsonl`, one edit per line, paths relative to the folder:

    {"source": "cat.png", "instruction": "make the cat black", "target": "cat_black.png"}
    {"source": ["a.png", "b.png"], "instruction": "the dog from the first image on the sofa of the second", "target": "c.png"}

(`sources` is accepted for `source`, `prompt` for `instruction`.) Images are read exactly as
`ImageFolderData` reads them (RGB, short side resized, centre crop): an edit whose target or any
source cannot be decoded is skipped and counted in the batch's `skipped` (logged as
`data/skipped_images`), not a crash. Items are `{"image": target, "prompt": instruction,
"references": [sources]}`, what `kit.tasks.ImageEditing` trains on, like `ShapesEditData`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.data.folder import ImageFolderData, ImageFolderDataset, read_jsonl

INDEX = "edits.jsonl"
SOURCE_KEYS, INSTRUCTION_KEYS = ("source", "sources"), ("instruction", "prompt")


@dataclass(frozen=True)
class EditRecord:
    """One edit of the folder: its source images, instruction and target image."""

    sources: tuple[Path, ...]
    instruction: str
    target: Path


def read_edits(root: Path) -> list[EditRecord]:
    """The edits of `root/edits.jsonl`; a line without a source, an instruction or a target is an error naming it."""
    index = root / INDEX
    if not index.is_file():
        raise FileNotFoundError(f"no {INDEX} in {root}: one JSON object per line with 'source' (a file or a list of files), 'instruction' and 'target'")
    records = []
    for n, entry in read_jsonl(index):
        source = next((entry[k] for k in SOURCE_KEYS if k in entry), None)
        instruction = next((entry[k] for k in INSTRUCTION_KEYS if k in entry), None)
        sources = [source] if isinstance(source, str) else source
        if (
            not sources
            or not isinstance(sources, list)
            or not all(isinstance(s, str) for s in sources)
            or instruction is None
            or not isinstance(entry.get("target"), str)
        ):
            raise ValueError(f"{index}:{n}: expected 'source' (a file or a non-empty list of files), 'instruction' and 'target', got {entry}")
        records.append(EditRecord(tuple(root / s for s in sources), str(instruction), root / entry["target"]))
    if not records:
        raise ValueError(f"{index} lists no edits")
    return records


class EditFolderDataset(ImageFolderDataset):
    """Edit triplets from a folder; an edit with an undecodable image comes back as None.

    Args:
        pairs: the `EditRecord`s.
        image_size: output side of the target and of every source (the VLM's processor then resizes the sources to its budget).
    """

    def __getitem__(self, index: int) -> dict | None:
        record: EditRecord = self.pairs[index]
        target = self.decode(record.target)
        sources = [self.decode(p) for p in record.sources] if target is not None else []
        if target is None or any(s is None for s in sources):
            return None
        return {"image": target, "prompt": record.instruction, "references": sources}


class EditFolderData(ImageFolderData):
    """A folder of edit triplets as a LightningDataModule (edits with undecodable images skipped and counted).

    Args:
        root: the folder (with an `edits.jsonl`).
        image_size: resolution of targets and sources (short side resized, centre crop).
        batch_size: items per batch (before skipping).
        val_fraction: fraction of the edits held out for validation (the last ones, in file order).
        num_workers: DataLoader worker processes.
    """

    dataset_type = EditFolderDataset

    def __init__(self, root: str, image_size: int = 64, batch_size: int = 16, val_fraction: float = 0.05, num_workers: int = 0) -> None:
        super().__init__(root, image_size=image_size, batch_size=batch_size, val_fraction=val_fraction, num_workers=num_workers)

    def read(self, caption_column: str | None) -> list[EditRecord]:
        return read_edits(self.root)

    def preview_prompts(self, n: int) -> list[str]:
        """The first `n` validation instructions."""
        return [r.instruction for r in self.val_set.pairs[:n]]

    def preview_items(self, n: int) -> list[dict]:
        """The first `n` decodable validation edits (instruction, sources, target), for sample grids."""
        items = (self.val_set[i] for i in range(len(self.val_set)))
        return [it for it in items if it is not None][:n]
