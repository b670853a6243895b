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


def test_ema_tracks_swaps_and_survives_a_checkpoint(encoder, tmp_path):
    from kit.tasks.ema import EMA

    backbone = partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2)
    module = TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1, refiner_depth=1), backbone=backbone, image_size=16, ema_decay=0.9)
    assert module.ema is not None and not any(name.startswith("encoder.") for name in module.ema.params), "EMA never copies the frozen encoder"
    p = module.backbone.final.linear.weight
    before = p.detach().clone()
    with torch.no_grad():
        p.add_(1.0)
    module.ema.update()
    live = p.detach().clone()
    with module.averaged():
        averaged = p.detach().clone()
        with module.averaged():  # re-entrant: still the averaged values
            assert torch.equal(p, averaged)
    assert torch.equal(p, live), "the live weights come back"
    decay = min(0.9, 2 / 11)
    assert torch.allclose(averaged, decay * before + (1 - decay) * live)
    state = module.ema.state_dict()
    other = EMA(module.named_parameters(), 0.9)
    other.load_state_dict(state)
    assert torch.equal(other.shadow["backbone.final.linear.weight"], averaged)


def test_compile_flag_keeps_state_dict_keys(encoder):
    backbone = partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2)
    plain = TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1), backbone=backbone, image_size=16)
    compiled = TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1), backbone=backbone, image_size=16, compile=True)
    assert compiled.backbone._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(plain.state_dict()), "checkpoints stay loadable either way"
