"""`AutoencoderPretraining`: trains the shapes world's `ConvAutoencoder` (`python -m kit pretrain-autoencoder`).

Loss: pixel MSE plus `l1_weight` x the L1 error, with pixels that differ from the image's background (its
median colour) weighted `1 + foreground_weight` (an object's outline is a few pixels of a mostly empty
scene, and a small square read as a circle is the error that matters), plus `edge_weight` x the L1 error of
the horizontal and vertical pixel differences (sharp corners). The decoder reads latents with Gaussian
noise of a per-sample level drawn uniformly in [0, `latent_noise`] (so that near-data latents decode to
clean scenes). With `align_to`, each grid cell's latent values are also pulled, through one linear map,
towards a frozen vision tower's features of that cell, standardised per dimension over the batch's cells
(cosine similarity, weight `align_weight`), so that
what the teacher separates linearly (the cell's colour, shape, size) is a linear direction of the latent
(vision-aligned latents, as VA-VAE aligns a VAE with a foundation model; Yao et al. 2025). Validation reports the reconstruction error and, what matters for the kit, the share of
validation scenes the oracle reads the same from the reconstruction as from the render, at latent noise
0 and `latent_noise` / 2 (`val/oracle_same`, `val/oracle_same_noisy`). When training ends the model is
written to `export_to`, from where `ShapesAutoencoder` loads it.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from kit.encoders.autoencoder import AutoencoderConfig, ConvAutoencoder
from kit.images import tensor_to_image
from kit.tasks.base import OptimizerFactory, SchedulerFactory
from kit.types import Batch
from kit.world.oracle import Oracle


class AutoencoderPretraining(L.LightningModule):
    """Train a `ConvAutoencoder` on the images of a data module (the prompts are ignored).

    Args:
        channels: feature channels of each encoder level (each level halves the resolution).
        latent_channels: channels of the latent grid.
        groups: group-norm groups.
        latent_noise: the largest std of the noise added to a latent before decoding in training.
        l1_weight: weight of the L1 reconstruction error next to the MSE.
        foreground_weight: extra weight of pixels away from the image's background colour.
        edge_weight: weight of the L1 error of neighbouring-pixel differences.
        align_to: a Qwen2-VL-family checkpoint whose vision tower the latents are aligned with (`kit:shapes-vlm`);
            None turns the alignment off.
        align_weight: weight of the alignment loss (its negative cosine similarity).
        export_to: folder the trained model is written to when training ends (None: not written).
        image_size: render size (linked from the data by the CLI; recorded in the model's config).
        optimizer: optimizer factory (AdamW when None).
        lr_scheduler: learning-rate schedule factory, called with the optimizer and the run's steps (constant when None).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64),
        latent_channels: int = 4,
        *,
        groups: int = 8,
        latent_noise: float = 0.4,
        l1_weight: float = 0.5,
        foreground_weight: float = 4.0,
        edge_weight: float = 1.0,
        align_to: str | None = None,
        align_weight: float = 0.5,
        export_to: str | None = None,
        image_size: int = 48,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        if latent_noise < 0:
            raise ValueError(f"latent_noise must be >= 0, got {latent_noise}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        config = AutoencoderConfig(channels=tuple(channels), latent_channels=latent_channels, groups=groups, image_size=image_size)
        if image_size % config.downsample:
            raise ValueError(
                f"image size {image_size} is not a multiple of the autoencoder's downsampling factor {config.downsample} (channels {tuple(channels)})"
            )
        self.model = ConvAutoencoder(config)
        self.teacher = self.align = None
        if align_to is not None:
            from kit.training.repa import VisionTeacher

            self.teacher = VisionTeacher(align_to)
            side = image_size // config.downsample  # latent grid side
            if side % self.teacher.grid:
                raise ValueError(f"a {side}x{side} latent grid cannot be grouped onto the teacher's {self.teacher.grid}x{self.teacher.grid} grid")
            per_cell = config.latent_channels * (side // self.teacher.grid) ** 2
            self.align = torch.nn.Linear(per_cell, self.teacher.width)  # linear: the structure must be in the latent itself
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.oracle = Oracle()

    def reconstruction_loss(self, recon: Tensor, images: Tensor) -> Tensor:
        hp = self.hparams
        background = images.flatten(2).median(dim=2).values[..., None, None]  # (B, 3, 1, 1)
        weight = 1 + hp.foreground_weight * ((images - background).abs().amax(1, keepdim=True) > 0.05).float()  # (B, 1, H, W)
        err = recon - images  # (B, 3, H, W)
        loss = (weight * err.pow(2)).mean() + hp.l1_weight * (weight * err.abs()).mean()
        if hp.edge_weight:
            dx, dy = err.diff(dim=3), err.diff(dim=2)  # errors of the pixel differences
            loss = loss + hp.edge_weight * (dx.abs().mean() + dy.abs().mean())
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images = batch.images  # (B, 3, H, W)
        noise = torch.rand(images.shape[0], device=images.device) * self.hparams.latent_noise  # (B,)
        recon, z = self.model(images, noise)
        loss = self.reconstruction_loss(recon, images)
        if self.align is not None:
            similarity = self.alignment(z, images)
            self.log("train/align_cosine", similarity)
            loss = loss - self.hparams.align_weight * similarity
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/latent_std", z.detach().std())
        return loss

    def alignment(self, z: Tensor, images: Tensor) -> Tensor:
        """Mean cosine similarity `()` between each teacher cell's linearly mapped latent values and the teacher's
        features of the clean images `(B, 3, H, W)`; z `(B, C, h, w)`."""
        with torch.no_grad():
            target = self.teacher(images)  # (B, g, g, D)
            flat = target.flatten(0, 2)  # (B*g*g, D): standardised over the batch's cells, since the tower's tokens
            target = (target - flat.mean(0)) / (flat.std(0) + 1e-6)  # share a large common part that cosine would reward
        g = target.shape[1]
        cells = rearrange(z, "b c (g p) (k q) -> b g k (c p q)", g=g, k=g)  # (B, g, g, C * (h/g)^2)
        return torch.nn.functional.cosine_similarity(self.align(cells), target, dim=-1).mean()

    @torch.no_grad()
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        images = batch.images  # (B, 3, H, W)
        z = self.model.encode(images)  # (B, C, h, w)
        for name, level in (("", 0.0), ("_noisy", self.hparams.latent_noise / 2)):
            recon = self.model.decode(z + level * torch.randn_like(z)).clamp(-1, 1)
            self.log(f"val/mse{name}", (recon - images).pow(2).mean(), batch_size=len(batch))
            self.log(f"val/oracle_same{name}", self.oracle_agreement(recon, images), batch_size=len(batch))

    def oracle_agreement(self, recon: Tensor, images: Tensor) -> float:
        """Share of images whose reconstruction the oracle reads as the same scene."""
        same = [self.oracle.read(tensor_to_image(r)) == self.oracle.read(tensor_to_image(x)) for r, x in zip(recon, images, strict=True)]
        return float(np.mean(same))

    def on_train_end(self) -> None:
        if self.hparams.export_to and self.trainer.is_global_zero:
            self.export(self.hparams.export_to)

    def export(self, folder: str | Path) -> Path:
        """Write the model where `ShapesAutoencoder(model=folder)` loads it."""
        return self.model.save(folder)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]  # the autoencoder and the alignment map
        optimizer = self.optimizer_factory(params) if self.optimizer_factory else torch.optim.AdamW(params, lr=2e-3)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
