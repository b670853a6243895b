"""The encoder stage: the layer-tapped frozen encoder, the optional autoencoders (a diffusers VAE, the shapes world's own), VERIFI rewriting, and the scene-token upper bound."""

from kit.encoders.autoencoder import AutoencoderConfig, ConvAutoencoder, ShapesAutoencoder
from kit.encoders.base import FrozenModel, LatentAutoencoder, PromptEncoder
from kit.encoders.frozen import FrozenEncoder, parse_taps, resolve_model_path
from kit.encoders.scene_tokens import SceneTokenEncoder
from kit.encoders.vae import VAELatents
from kit.encoders.verifi import Rewriter

__all__ = [
    "AutoencoderConfig",
    "ConvAutoencoder",
    "FrozenEncoder",
    "FrozenModel",
    "LatentAutoencoder",
    "PromptEncoder",
    "Rewriter",
    "SceneTokenEncoder",
    "ShapesAutoencoder",
    "VAELatents",
    "parse_taps",
    "resolve_model_path",
]
