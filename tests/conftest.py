"""Test setup: fully offline, deterministic, small."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors only in its interpreter, which must be on before any kernel
    # is defined. It is slow, so everything except the kernel tests (which ask for
    # KIT_KERNELS=triton explicitly) runs the PyTorch references.
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("KIT_KERNELS", "torch")

REPO = Path(__file__).resolve().parent.parent

from tests.parts_for_tests import TINY_HIDDEN, TINY_LAYERS  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def encoder():
    """The shipped tiny VLM, tapping every layer."""
    from kit.encoders import FrozenEncoder

    return FrozenEncoder("kit:shapes-vlm-random", taps="all", max_length=64)


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    """`tiny_family(name)`: the directory of that family's tiny model, built once per session."""
    from kit.testing.tiny_families import build_tiny_family

    root = tmp_path_factory.mktemp("tiny_families")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_family(family, root / family, num_layers=TINY_LAYERS, hidden_size=TINY_HIDDEN)
        return built[family]

    return get


@pytest.fixture
def repo() -> Path:
    return REPO
