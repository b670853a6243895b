"""Objectives, samplers and guidance. Time is continuous in [0, 1]; t = 1 is noise."""

from kit.diffusion.base import Objective, Sampler
from kit.diffusion.flow import EulerSampler, RectifiedFlow
from kit.diffusion.guidance import classifier_free_guidance

__all__ = ["EulerSampler", "Objective", "RectifiedFlow", "Sampler", "classifier_free_guidance"]
