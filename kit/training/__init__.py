"""Training aids a task composes: EMA of the trainable weights and representation alignment (REPA)."""

from kit.training.ema import EMA
from kit.training.repa import RepresentationAlignment, VisionTeacher

__all__ = ["EMA", "RepresentationAlignment", "VisionTeacher"]
