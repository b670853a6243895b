"""The encoder stage: the layer-tapped frozen encoder, the optional VAE, VERIFI rewriting, and the scene-token upper bound."""

from kit.encoders.base import FrozenModel, PromptEncoder
from kit.encoders.frozen import FrozenEncoder, parse_taps, resolve_model_path
from kit.encoders.scene_tokens import SceneTokenEncoder
from kit.encoders.vae import VAELatents
from kit.encoders.verifi import Rewriter

__all__ = ["FrozenEncoder", "FrozenModel", "PromptEncoder", "Rewriter", "SceneTokenEncoder", "VAELatents", "parse_taps", "resolve_model_path"]
