"""Evaluation: scoring images against prompt suites with the oracle."""

from kit.analysis.evaluate import anchor_images, evaluate_module, generate_suite, subset
from kit.analysis.scoring import score_images, score_scenes

__all__ = ["anchor_images", "evaluate_module", "generate_suite", "score_images", "score_scenes", "subset"]
