"""`TextLatentPretraining`: trains the joint model's `TextLatentCodec` (reducer and prefix decoder together) on a
DataModule's captions with teacher-forced cross-entropy, and reports on the validation captions the exact-match
rate of greedy reconstruction (`val/exact`):

    python -m kit fit -c recipes/joint/text_latent.yaml

The joint task reads the trained codec from this module's checkpoint (`JointImageText(text_codec=...)`).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn

from kit.compat import under_cli
from kit.joint.codec import TextLatentCodec


class TextLatentPretraining(L.LightningModule):
    """Trains a `TextLatentCodec` on a DataModule's captions; logs `val/exact` (greedy reconstruction exact-match).

    Args:
        encoder: the frozen prompt encoder.
        codec: settings of `TextLatentCodec` (besides the encoder).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        image_size: linked from the data by the CLI; unused (captions only).
        in_channels: linked from the data by the CLI; unused.
    """

    def __init__(
        self,
        encoder: nn.Module,
        codec: dict[str, int | str] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        image_size: int = 0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=None if under_cli() else ["encoder"])  # the CLI records the parsed recipe; by hand, the plain settings
        self.encoder = encoder
        self.codec = TextLatentCodec(encoder, **(codec or {}))
        self.lr, self.weight_decay = lr, weight_decay
        self._exact: list[float] = []

    def latents(self, prompts: list[str]) -> Tensor:
        with torch.no_grad():
            enc = self.encoder(prompts)
        return self.codec.encode(enc)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = self.codec.loss(self.latents(batch.prompts), batch.prompts)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.prompts))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        z = self.latents(batch.prompts)
        self.log("val/loss", self.codec.loss(z, batch.prompts), batch_size=len(batch.prompts))
        self._exact += [float(a == b) for a, b in zip(self.codec.decode(z), batch.prompts)]

    def on_validation_epoch_end(self) -> None:
        if self._exact:
            self.log("val/exact", sum(self._exact) / len(self._exact), prog_bar=True)
        self._exact = []

    def configure_optimizers(self):
        return torch.optim.AdamW(self.codec.parameters(), lr=self.lr, weight_decay=self.weight_decay)
