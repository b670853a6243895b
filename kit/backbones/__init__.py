"""Denoising backbones. One family per file; shared diffusion blocks in `layers.py`."""

from kit.backbones.base import BACKBONES, Backbone, IncompatibleHeadError
from kit.backbones.dit import SingleStreamDiT

__all__ = ["BACKBONES", "Backbone", "IncompatibleHeadError", "SingleStreamDiT"]
