"""`ShapesVLMPretraining`: train the tiny Qwen2-VL of the shapes world from scratch.

The module builds tokenizer, processor and model (`kit.vlm.model.build_shapes_vlm`), learns
next-token prediction on the answers of `VLMTaskData`'s conversations, scores generations on
held-out scenes every `eval_every_n_steps`, and at the end of training saves model and
processor in Hugging Face format to `export_to`, from where `FrozenEncoder` loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from kit.vlm.cells import CellProbe
from kit.vlm.evaluate import evaluate_vlm
from kit.vlm.model import build_shapes_vlm, encode
from kit.vlm.tasks import TASKS, Conversation, make_conversation
from kit.world.scene import GRID

OptimizerFactory = Callable[[list], Optimizer]
SchedulerFactory = Callable[[Optimizer, int], LRScheduler]


class ShapesVLMPretraining(L.LightningModule):
    """Pretraining of the shapes VLM on describe / QA / rewrite / edit conversations.

    Args:
        image_size: render side the processor keeps (linked from the data by `pretrain-vlm`).
        optimizer: builds the optimizer from parameter groups (AdamW at 1e-3 when None).
        lr_scheduler: builds a per-step schedule from the optimizer and the run's total steps.
        weight_decay: weight decay of matrices (norms, biases and embeddings get none).
        eval_every_n_steps: steps between generation-based scores on held-out scenes (0: only at the end).
        eval_per_task: held-out conversations per task in those scores.
        cell_supervision: weight of the cell-probe loss on the vision tower's merged tokens (0: off;
            needs renders whose merged tokens form a 3x3 grid, see `kit.vlm.cells`).
        export_to: directory where model and processor are saved (Hugging Face format) when training ends.
        seed: seed of the tokenizer corpus, of the weights and of the evaluation conversations.
        architecture: the model's sizes (`kit.vlm.model.build_shapes_vlm`: text and vision widths,
            depths and heads, vocabulary, patch size, the tokenizer's corpus).
    """

    def __init__(
        self,
        *,
        image_size: int = 48,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        weight_decay: float = 0.01,
        eval_every_n_steps: int = 1000,
        eval_per_task: int = 32,
        cell_supervision: float = 0.0,
        export_to: str | None = None,
        seed: int = 0,
        **architecture,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.tokenizer, self.processor, self.model = build_shapes_vlm(image_size=image_size, seed=seed, **architecture)
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.cell_probe = CellProbe(self.model.config.text_config.hidden_size) if cell_supervision > 0 else None
        if self.cell_probe is not None:
            merged = image_size // (self.model.config.vision_config.patch_size * 2)
            if merged != GRID:
                raise ValueError(f"cell supervision needs one merged token per grid cell: image_size / (2 * patch_size) = {merged}, not {GRID}")
            self._merged: list[torch.Tensor] = []
            self.model.model.visual.merger.register_forward_hook(self._keep_merged)
        rng = np.random.default_rng([seed, 12])
        self.eval_set: list[Conversation] = [make_conversation(t, rng, image_size, held_out=True) for t in TASKS for _ in range(eval_per_task)]

    def _keep_merged(self, module, inputs, output: torch.Tensor) -> None:
        """Forward hook on the vision merger: keep the last batch's merged image tokens `(I * 9, W)`."""
        self._merged[:] = [output]

    def training_step(self, batch: list[Conversation], batch_idx: int) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in encode(self.processor, batch).items()}
        if self.cell_probe is not None:
            self._merged.clear()
        loss = self.model(**inputs).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        scenes = [s for c in batch for s in c.image_scenes]
        if self.cell_probe is not None and scenes and self._merged:
            probe_loss, accuracy = self.cell_probe(self._merged[-1], scenes)
            loss = loss + self.hparams.cell_supervision * probe_loss
            self.log("train/cell_loss", probe_loss, batch_size=len(scenes))
            for name, value in accuracy.items():
                self.log(f"train/cell_{name}_accuracy", value, batch_size=len(scenes))
        every = self.hparams.eval_every_n_steps
        if every and self.global_step and self.global_step % every == 0:
            self.log_generation_scores()
        return loss

    def validation_step(self, batch: list[Conversation], batch_idx: int) -> None:
        inputs = {k: v.to(self.device) for k, v in encode(self.processor, batch).items()}
        self.log("val/loss", self.model(**inputs).loss, prog_bar=True, batch_size=len(batch))

    def log_generation_scores(self) -> dict:
        """Generate on the held-out evaluation conversations and log the headline scores at this step."""
        scores, _ = evaluate_vlm(self.model, self.processor, self.eval_set)
        headline = {"describe": "exact", "qa": "accuracy", "rewrite": "consistency", "edit": "exact"}
        metrics = {f"vlm/{task}_{key}": scores[task][key] for task, key in headline.items() if task in scores}
        metrics.update({f"vlm/describe_{k[5:]}": v for k, v in scores.get("describe", {}).items() if k.startswith("attr/")})
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)
        return scores

    def on_train_end(self) -> None:
        if self.hparams.eval_every_n_steps:
            self.log_generation_scores()
        if self.hparams.export_to:
            self.export(self.hparams.export_to)

    def export(self, path: str | Path) -> Path:
        """Save model, tokenizer and processor in Hugging Face format."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        return path

    def configure_optimizers(self):
        named = list(self.named_parameters())
        decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
        rest = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
        groups = [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(groups) if self.optimizer_factory else torch.optim.AdamW(groups, lr=1e-3)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
