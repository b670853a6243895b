"""Denoising backbones. One family per file; shared diffusion blocks in `layers.py`."""

from kit.backbones.base import BACKBONES, Backbone, IncompatibleHeadError
from kit.backbones.dit import SingleStreamDiT
from kit.backbones.dit_xattn import CrossAttnDiT
from kit.backbones.mmdit import MMDiT
from kit.backbones.uvit import UViT

__all__ = ["BACKBONES", "Backbone", "CrossAttnDiT", "IncompatibleHeadError", "MMDiT", "SingleStreamDiT", "UViT"]
