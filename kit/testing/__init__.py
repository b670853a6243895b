"""Contract checks importable from tests and notebooks."""

from kit.testing.contracts import TINY_SPEC, check_backbone, check_fusion_head, random_encoder_output

__all__ = ["TINY_SPEC", "check_backbone", "check_fusion_head", "random_encoder_output"]
