"""TextToImage built by hand (as a notebook would): optimizer scope, condition dropout, generation."""

from functools import partial

import pytest
import torch

from kit.backbones import SingleStreamDiT
from kit.fusion import LAPHead
from kit.tasks import TextToImage


@pytest.fixture
def module(encoder):
    backbone = partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2)
    return TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1, refiner_depth=1), backbone=backbone, image_size=16, cond_drop_prob=0.5)


def test_optimizer_sees_trainable_parameters_only(module):
    groups = module.trainable_parameter_groups()
    optimised = {id(p) for g in groups for p in g["params"]}
    assert not optimised & {id(p) for p in module.encoder.parameters()}, "the frozen encoder is not optimised"
    assert optimised == {id(p) for p in [*module.fusion.parameters(), *module.backbone.parameters()]}
    assert all(p.ndim >= 2 for p in groups[0]["params"]) and groups[1]["weight_decay"] == 0.0
    assert "encoder" not in module.hparams, "hand-built parts stay out of the hyperparameters"


def test_condition_dropout_uses_the_null_conditioning(module):
    cond = module.condition(["a red circle"] * 400)
    module.cond_drop_prob = 0.5
    mixed = module.drop_conditioning(cond, generator=torch.Generator().manual_seed(0))
    null_token = module.fusion.null_tokens[0, 0]
    dropped = (mixed.tokens[:, 0] == null_token).all(dim=1) & (mixed.mask.sum(1) == 1)
    assert 150 < int(dropped.sum()) < 250
    module.cond_drop_prob = 0.0
    assert torch.equal(module.drop_conditioning(cond).tokens, cond.tokens)


def test_generate_is_deterministic_and_bounded(module):
    a = module.generate(["a red circle", "two blue squares"], num_steps=3, seed=1)
    b = module.generate(["a red circle", "two blue squares"], num_steps=3, seed=1)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert module.training, "generate restores the training mode"
