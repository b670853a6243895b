"""`TextToImage`: a frozen encoder, a fusion head and a backbone trained with a diffusion objective.

The module composes the stages and alone owns what crosses them: condition dropout for
classifier-free guidance, the optimizer over trainable parts only, logging, and sampling.
It builds the backbone from the data's geometry and the head from the encoder's spec and
the backbone's conditioning width, so no derived width appears in a recipe.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from kit.backbones.base import Backbone
from kit.diffusion import EulerSampler, Objective, RectifiedFlow, Sampler, classifier_free_guidance
from kit.encoders import PromptEncoder, VAELatents
from kit.encoders.cache import FeatureCache
from kit.fusion.base import FusionHead
from kit.tasks.ema import EMA
from kit.tasks.repa import RepresentationAlignment
from kit.types import Conditioning, EncoderOutput, EncoderSpec

FusionFactory = Callable[[EncoderSpec, int, int | None], FusionHead]
BackboneFactory = Callable[[int, int], Backbone]
OptimizerFactory = Callable[[list], Optimizer]
SchedulerFactory = Callable[[Optimizer, int], LRScheduler]
AlignmentFactory = Callable[[int], RepresentationAlignment]


class TextToImage(L.LightningModule):
    """Text-to-image diffusion conditioned on a frozen encoder through a fusion head.

    Args:
        encoder: the prompt encoder: a `FrozenEncoder` (never trained, never checkpointed), or any
            `PromptEncoder` (e.g. the trainable `SceneTokenEncoder` upper bound).
        fusion: the fusion head, built by the module as `fusion(encoder.spec, backbone.cond_dim, backbone.num_blocks)`.
        backbone: the denoiser, built by the module as `backbone(in_channels, image_size)`.
        objective: the training objective (rectified flow when None).
        sampler: the inference sampler (50-step Euler when None).
        optimizer: builds the optimizer from parameter groups (AdamW when None).
        lr_scheduler: builds a per-step schedule from the optimizer and the run's total steps.
        cond_drop_prob: probability of replacing a sample's conditioning with the null conditioning.
        terminal_steps: the first this many training steps put every sample at t = 1 (pure noise:
            the network sees nothing but the prompt), so the prompt -> layout regression, which the
            full time distribution teaches only slowly, is learned first (docs/efficiency.md).
        guidance_scale: default classifier-free guidance scale for sampling.
        guidance_rescale: guidance-rescale factor in [0, 1] (Lin et al. 2023); 0 is off.
        guidance_interval: times `(low, high)` where guidance applies (Kynkaanniemi et al. 2024).
        weight_decay: weight decay of matrices (norms, biases and embeddings get none).
        ema_decay: keep an exponential moving average of the trainable weights with this decay
            and use it for validation and sampling (0 turns it off).
        compile: compile the backbone with `torch.compile` (in place: state-dict keys do not change).
        autoencoder: a frozen VAE: when given, diffusion runs on its latents (pixel space when None).
        repa: representation alignment (REPA), built by the module as `repa(backbone.token_width)`: an
            auxiliary loss pulling one backbone block's image tokens towards a frozen vision teacher's
            features of the clean image (`kit.tasks.repa`; None turns it off).
        image_size: side of the training images (linked from the data by the CLI).
        in_channels: channels of the training images (linked from the data by the CLI).
    """

    def __init__(
        self,
        encoder: PromptEncoder,
        fusion: FusionFactory,
        backbone: BackboneFactory,
        objective: Objective | None = None,
        sampler: Sampler | None = None,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        cond_drop_prob: float = 0.1,
        terminal_steps: int = 0,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
        weight_decay: float = 0.0,
        ema_decay: float = 0.0,
        compile: bool = False,
        autoencoder: VAELatents | None = None,
        repa: AlignmentFactory | None = None,
        image_size: int = 32,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        # Under the CLI, Lightning hands save_hyperparameters the parsed config (plain data that
        # rebuilds every part on load); built by hand, the parts are objects and stay out.
        under_cli = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=None if under_cli else ["encoder", "fusion", "backbone", "objective", "sampler", "optimizer", "lr_scheduler", "repa"])
        self.encoder = encoder
        self.autoencoder = autoencoder
        if autoencoder is not None:  # diffusion on latents
            in_channels, image_size = autoencoder.latent_channels, autoencoder.latent_size(image_size)
        self.backbone = backbone(in_channels, image_size)
        self.fusion = fusion(encoder.spec, self.backbone.cond_dim, self.backbone.num_blocks)
        self.backbone.check_head(self.fusion)
        self.repa = repa(self.backbone.token_width) if repa is not None else None
        if self.repa is not None:
            try:
                self.backbone.check_capture(self.repa.block)
            except ValueError as e:
                raise ValueError(f"repa block {self.repa.block}: {e}") from None
        self.objective = objective or RectifiedFlow()
        self.sampler = sampler or EulerSampler()
        self.optimizer_factory = optimizer
        if optimizer is not None:  # build it once on a stand-in parameter: a bad setting fails here, before any run folder
            probe = optimizer([{"params": [nn.Parameter(torch.zeros(1))]}])
            if any(group.get("lr", 1.0) == 0 for group in probe.param_groups):
                warnings.warn("the learning rate is 0: training will not change the weights", stacklevel=2)
        self.scheduler_factory = lr_scheduler
        self.cond_drop_prob = cond_drop_prob
        if terminal_steps < 0:
            raise ValueError(f"terminal_steps must be >= 0, got {terminal_steps}")
        self.terminal_steps = terminal_steps
        self.guidance_scale = guidance_scale
        self.guidance_rescale = guidance_rescale
        self.guidance_interval = tuple(guidance_interval)
        self.weight_decay = weight_decay
        self.sample_shape = (in_channels, image_size, image_size)  # what the sampler draws: pixels or latents
        self.skipped_images = 0
        self.stopped: str | None = None  # why training stopped early (a non-finite gradient), for the CLI
        self.ema = EMA(self.named_parameters(), ema_decay) if ema_decay > 0 else None
        if compile:
            self.backbone.compile()

    # ----------------------------------------------------------------- EMA
    def averaged(self):
        """Context in which the trainable weights are the EMA ones (a no-op without EMA)."""
        return self.ema.swapped() if self.ema is not None else nullcontext()

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimizer step, then the EMA update: before any callback (a checkpoint) sees the step."""
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update()

    def on_validation_epoch_start(self) -> None:
        self._val_weights = self.averaged()
        self._val_weights.__enter__()

    def on_validation_epoch_end(self) -> None:
        self._val_weights.__exit__(None, None, None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    # ----------------------------------------------------------------- conditioning
    def condition(self, prompts: list[str], encoded: EncoderOutput | None = None) -> Conditioning:
        """Prompts -> conditioning through the frozen encoder (or its cached output) and the fusion head.
        An empty prompt gets the learned null conditioning: it asks for an unconditional sample."""
        cond = self.fusion(encoded if encoded is not None else self.encoder(prompts))
        empty = torch.tensor([not p.strip() for p in prompts], device=self.device)  # (B,)
        return cond.where(empty, self.fusion.null_conditioning(len(prompts))) if empty.any() else cond

    def setup(self, stage: str) -> None:
        """Refuse `ddp_spawn`, and a feature cache built by another encoder configuration, before any step runs."""
        strategy = self.trainer.strategy if self._trainer is not None else None
        if getattr(strategy, "_start_method", None) in ("spawn", "forkserver"):
            raise ValueError(
                "the ddp_spawn strategy is not supported: spawned workers receive the module by pickling, frozen Hugging Face "
                "encoder included; use --trainer.strategy=ddp, which starts every process from the recipe"
            )
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        cache = getattr(datamodule, "feature_cache", None)
        if cache is not None and cache.fingerprint != self.encoder.fingerprint():
            FeatureCache(cache.path, self.encoder.fingerprint())  # raises CacheMismatchError with both fingerprints

    def drop_conditioning(self, cond: Conditioning, generator: torch.Generator | None = None) -> Conditioning:
        """Replace each sample's conditioning by the null one with probability `cond_drop_prob`."""
        b = cond.batch_size
        drop = torch.rand(b, device=self.device, generator=generator) < self.cond_drop_prob  # (B,)
        return cond.where(drop, self.fusion.null_conditioning(b))

    # ----------------------------------------------------------------- steps
    def to_model_space(self, images: Tensor) -> Tensor:
        """Images -> what the backbone denoises: the images, or their VAE latents."""
        return images if self.autoencoder is None else self.autoencoder.encode(images)

    def step_generator(self, batch_idx: int = 0) -> torch.Generator:
        """The random stream of one training batch: a function of (run seed, step, micro-batch, rank) alone,
        so a resumed run draws the same times, noise and dropout as an uninterrupted one, DDP ranks draw
        different ones, and the micro-batches of one accumulated step differ."""
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        rank = self.trainer.global_rank if self._trainer is not None else 0
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        micro = self.global_step * accumulate + batch_idx % accumulate
        key = ((seed * 1_000_003 + micro) * 65_537 + rank) % (2**63)
        return torch.Generator(device=self.device).manual_seed(key)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if "skipped" in batch:  # undecodable images dropped by the data (kit.tasks.folder)
            self.skipped_images += int(batch["skipped"])
            self.log("data/skipped_images", float(self.skipped_images), reduce_fx="max")
            if len(batch["prompt"]) == 0:
                return None  # nothing decodable in this batch: skip the step
        x0 = self.to_model_space(batch["image"])  # (B, C, H, W)
        generator = self.step_generator(batch_idx)
        cond = self.drop_conditioning(self.condition(batch["prompt"], batch.get("encoded")), generator=generator)
        b = x0.shape[0]
        t = torch.ones(b, device=x0.device) if self.global_step < self.terminal_steps else self.objective.sample_time(b, x0.device, generator=generator)  # (B,)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)  # (B, C, H, W)
        with self.backbone.capturing(self.repa.block) if self.repa is not None else nullcontext():
            terms = self.objective.loss(self.backbone, x0, cond, t=t, noise=noise)
            tokens, self.backbone.captured = self.backbone.captured, None  # (B, T, W) after the REPA block, or None
        self.log("train/loss", terms["loss"], prog_bar=True)
        if self.repa is None:
            return terms["loss"]
        similarity = self.repa(tokens, batch["image"])  # (): mean cosine with the teacher's features of the clean images
        self.log("train/repa_similarity", similarity)
        return terms["loss"] - self.repa.weight * similarity

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Loss at fixed, evenly spread times and fixed noise, so validation curves are comparable."""
        if len(batch["prompt"]) == 0:
            return
        x0 = self.to_model_space(batch["image"])  # (B, C, H, W)
        b = x0.shape[0]
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        t = (torch.arange(b, device=self.device) + 0.5) / b  # (B,)
        noise = torch.randn(x0.shape, device=self.device, generator=generator)
        terms = self.objective.loss(self.backbone, x0, self.condition(batch["prompt"], batch.get("encoded")), t=t, noise=noise)
        self.log("val/loss", terms["loss"], prog_bar=True, batch_size=b, sync_dist=True)  # the mean over ranks under DDP

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self.generate(batch["prompt"], seed=batch_idx)

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Log the gradient norm; when it is not finite on any rank, skip this update, save the weights
        from before it and stop the run with a message naming the step (the weights never become NaN).
        Under fp16 loss scaling an overflowing step is left to the scaler, which skips it."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norm = (
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))
            if grads
            else torch.zeros((), device=self.device)
        )
        self.log("train/grad_norm", norm)
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return  # fp16 with a loss scaler: an overflow is the scaler's to skip, not a diverged run
        if not self.trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(norm)), all=False):
            return
        for p in self.parameters():
            p.grad = None  # the optimizer skips parameters without gradients: this step changes nothing
        step = self.global_step + 1
        ckpt = self.trainer.checkpoint_callback
        folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(self.trainer.default_root_dir) / "checkpoints"
        path = folder / f"nonfinite-step={step}.ckpt"
        self.trainer.save_checkpoint(path)
        loss = self.trainer.callback_metrics.get("train/loss")
        self.stopped = (
            f"training stopped at step {step}: the gradient norm is {float(norm)} (loss {float(loss) if loss is not None else 'unknown'}); "
            f"the weights from before this update are in {path}. Lower the learning rate or check the data."
        )
        self.trainer.should_stop = True
        rank_zero_warn(self.stopped)

    # ----------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(self, prompts: list[str], *, guidance_scale: float | None = None, num_steps: int | None = None, seed: int = 0) -> Tensor:
        """Sample one image per prompt -> `(B, C, H, W)` in [-1, 1].

        Args:
            prompts: the text prompts.
            guidance_scale: CFG scale (the module's default when None).
            num_steps: sampler steps (the sampler's own when None).
            seed: seed of the initial noise.
        """
        empty = sum(not p.strip() for p in prompts)
        if empty:
            warnings.warn(f"{empty} empty prompt(s): sampled without a prompt (the learned null conditioning)", stacklevel=2)
        was_training = self.training
        self.eval()
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        try:
            with self.averaged():  # EMA weights when the module keeps them
                cond = self.condition(prompts)
                null = self.fusion.null_conditioning(len(prompts))
                generator = torch.Generator(device=self.device).manual_seed(seed)
                noise = torch.randn(len(prompts), *self.sample_shape, device=self.device, generator=generator)
                fn = classifier_free_guidance(self.backbone, cond, null, scale, self.guidance_rescale, self.guidance_interval)
                x0 = self.sampler.sample(fn, noise, self.objective, num_steps)
            return x0.clamp(-1, 1) if self.autoencoder is None else self.autoencoder.decode(x0)
        finally:
            self.train(was_training)

    # ----------------------------------------------------------------- optimisation
    def trainable_parameter_groups(self) -> list[dict]:
        """Trainable parameters in two groups: matrices with weight decay, the rest without."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 and "null_tokens" not in name and "cond_type" not in name else no_decay).append(p)
        return [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self):
        groups = self.trainable_parameter_groups()
        optimizer = self.optimizer_factory(groups) if self.optimizer_factory else torch.optim.AdamW(groups, lr=1e-4)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The parts that train, for parameter counts in logs."""
        parts = {"fusion": self.fusion, "backbone": self.backbone}
        if self.repa is not None:
            parts["repa projector"] = self.repa.projector
        return parts
