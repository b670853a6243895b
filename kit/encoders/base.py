"""`FrozenModel`: the base of every wrapper around a pretrained model the kit never trains.

Frozen means: no parameter requires grad, the wrapped model stays in eval mode whatever
`.train()` says, and its weights never enter a checkpoint (a state-dict hook drops them;
loading tolerates their absence). Wrappers reload the model from its recorded name, so
checkpoints stay small and the frozen part cannot drift.
"""

from __future__ import annotations

from torch import nn

from kit.types import EncoderOutput, EncoderSpec


class PromptEncoder(nn.Module):
    """The contract of a prompt encoder: `forward(prompts, images=None) -> EncoderOutput`.

    `TextToImage` takes any subclass. `FrozenEncoder` is the one the kit is about (a frozen VLM);
    `SceneTokenEncoder` is a trainable, perfectly disentangled stand-in used as an upper bound.
    Subclasses set `spec` (what the fusion head is built for) and `fingerprint()` (what keys a
    feature cache; `None` when the encoder trains and so cannot be cached).
    """

    rewriter = None  # VERIFI settings; only generative VLM encoders rewrite
    takes_images = False
    rewriting = False

    @property
    def spec(self) -> EncoderSpec:
        raise NotImplementedError

    def fingerprint(self) -> dict | None:
        return None

    def set_rewriter(self, rewriter) -> None:
        if rewriter is not None:
            raise ValueError(f"{type(self).__name__} cannot rewrite prompts (VERIFI needs a generative VLM encoder)")

    def forward(self, prompts: list[str], images=None) -> EncoderOutput:
        raise NotImplementedError


class FrozenModel(nn.Module):
    """Holds a pretrained `self.model`; call `freeze()` once it is set."""

    model: nn.Module

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.model.eval()
        self.register_state_dict_post_hook(_drop_own_keys)
        self.register_load_state_dict_pre_hook(_fill_own_keys)

    def train(self, mode: bool = True) -> FrozenModel:
        """The wrapped model stays in eval mode (no dropout) whatever the parent asks."""
        super().train(mode)
        self.model.eval()
        return self


class LatentAutoencoder(FrozenModel):
    """The contract of a frozen image autoencoder diffusion can run on (`TextToImage(autoencoder=...)`).

    Subclasses set `latent_channels` and `downsample` (pixels per latent cell along each side) and
    implement `encode` (`(B, 3, H, W)` in [-1, 1] -> `(B, latent_channels, H / downsample, W / downsample)`,
    scaled to about unit variance) and `decode` (the inverse, clamped to [-1, 1]).
    """

    latent_channels: int
    downsample: int

    def latent_size(self, image_size: int) -> int:
        """Side of the latent grid for square images of side `image_size`."""
        if image_size % self.downsample:
            raise ValueError(f"image size {image_size} is not a multiple of the autoencoder's downsampling factor {self.downsample}")
        return image_size // self.downsample

    def encode(self, images, generator=None):
        raise NotImplementedError

    def decode(self, latents):
        raise NotImplementedError


def _drop_own_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    """Checkpoints never hold the frozen weights: they are reloaded from the recorded name."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _fill_own_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Loading a checkpoint (which has no frozen weights) keeps the weights already loaded."""
    for key, value in module.model.state_dict().items():
        state_dict.setdefault(f"{prefix}model.{key}", value)
