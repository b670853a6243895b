"""Noise schedules, objectives, samplers and guidance over one tensor or named streams. Time is continuous in [0, 1]; t = 1 is noise."""

from kit.diffusion.base import Objective, Sampler, SamplingObjective
from kit.diffusion.guidance import classifier_free_guidance
from kit.diffusion.objectives import DDPM, DiffusionObjective, RectifiedFlow
from kit.diffusion.samplers import DDIMSampler, DPMSolverPP2M, EulerSampler, HeunSampler
from kit.diffusion.schedules import DDPMSchedule, LinearFlow, NoiseSchedule
from kit.diffusion.streams import IMAGE, Streams

__all__ = [
    "DDIMSampler",
    "DDPM",
    "DDPMSchedule",
    "DPMSolverPP2M",
    "DiffusionObjective",
    "EulerSampler",
    "HeunSampler",
    "IMAGE",
    "LinearFlow",
    "NoiseSchedule",
    "Objective",
    "RectifiedFlow",
    "Sampler",
    "SamplingObjective",
    "Streams",
    "classifier_free_guidance",
]
