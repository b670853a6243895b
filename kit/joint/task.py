"""`JointImageText`: UniDiffuser (Bao et al. 2023) on the kit, one network for every image-text distribution.

An image (pixels, or a frozen autoencoder's latents) and its caption are diffused together, each under its own
time. The caption is a stream of one of two kinds (`text_stream`): UniDiffuser's continuous text latent (the frozen
VLM's features reduced by a trained, frozen `TextLatentCodec`), or its tokens under masked diffusion
(`kit.joint.masked`, the time is the mask ratio, the loss a cross-entropy). The network
(`kit.joint.JointUViT`) predicts both streams' noise at `(x_{t_x}, y_{t_y}, t_x, t_y)`. Conditioning is a
stream at time 0, marginalising is a stream at time 1 (pure noise), so one set of weights samples

    t2i              images given captions          image at t, text at 0
    i2t              captions given images          text at t, image at 0
    joint            image-caption pairs            both at t
    image, text      either marginal                the other at 1
    image_variation  i2t, then t2i of that caption
    text_variation   t2i, then i2t of that image
    gibbs            a joint pair, then `gibbs_steps` rounds of (i2t, t2i)

and classifier-free guidance comes **for free**: the unconditional prediction is the same network with the
other stream at time 1 (joint sampling guides against both marginals). The baseline UniDiffuser compares with,
a learned null text, is trained by `null_text_prob` and sampled with `guidance="null"`.

The image's semantic part. UniDiffuser's image is two parts diffused under one time: the VAE latent and CLIP's
image embedding, which lives in the space CLIP's text features do, so reading a caption off an image starts from a
representation made for it. `image_embed_layer` does the same with the frozen VLM: its states at the image's
tokens at that tap, standardised per token, are the stream `"image_embed"`, diffused and predicted with the image
(the pixels or latents are what the image decodes from). Without it the image is its pixels or latents alone.

What it reads and what it writes. With `Batch.targets` (the data's `target_style`) a sample's text is its prompt
where the text is given clean (time 0: text-to-image, in the prompt mix) and its target caption wherever the text
is predicted, so the model reads every register and writes one (`recipes/unidiffuser.yaml`: canonical).

Training times. UniDiffuser draws both times uniformly and independently, so t near 0 (the conditional tasks)
and near 1 (the marginals, and CFG's unconditional branch) come up as often as any other. The kit's rectified
flow draws logit-normal times, which almost never reach either end; `clean_prob` and `noise_prob` put one
stream (either, at random) at exactly 0 or 1 for that share of samples. A stream given clean at time 0 has
nothing to predict (its velocity is its unknown noise), so it is left out of the loss; the loss is the sum
over streams of each stream's mean over the samples that predict it, weighted by the objective's
`stream_weights`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import nonmember
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kit.encoders import LatentAutoencoder, PromptEncoder
from kit.joint.backbone import IMAGE, IMAGE_EMBED, TEXT, JointUViT
from kit.joint.codec import TextLatentCodec
from kit.joint.evaluate import evaluate_joint
from kit.joint.masked import MaskedTextCodec
from kit.joint.sampling import Guidance, JointSample, Mode, sample
from kit.tasks.base import TASKS, DiffusionTask
from kit.tasks.contract import Capability, EvaluationSettings
from kit.types import Batch, Choice, EncoderOutput, TokenKind
from kit.world.suites import SuiteEntry

JointBackboneFactory = Callable[[int, int, int, int], JointUViT]


class TextStream(Choice):
    """How the caption is diffused: `latent`, UniDiffuser's continuous text latent (a frozen VLM's features reduced
    by a pretrained `TextLatentCodec`, diffused with the image's objective), or `masked`, the caption's tokens under
    masked (absorbing-state) diffusion with a cross-entropy loss (`kit.joint.masked`; nothing to pretrain)."""

    label = nonmember("text stream")
    latent = "latent"
    masked = "masked"


class Direction(Choice):
    """What the joint network is trained to do: everything (`joint`, UniDiffuser), or one conditional only, with the
    other stream always clean: `image_to_text` (the upper bound of the caption path) or `text_to_image`. The
    single-direction models are anchors for the joint one: the same network, data and budget."""

    label = nonmember("direction")
    joint = "joint"
    image_to_text = "image_to_text"
    text_to_image = "text_to_image"


@TASKS.register("joint_image_text")
class JointImageText(DiffusionTask):
    """One U-ViT predicting the noise of an image and of its caption's text latent under independent times.

    Args:
        encoder: the frozen prompt encoder whose caption features the text latent reduces.
        backbone: the joint network, built by the module as `backbone(in_channels, image_size, text_tokens, text_dim)`.
        text_stream: 'latent' (UniDiffuser's continuous text latent) or 'masked' (masked diffusion over the
            caption's tokens, `kit.joint.masked`).
        codec: the text codec's settings (besides the encoder): a `TextLatentCodec`'s for the latent stream (they must
            equal `text_codec`'s), a `MaskedTextCodec`'s (`max_tokens`) for the masked one.
        text_codec: the latent stream's `TextLatentPretraining` checkpoint (`python -m kit fit -c
            recipes/joint/text_latent.yaml`) whose reducer and decoder are used, frozen. None builds a fresh random
            codec: only for tests, its latents cannot be decoded. The masked stream reads none.
        text_temperature: the masked stream's sampling temperature (0: the most probable token at every step).
        clean_prob: share of training samples with one stream (either, at random) clean at time 0 and left out of
            the loss: the conditional tasks, trained directly.
        noise_prob: share of training samples with one stream at time 1 (pure noise): the marginals, and the
            unconditional branch of CFG for free.
        null_text_prob: share of training samples whose text is a learned null at time 0 (a learned latent, or the
            masked stream's null token at every position: the learned-null guidance baseline, `guidance="null"`); 0
            trains none.
        guidance_scale: the default guidance scale of the conditional and joint modes (1 is none).
        text_guidance_scale: the default guidance scale of the text stream (image-to-text, and the text of joint
            pairs); None: `guidance_scale`. A masked stream is guided as log-probabilities, which a large scale
            sharpens past the caption.
        guidance: the default unconditional branch: 'free' (the other stream at time 1) or 'null' (the learned null text).
        gibbs_steps: the (i2t, t2i) rounds of the `gibbs` mode.
        direction: `joint` trains every distribution; `image_to_text` (`text_to_image`) keeps the image (the text)
            clean at time 0 in every sample, an anchor that learns that conditional only (`clean_prob`, `noise_prob`
            and `null_text_prob` are then not read).
        image_embed_layer: the encoder tap (an index into its taps, -1 the deepest) whose states at the image's
            tokens become the image stream's second part, `"image_embed"` (UniDiffuser's CLIP image embedding);
            None: the image stream is the pixels or latents alone. Needs an encoder that takes images.
        autoencoder: a frozen autoencoder: diffusion runs on its latents (pixels when None).
        image_size: side of the training images (linked from the data by the CLI).
        in_channels: channels of the training images (linked from the data by the CLI).
        kwargs: what every diffusion task takes (`DiffusionTask`: objective, sampler, optimizer, schedule, EMA...).
    """

    object_arguments = (*DiffusionTask.object_arguments, "encoder", "backbone", "autoencoder")
    weight_file_arguments = (*DiffusionTask.weight_file_arguments, "text_codec")
    model_arguments = (*DiffusionTask.model_arguments, "backbone", "text_stream", "codec", "image_embed_layer")
    capabilities = frozenset({Capability.TEXT_TO_IMAGE, Capability.IMAGE_TO_TEXT})
    evaluation = "joint"

    @classmethod
    def tiny_recipe(cls) -> list[str]:
        return ["-c", "recipes/unidiffuser.yaml", "-c", "recipes/smoke.yaml", "--model.init_args.text_codec=null"]

    def __init__(
        self,
        encoder: PromptEncoder,
        backbone: JointBackboneFactory,
        text_stream: TextStream = TextStream.latent,
        codec: dict[str, int | str] | None = None,
        text_codec: str | None = None,
        text_temperature: float = 1.0,
        clean_prob: float = 0.3,
        noise_prob: float = 0.1,
        null_text_prob: float = 0.0,
        guidance_scale: float = 1.0,
        text_guidance_scale: float | None = None,
        guidance: Guidance = Guidance.free,
        gibbs_steps: int = 2,
        direction: Direction = Direction.joint,
        image_embed_layer: int | None = None,
        autoencoder: LatentAutoencoder | None = None,
        image_size: int = 32,
        in_channels: int = 3,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        for name, p in (("clean_prob", clean_prob), ("noise_prob", noise_prob), ("null_text_prob", null_text_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if clean_prob + noise_prob > 1.0:
            raise ValueError(f"clean_prob + noise_prob is {clean_prob + noise_prob}; they share the samples and must sum to at most 1")
        if text_temperature < 0:
            raise ValueError(f"text_temperature must be >= 0 (0 takes the most probable token), got {text_temperature}")
        guidance = Guidance.of(guidance)
        self.direction = Direction.of(direction)
        self.text_stream = TextStream.of(text_stream)
        self.text_temperature = text_temperature
        self.encoder = encoder
        self.codec = self.build_codec(encoder, codec or {}, text_codec)
        self.codec.requires_grad_(False).eval()
        self.autoencoder = autoencoder
        self.image_embed_layer = image_embed_layer
        self.image_size = pixels = image_size  # of the images, in pixels (the image stream is latents on an autoencoder)
        if autoencoder is not None:
            in_channels, image_size = autoencoder.latent_channels, autoencoder.latent_size(image_size)
        embed = {}
        if image_embed_layer is not None:
            self.check_embed_layer(encoder, image_embed_layer)
            probe = self.image_embeddings(torch.zeros(1, 3, pixels, pixels))  # (1, M_e, D): the encoder's tokens for one image
            embed = {"embed_tokens": probe.shape[1], "embed_dim": probe.shape[2]}
        if self.discrete_text:
            embed["text_vocab"] = self.codec.vocab_size
        self.backbone = backbone(in_channels, image_size, self.codec.num_latents, self.codec.latent_dim, **embed)
        if autoencoder is not None:
            self.backbone.pixel_stride = autoencoder.downsample
        latent_null = null_text_prob > 0 and not self.discrete_text
        self.null_text = nn.Parameter(torch.zeros(self.codec.num_latents, self.codec.latent_dim)) if latent_null else None
        self.clean_prob, self.noise_prob, self.null_text_prob = clean_prob, noise_prob, null_text_prob
        self.guidance_scale, self.guidance, self.gibbs_steps = guidance_scale, guidance, gibbs_steps
        self.text_guidance_scale = guidance_scale if text_guidance_scale is None else text_guidance_scale
        self.sample_shape = (in_channels, image_size, image_size)
        self.finish_building(self.backbone)

    def build_codec(self, encoder: PromptEncoder, settings: dict, text_codec: str | None) -> TextLatentCodec | MaskedTextCodec:
        """The text stream's codec: a `TextLatentCodec` (loaded from `text_codec`) or a `MaskedTextCodec`."""
        if not self.discrete_text:
            codec = TextLatentCodec(encoder, **settings)
            if text_codec is not None:
                codec.load_pretrained(text_codec, settings, encoder.spec.name)
            return codec
        if text_codec is not None:
            raise ValueError(
                f"text_codec {text_codec}: the masked text stream diffuses the caption's tokens and reads no text codec; drop text_codec (or use text_stream: latent)"
            )
        unknown = sorted(set(settings) - {"max_tokens"})
        if unknown:
            raise ValueError(f"codec settings {unknown} are the latent text stream's; the masked stream takes only max_tokens")
        return MaskedTextCodec(encoder, **settings)

    @property
    def discrete_text(self) -> bool:
        """Whether the text stream is the caption's tokens (masked diffusion) rather than a continuous latent."""
        return self.text_stream == TextStream.masked

    @property
    def has_null_text(self) -> bool:
        """Whether the model was trained with a learned null text (`guidance="null"` is then available)."""
        return self.null_text_prob > 0

    def null_text_batch(self, n: int) -> Tensor:
        """The learned null text for `n` samples: latents `(n, L, d)`, or null-token ids `(n, L)`."""
        if self.discrete_text:
            return self.codec.null(n, self.device)
        return self.null_text.expand(n, *self.null_text.shape)

    def stream_input(self, name: str, value: Tensor, t: Tensor) -> Tensor:
        """What the network is fed for stream `name` at `(value, t)`: the objective's scaled input, or token ids as they are."""
        return value if name == TEXT and self.discrete_text else self.objective.model_input(value, t)

    def train(self, mode: bool = True):
        super().train(mode)
        self.codec.eval()  # frozen: never in training mode
        return self

    @staticmethod
    def check_embed_layer(encoder: PromptEncoder, layer: int) -> None:
        if not getattr(encoder, "takes_images", False):
            raise ValueError(f"image_embed_layer needs an encoder that reads images; {type(encoder).__name__} ({encoder.spec.name}) reads text only")
        taps = len(encoder.spec.taps)
        if not -taps <= layer < taps:
            raise ValueError(f"image_embed_layer {layer} is not one of the encoder's {taps} taps (use 0..{taps - 1}, or -1 for the deepest)")

    @property
    def image_streams(self) -> tuple[str, ...]:
        """The streams of the image modality: the pixels or latents, and the VLM's embedding when there is one."""
        return (IMAGE, IMAGE_EMBED) if self.image_embed_layer is not None else (IMAGE,)

    def streams_of(self, modality: str) -> tuple[str, ...]:
        """The streams of `modality` ('image' or 'text')."""
        return self.image_streams if modality == IMAGE else (TEXT,)

    # ----------------------------------------------------------------- streams
    def to_model_space(self, images: Tensor) -> Tensor:
        """Images `(B, 3, H, W)` in [-1, 1] -> the image stream (the images, or their latents)."""
        return images if self.autoencoder is None else self.autoencoder.encode(images)

    def from_model_space(self, x: Tensor) -> Tensor:
        """The image stream -> images `(B, 3, H, W)` in [-1, 1]."""
        return x.clamp(-1, 1) if self.autoencoder is None else self.autoencoder.decode(x)

    def image_embeddings(self, images: Tensor) -> Tensor:
        """Images `(B, 3, H, W)` in [-1, 1] -> the frozen encoder's states at their image tokens at `image_embed_layer`,
        standardised per token `(B, M_e, D)` (read with an empty prompt: a causal VLM's image states do not depend on it)."""
        with torch.no_grad():
            enc = self.encoder([""] * images.shape[0], [[image] for image in images]).select((TokenKind.IMAGE,))
            states = enc.hidden_states[:, self.image_embed_layer].float()  # (B, M_e, D)
            return F.layer_norm(states, states.shape[-1:])

    def image_streams_of(self, images: Tensor) -> dict[str, Tensor]:
        """Images `(B, 3, H, W)` in [-1, 1] -> every stream of the image modality (see `image_streams`)."""
        out = {IMAGE: self.to_model_space(images)}
        if self.image_embed_layer is not None:
            out[IMAGE_EMBED] = self.image_embeddings(images)
        return out

    def text_latents(self, prompts: list[str], encoded: EncoderOutput | None = None) -> Tensor:
        """Captions (or their cached encoder output) -> text latents `(B, L, d)` (token ids `(B, L)` for the masked stream)."""
        if self.discrete_text:
            return self.codec.ids(prompts).to(self.device)
        with torch.no_grad():
            return self.codec.encode(self.encoder(prompts) if encoded is None else encoded)

    def text_of(self, batch: Batch, given: Tensor) -> Tensor:
        """The text stream's clean value for a batch: the prompt where the text is `given` `(B,)` (the condition, at
        time 0), the target caption (`Batch.targets`, the register the model writes) where it is predicted;
        the prompts for both when the batch has no targets -> `(B, L, d)` latents or `(B, L)` ids."""
        if batch.targets is None or bool(given.all()):
            return self.text_latents(batch.prompts, batch.encoded)
        written = self.text_latents(batch.targets)
        if not bool(given.any()):  # nothing given (validation, image-to-text only): the prompts are not encoded
            return written
        read = self.text_latents(batch.prompts, batch.encoded)
        return torch.where(given.view(-1, *[1] * (read.dim() - 1)), read, written)

    def pinned_times(self, b: int, generator: torch.Generator | None) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        """Times per stream `(B,)` from the objective, with `clean_prob` / `noise_prob` of the samples having one
        stream at 0 / 1; also the per-stream masks `(B,)` of samples whose stream is in the loss, and the
        mask `(B,)` of samples whose text is the learned null."""
        device = self.device
        times = {IMAGE: self.objective.sample_time(b, device, generator=generator)}
        # the masked stream's time is its mask ratio, drawn uniformly (masked diffusion's usual choice)
        times[TEXT] = torch.rand(b, device=device, generator=generator) if self.discrete_text else self.objective.sample_time(b, device, generator=generator)
        drawn = dict(times)
        u = torch.rand(b, device=device, generator=generator)
        image_pinned = torch.rand(b, device=device, generator=generator) < 0.5  # which stream a pinned sample pins
        clean, noisy = u < self.clean_prob, (u >= self.clean_prob) & (u < self.clean_prob + self.noise_prob)
        null = torch.rand(b, device=device, generator=generator) < self.null_text_prob if self.has_null_text else torch.zeros_like(clean)
        for n, pinned in ((IMAGE, image_pinned & ~null), (TEXT, ~image_pinned & ~null)):
            times[n] = torch.where(pinned & noisy, torch.ones_like(times[n]), times[n])
            times[n] = torch.where(pinned & clean, torch.zeros_like(times[n]), times[n])
        times[TEXT] = torch.where(null, torch.zeros_like(times[TEXT]), times[TEXT])  # the null text is given, clean
        if self.direction != Direction.joint:  # one conditional only: the condition is always clean
            given = IMAGE if self.direction == Direction.image_to_text else TEXT
            times = {n: torch.zeros_like(t) if n == given else t for n, t in drawn.items()}
            null = torch.zeros_like(null)
        times |= {n: times[IMAGE] for n in self.image_streams}  # the image's parts share its time
        keep = {n: times[n] > 0 for n in times}
        return times, keep, null

    def stream_loss(self, terms: dict[str, Tensor], keep: dict[str, Tensor]) -> Tensor:
        """The weighted sum over streams of each stream's mean error over the samples `keep` marks."""
        total = 0.0
        for n, k in keep.items():
            per_sample = terms[f"loss_per_sample/{n}"]  # (B,)
            mean = (per_sample * k).sum() / k.sum().clamp(min=1)
            self.log(f"train/loss/{n}", mean)
            total = total + self.objective.stream_weights.get(n, 1.0) * mean
        return total

    # ----------------------------------------------------------------- steps
    def losses(self, clean: dict[str, Tensor], times: dict[str, Tensor], generator: torch.Generator | None) -> dict[str, Tensor]:
        """Every stream's error at `times` (noise drawn from `generator`): the objective's `loss` terms (`loss/<stream>`,
        `loss_per_sample/<stream>` `(B,)`, `loss`). The masked text stream is corrupted by masking and scored by its
        cross-entropy at the masked positions; the image's streams by the objective, in the same forward."""
        images = {n: v for n, v in clean.items() if n != TEXT or not self.discrete_text}
        noise = {n: torch.randn(v.shape, device=self.device, generator=generator) for n, v in images.items()}
        if not self.discrete_text:
            return self.objective.loss(self.backbone, images, None, t=times, noise=noise)
        ids = clean[TEXT]  # (B, L)
        corrupted, masked = self.codec.corrupt(ids, times[TEXT], generator)  # (B, L) each
        logits = {}

        def network(xs: dict[str, Tensor], ts: dict[str, Tensor], cond) -> dict[str, Tensor]:
            preds = self.backbone(xs | {TEXT: corrupted}, ts | {TEXT: times[TEXT]}, cond)
            logits[TEXT] = preds.pop(TEXT)  # (B, L, V)
            return preds

        terms = self.objective.loss(network, images, None, t={n: times[n] for n in images}, noise=noise)
        text = self.codec.loss(logits[TEXT], ids, masked)  # (B,)
        terms |= {"loss_per_sample/text": text, "loss/text": text.mean()}
        weight = self.objective.stream_weights.get(TEXT, 1.0)
        terms["loss"] = terms["loss"] + weight * text.mean()
        terms["loss_per_sample"] = terms["loss_per_sample"] + weight * text
        return terms

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        if self.count_skipped(batch):
            return None
        clean = self.image_streams_of(batch.images)  # image (B, C, H, W) [, image_embed (B, M_e, D)]
        generator = self.step_generator(batch_idx)
        times, keep, null = self.pinned_times(len(batch), generator)
        y0 = self.text_of(batch, given=times[TEXT] == 0)  # (B, L, d), or ids (B, L)
        if null.any():
            nulls = self.null_text_batch(len(batch))
            y0 = torch.where(null.view(-1, *[1] * (y0.dim() - 1)), nulls, y0)
        clean[TEXT] = y0
        terms = self.losses(clean, times, generator)
        loss = self.stream_loss(terms, keep)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Loss at fixed, evenly spread times (the text's in reverse order) and fixed noise, both streams predicted."""
        if len(batch) == 0:
            return
        b = len(batch)
        clean = self.image_streams_of(batch.images) | {TEXT: self.text_of(batch, given=torch.zeros(b, dtype=torch.bool, device=self.device))}
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        t = (torch.arange(b, device=self.device) + 0.5) / b  # (B,)
        times = {n: t.flip(0) if n == TEXT else t for n in clean}
        terms = self.losses(clean, times, generator)
        self.log("val/loss", terms["loss"], prog_bar=True, batch_size=b, sync_dist=True)
        for n in clean:
            self.log(f"val/loss/{n}", terms[f"loss/{n}"], batch_size=b, sync_dist=True)

    # ----------------------------------------------------------------- sampling (kit.joint.sampling)
    def sample(self, mode: Mode | str, **kwargs) -> JointSample:
        """Sample in one of the `Mode`s (see `kit.joint.sampling.sample` for the arguments)."""
        return sample(self, mode, **kwargs)

    def draw(self, prompts: list[str], references, guidance_scale: float | None, num_steps: int | None, seed: int) -> Tensor:
        """Text-to-image (`generate`, what `kit evaluate` and the callbacks call) -> `(B, 3, H, W)`."""
        return self.sample(Mode.t2i, prompts=prompts, guidance_scale=guidance_scale, num_steps=num_steps, seed=seed).images

    # ----------------------------------------------------------------- the contract
    def parts(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "codec": self.codec, "backbone": self.backbone}

    def evaluate(self, entries: Sequence[SuiteEntry], settings: EvaluationSettings | None = None) -> dict[str, Any]:
        """Every direction (`kit.joint.evaluate.evaluate_joint`): text-to-image per guidance variant, captions of
        `settings.num_scenes` held-out scenes, joint pairs, marginals and the text decoder."""
        s = settings or EvaluationSettings()
        results = evaluate_joint(
            self,
            entries,
            images_per_prompt=s.images_per_prompt,
            num_scenes=s.num_scenes,
            guidance_scale=s.guidance_scale,
            num_steps=s.num_steps,
            batch_size=s.batch_size,
            seed=s.seed,
            progress=s.progress,
        )
        return {"task": "joint", "steps": s.num_steps or self.sampler.num_steps, "sampler": type(self.sampler).__name__, **results}

    @staticmethod
    def summarize(results: dict[str, Any]) -> str:
        cfg = "  ".join(f"{k}={v:.3f}" for k, v in results["cfg"].items() if k != "scale")
        return (
            f"t2i overall {results['t2i_overall']:.3f} [cfg {cfg}]  i2t exact {results['i2t_exact']:.3f} (faithful {results['i2t']['faithful']:.3f})  "
            f"joint consistency {results['joint_consistency']:.3f}  decoder exact {results['decoder_exact']:.3f}"
        )
