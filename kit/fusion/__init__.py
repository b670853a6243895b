"""Fusion heads: how frozen-encoder features become the backbone's conditioning. One head (family) per file."""

from kit.fusion.base import FUSION_HEADS, FusionHead, SingleSequenceHead, tap_positions
from kit.fusion.lap import LAPHead
from kit.fusion.last_layer import LastLayerHead
from kit.fusion.mix import MeanLayersHead, ScalarMixHead
from kit.fusion.per_block import InjectionHead, KVFusionHead
from kit.fusion.qformer import QFormerHead
from kit.fusion.resampler import ResamplerHead

__all__ = [
    "FUSION_HEADS",
    "FusionHead",
    "InjectionHead",
    "KVFusionHead",
    "LAPHead",
    "LastLayerHead",
    "MeanLayersHead",
    "QFormerHead",
    "ResamplerHead",
    "ScalarMixHead",
    "SingleSequenceHead",
    "tap_positions",
]
