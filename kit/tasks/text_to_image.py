"""`TextToImage`: a frozen encoder, a fusion head and a backbone trained with a diffusion objective.

The task composes the stages and owns what crosses them: condition dropout for classifier-free
guidance, the conditioning of a batch, the loss, and sampling. It builds the backbone from the
data's geometry and the head from the encoder's spec and the backbone's conditioning width, so no
derived width appears in a recipe. EMA, optimisation, compile and the checks before a run come
from `kit.tasks.base.DiffusionTask`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from kit.backbones.base import Backbone
from kit.diffusion import classifier_free_guidance
from kit.diffusion.base import Denoiser
from kit.encoders import LatentAutoencoder, PromptEncoder
from kit.fusion.base import FusionHead
from kit.tasks.base import TASKS, DiffusionTask
from kit.tasks.contract import Capability, LayerWeights
from kit.training.repa import RepresentationAlignment
from kit.types import Batch, Conditioning, EncoderOutput, EncoderSpec, References

FusionFactory = Callable[[EncoderSpec, int, int | None], FusionHead]
BackboneFactory = Callable[[int, int], Backbone]
AlignmentFactory = Callable[[int], RepresentationAlignment]


@TASKS.register("text_to_image")
class TextToImage(DiffusionTask):
    """Text-to-image diffusion conditioned on a frozen encoder through a fusion head.

    Args:
        encoder: the prompt encoder: a `FrozenEncoder` (never trained, never checkpointed), or any
            `PromptEncoder` (e.g. the trainable `SceneTokenEncoder` upper bound).
        fusion: the fusion head, built by the module as `fusion(encoder.spec, backbone.cond_dim, backbone.num_blocks)`.
        backbone: the denoiser, built by the module as `backbone(in_channels, image_size)`.
        cond_drop_prob: probability of replacing a sample's conditioning with the null conditioning.
        terminal_steps: the first this many training steps put every sample at t = 1 (pure noise:
            the network sees nothing but the prompt), so the prompt -> layout regression, which the
            full time distribution teaches only slowly, is learned first (docs/efficiency.md).
        guidance_scale: default classifier-free guidance scale for sampling.
        guidance_rescale: guidance-rescale factor in [0, 1] (Lin et al. 2023); 0 is off.
        guidance_interval: times `(low, high)` where guidance applies (Kynkaanniemi et al. 2024).
        autoencoder: a frozen autoencoder (`kit.encoders.ShapesAutoencoder`, a diffusers VAE as `VAELatents`):
            when given, diffusion runs on its latents (pixel space when None), and the backbone's `pixel`
            positions count image pixels (latent cells x its downsampling factor).
        repa: representation alignment (REPA), built by the module as `repa(backbone.token_width)`: an
            auxiliary loss pulling one backbone block's image tokens towards a frozen vision teacher's
            features of the clean image (`kit.training.repa`; None turns it off).
        image_size: side of the training images (linked from the data by the CLI).
        in_channels: channels of the training images (linked from the data by the CLI).
        kwargs: what every diffusion task takes (`DiffusionTask`: objective, sampler, optimizer, learning-rate
            schedule, weight decay, EMA; `compile` compiles the backbone).
    """

    object_arguments = (*DiffusionTask.object_arguments, "encoder", "fusion", "backbone", "repa")
    model_arguments = (*DiffusionTask.model_arguments, "fusion", "backbone")
    capabilities = frozenset({Capability.TEXT_TO_IMAGE, Capability.REFERENCES})

    @classmethod
    def tiny_recipe(cls) -> list[str]:
        return ["-c", "recipes/lap.yaml", "-c", "recipes/smoke.yaml"]

    def parts(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "fusion": self.fusion, "backbone": self.backbone}

    def layer_weights(self) -> LayerWeights | None:
        """The fusion head's weights over the encoder's layers (`FusionHead.layer_weights`), when it has them."""
        weights = self.fusion.layer_weights()
        return None if weights is None else LayerWeights(tuple(self.fusion.weighted_layers), weights, type(self.fusion).__name__)

    def sampling_settings(self, guidance_scale: float | None, num_steps: int | None) -> dict:
        """What `evaluate` records of how it sampled: guidance, steps, the sampler's time shift, the prompt rewriting."""
        rewriter = self.encoder.rewriter.fingerprint() if getattr(self.encoder, "rewriting", False) else None
        return {
            "guidance_scale": self.guidance_scale if guidance_scale is None else guidance_scale,
            "steps": num_steps or self.sampler.num_steps,
            "shift": self.sampler.shift,
            "rewrite": rewriter,
        }

    def __init__(
        self,
        encoder: PromptEncoder,
        fusion: FusionFactory,
        backbone: BackboneFactory,
        cond_drop_prob: float = 0.1,
        terminal_steps: int = 0,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
        autoencoder: LatentAutoencoder | None = None,
        repa: AlignmentFactory | None = None,
        image_size: int = 32,
        in_channels: int = 3,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.autoencoder = autoencoder
        self.image_size = image_size  # of the images, in pixels (the backbone's input is latents on an autoencoder)
        if autoencoder is not None:  # diffusion on latents
            in_channels, image_size = autoencoder.latent_channels, autoencoder.latent_size(image_size)
        self.backbone = backbone(in_channels, image_size)
        if autoencoder is not None:
            self.backbone.pixel_stride = autoencoder.downsample
        self.fusion = fusion(encoder.spec, self.backbone.cond_dim, self.backbone.num_blocks)
        self.backbone.check_head(self.fusion)
        self.repa = repa(self.backbone.token_width) if repa is not None else None
        if self.repa is not None:
            try:
                self.backbone.check_capture(self.repa.block)
            except ValueError as e:
                raise ValueError(f"repa block {self.repa.block}: {e}") from None
        self.cond_drop_prob = cond_drop_prob
        if terminal_steps < 0:
            raise ValueError(f"terminal_steps must be >= 0, got {terminal_steps}")
        self.terminal_steps = terminal_steps
        self.guidance_scale = guidance_scale
        self.guidance_rescale = guidance_rescale
        self.guidance_interval = tuple(guidance_interval)
        self.sample_shape = (in_channels, image_size, image_size)  # what the sampler draws: pixels or latents
        self.finish_building(self.backbone)

    # ----------------------------------------------------------------- conditioning
    def condition(self, prompts: list[str], encoded: EncoderOutput | None = None, references: References | None = None) -> Conditioning:
        """Prompts (and, per prompt, reference images, which reach the model only through the frozen
        VLM) -> conditioning through the encoder (or its cached output) and the fusion head. An empty
        prompt gets the learned null conditioning: it asks for an unconditional sample."""
        if references is not None and not any(references):
            references = None
        if encoded is None:  # else the feature cache's entries of these prompts and references
            encoded = self.encoder(prompts, references) if references is not None else self.encoder(prompts)
        cond = self.fusion(encoded)
        empty = torch.tensor([not p.strip() for p in prompts], device=self.device)  # (B,)
        return cond.where(empty, self.fusion.null_conditioning(len(prompts))) if empty.any() else cond

    def drop_conditioning(self, cond: Conditioning, generator: torch.Generator | None = None) -> Conditioning:
        """Replace each sample's conditioning by the null one with probability `cond_drop_prob`."""
        b = cond.batch_size
        drop = torch.rand(b, device=self.device, generator=generator) < self.cond_drop_prob  # (B,)
        return cond.where(drop, self.fusion.null_conditioning(b))

    def denoiser(self, references: References | None, batch_size: int) -> Denoiser:
        """What the objective and the sampler call as `model(x, t, cond)` for a batch of `batch_size`
        samples with these references: the backbone (a task that also feeds it the references' pixels wraps it)."""
        return self.backbone

    # ----------------------------------------------------------------- steps
    def to_model_space(self, images: Tensor) -> Tensor:
        """Images -> what the backbone denoises: the images, or their VAE latents."""
        return images if self.autoencoder is None else self.autoencoder.encode(images)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        if self.count_skipped(batch):
            return None  # nothing decodable in this batch (kit.data.folder): skip the step
        x0 = self.to_model_space(batch.images)  # (B, C, H, W)
        generator = self.step_generator(batch_idx)
        cond = self.drop_conditioning(self.condition(batch.prompts, batch.encoded, batch.references), generator=generator)
        b = x0.shape[0]
        t = torch.ones(b, device=x0.device) if self.global_step < self.terminal_steps else self.objective.sample_time(b, x0.device, generator=generator)  # (B,)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)  # (B, C, H, W)
        with self.backbone.capturing(self.repa.block) if self.repa is not None else nullcontext() as capture:
            terms = self.objective.loss(self.denoiser(batch.references, b), x0, cond, t=t, noise=noise)
        tokens = capture.tokens if capture is not None else None  # (B, T, W) after the REPA block, or None
        self.log("train/loss", terms["loss"], prog_bar=True)
        if self.repa is None:
            return terms["loss"]
        similarity = self.repa(tokens, batch.images)  # (): mean cosine with the teacher's features of the clean images
        self.log("train/repa_similarity", similarity)
        return terms["loss"] - self.repa.weight * similarity

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Loss at fixed, evenly spread times and fixed noise, so validation curves are comparable."""
        if len(batch) == 0:
            return
        x0 = self.to_model_space(batch.images)  # (B, C, H, W)
        b = x0.shape[0]
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        t = (torch.arange(b, device=self.device) + 0.5) / b  # (B,)
        noise = torch.randn(x0.shape, device=self.device, generator=generator)
        cond = self.condition(batch.prompts, batch.encoded, batch.references)
        terms = self.objective.loss(self.denoiser(batch.references, b), x0, cond, t=t, noise=noise)
        self.log("val/loss", terms["loss"], prog_bar=True, batch_size=b, sync_dist=True)  # the mean over ranks under DDP

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self.generate(batch.prompts, references=batch.references, seed=batch_idx)

    # ----------------------------------------------------------------- sampling
    def draw(self, prompts: list[str], references: References | None, guidance_scale: float | None, num_steps: int | None, seed: int) -> Tensor:
        """`generate` (see `DiffusionTask.generate`): references are `(3, H, W)` tensors in [-1, 1] or PIL images,
        shown to the frozen VLM before the prompt; sampled under the EMA weights when kept."""
        empty = sum(not p.strip() for p in prompts)
        if empty:
            warnings.warn(f"{empty} empty prompt(s): sampled without a prompt (the learned null conditioning)", stacklevel=3)
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        with self.sampling():
            cond = self.condition(prompts, references=references)
            null = self.fusion.null_conditioning(len(prompts))
            generator = torch.Generator(device=self.device).manual_seed(seed)
            noise = torch.randn(len(prompts), *self.sample_shape, device=self.device, generator=generator)
            fn = classifier_free_guidance(self.denoiser(references, len(prompts)), cond, null, scale, self.guidance_rescale, self.guidance_interval)
            x0 = self.sampler.sample(fn, noise, self.objective, num_steps)
            return x0.clamp(-1, 1) if self.autoencoder is None else self.autoencoder.decode(x0)
