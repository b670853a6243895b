"""Contract checks importable from tests and notebooks: one per swappable family (fusion heads, backbones, tasks)."""

from kit.testing.contracts import TINY_SPEC, check_backbone, check_fusion_head, random_encoder_output
from kit.testing.tasks import check_task

__all__ = ["TINY_SPEC", "check_backbone", "check_fusion_head", "check_task", "random_encoder_output"]
