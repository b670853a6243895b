"""Test setup: fully offline, deterministic, small."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def encoder():
    """The shipped tiny VLM, tapping every layer."""
    from kit.encoders import FrozenEncoder

    return FrozenEncoder("kit:shapes-vlm-random", taps="all", max_length=64)


@pytest.fixture
def repo() -> Path:
    return REPO
