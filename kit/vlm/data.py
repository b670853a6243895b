"""`VLMTaskData`: the shapes VLM's training and validation conversations as a LightningDataModule.

An item is a whole batch of `batch_size` conversations, a pure function of (seed, split,
batch index); each conversation's task is drawn by the task weights (one task per batch
learned markedly slower: the gradient of each step then pulls towards a single task). The
module that trains the VLM owns its processor and turns a batch into tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from kit.vlm.tasks import TASKS, Conversation, make_conversation

SPLITS = {"train": 10, "val": 11}


class VLMTaskBatches(Dataset):
    """`index -> list[Conversation]`: batches of conversations whose tasks are drawn with the given weights.

    Args:
        num_batches: number of batches.
        batch_size: conversations per batch.
        split: 'train' (training scenes) or 'val' (held-out scenes, never trained on).
        tasks: the tasks to draw.
        weights: probability of each task (uniform when None).
        image_size: render side.
        seed: world seed.
    """

    def __init__(
        self,
        num_batches: int,
        batch_size: int,
        split: str,
        tasks: Sequence[str] = TASKS,
        weights: Sequence[float] | None = None,
        image_size: int = 32,
        seed: int = 0,
    ) -> None:
        unknown = set(tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown VLM tasks {sorted(unknown)}; known: {', '.join(TASKS)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        self.num_batches, self.batch_size, self.split, self.tasks = num_batches, batch_size, split, list(tasks)
        self.image_size, self.seed = image_size, seed
        w = np.ones(len(self.tasks)) if weights is None else np.asarray(weights, dtype=float)
        if len(w) != len(self.tasks):
            raise ValueError(f"{len(w)} task weights for {len(self.tasks)} tasks")
        self.weights = w / w.sum()

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> list[Conversation]:
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        tasks = rng.choice(len(self.tasks), size=self.batch_size, p=self.weights)
        return [make_conversation(self.tasks[int(t)], rng, self.image_size, held_out=self.split == "val") for t in tasks]


class VLMTaskData(L.LightningDataModule):
    """Conversations for training the shapes VLM.

    Args:
        tasks: the tasks to train.
        weights: probability of each task.
        batch_size: conversations per batch.
        image_size: render side.
        num_batches: length of the training split in batches (rendered on the fly).
        val_batches: batches in the fixed validation split (held-out scenes).
        seed: world seed.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        tasks: tuple[str, ...] = TASKS,
        weights: list[float] | None = None,
        *,
        image_size: int = 48,
        batch_size: int = 64,
        num_batches: int = 1_000_000,
        val_batches: int = 4,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.num_workers = num_workers
        self.train_set = VLMTaskBatches(num_batches, batch_size, "train", tasks, weights, image_size, seed)
        self.val_set = VLMTaskBatches(val_batches, batch_size, "val", tasks, weights, image_size, seed)

    def _loader(self, dataset: Dataset) -> DataLoader:
        # items are already batches, independent draws keyed by their index: no shuffling, no collation
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def transfer_batch_to_device(self, batch: list[Conversation], device, dataloader_idx: int) -> list[Conversation]:
        """Batches are conversations, not tensors: the module encodes them on its own device."""
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)
