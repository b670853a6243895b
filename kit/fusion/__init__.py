"""Fusion heads: how frozen-encoder features become the backbone's conditioning. One head per file."""

from kit.fusion.base import FUSION_HEADS, FusionHead
from kit.fusion.lap import LAPHead
from kit.fusion.last_layer import LastLayerHead

__all__ = ["FUSION_HEADS", "FusionHead", "LAPHead", "LastLayerHead"]
