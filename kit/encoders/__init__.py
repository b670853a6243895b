"""Frozen pretrained models: the layer-tapped encoder, the optional VAE, the tiny-VLM factory."""

from kit.encoders.base import FrozenModel
from kit.encoders.frozen import FrozenEncoder, parse_taps, resolve_model_path
from kit.encoders.vae import VAELatents
from kit.encoders.verifi import Rewriter

__all__ = ["FrozenEncoder", "FrozenModel", "Rewriter", "VAELatents", "parse_taps", "resolve_model_path"]
