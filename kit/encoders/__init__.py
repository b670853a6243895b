"""Frozen encoders: Hugging Face models wrapped to return tapped hidden states per token."""

from kit.encoders.frozen import FrozenEncoder, parse_taps, resolve_model_path

__all__ = ["FrozenEncoder", "parse_taps", "resolve_model_path"]
