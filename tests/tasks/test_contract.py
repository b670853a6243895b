"""Every registered task passes `kit.testing.check_task`: registering a task enrols it here."""

import pytest

import kit.joint  # noqa: F401  (registers the joint task)
from kit.tasks import TASKS
from kit.testing import check_task


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS.names())
def test_every_registered_task_keeps_the_contract(name, tmp_path):
    check_task(TASKS.get(name), tmp_path)


def test_the_check_refuses_declarations_that_name_no_constructor_argument():
    from kit.tasks import TextToImage
    from kit.testing.tasks import check_declarations

    check_declarations(TextToImage)
    Broken = type("Broken", (TextToImage,), {"model_arguments": ("encoder", "no_such_setting")})
    with pytest.raises(AssertionError, match="no_such_setting"):
        check_declarations(Broken)


def test_the_check_refuses_a_generate_that_breaks_the_contract():
    import torch

    from kit.tasks import Capability
    from kit.testing.tasks import check_generate

    class SeedBlind:
        capabilities = frozenset({Capability.TEXT_TO_IMAGE})

        def generate(self, prompts, *, references=None, guidance_scale=None, num_steps=None, seed=0):
            if isinstance(prompts, str) or not prompts or num_steps == 0:
                raise (TypeError if isinstance(prompts, str) else ValueError)("refused")
            if references:
                raise ValueError("no references")
            return torch.zeros(len(prompts), 3, 8, 8)  # the same images whatever the seed

    with pytest.raises(AssertionError, match="another seed draws other images"):
        check_generate(SeedBlind(), 8)
