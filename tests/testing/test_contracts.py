"""Every registered fusion head and backbone honours its contract (registering a part enrols it here)."""

import pytest
import torch

from kit.backbones import BACKBONES
from kit.fusion import FUSION_HEADS, FusionHead
from kit.testing import check_backbone, check_fusion_head
from kit.types import Conditioning


@pytest.mark.parametrize("name", FUSION_HEADS.names())
def test_fusion_head_contract(name):
    cls = FUSION_HEADS.get(name)
    for kwargs in cls.test_settings:  # beside each head: registering a head enrols it here
        check_fusion_head(cls, **kwargs)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name):
    cls = BACKBONES.get(name)
    for kwargs in cls.test_settings:
        check_backbone(cls, **kwargs)


@pytest.mark.parametrize("registry", [FUSION_HEADS, BACKBONES], ids=["heads", "backbones"])
def test_every_parts_test_settings_name_its_own_arguments(registry):
    """Each part's `test_settings` is a non-empty tuple of settings that its constructor (or, for the
    `SingleSequenceHead` family, its `build_reducer`) takes: a renamed argument cannot leave them stale."""
    import inspect

    for name, cls in registry.items():
        settings = cls.test_settings
        assert isinstance(settings, tuple) and settings and all(isinstance(s, dict) for s in settings), name
        accepted = set()
        for klass in cls.__mro__:
            for method in ("__init__", "build_reducer"):
                if method in vars(klass):
                    accepted |= set(inspect.signature(vars(klass)[method]).parameters)
        unknown = {key for s in settings for key in s} - accepted
        assert not unknown, f"{name}: test settings name {sorted(unknown)}, which {cls.__name__} does not take"


class LeakyMeanHead(FusionHead):
    """A broken head: it averages over all tokens, padding included."""

    def __init__(self, spec, cond_dim):
        super().__init__(spec, cond_dim)
        self.proj = torch.nn.Linear(spec.hidden_size, cond_dim)

    def forward(self, enc):
        x = self.proj(enc.hidden_states.mean(dim=(1, 2)))[:, None]  # (B, 1, C)
        return Conditioning(tokens=x, mask=torch.ones(x.shape[:2], dtype=torch.bool))


def test_contract_check_catches_a_head_that_reads_padding():
    with pytest.raises(AssertionError, match="padding / dropped-kind invariance"):
        check_fusion_head(LeakyMeanHead)


def test_lap_starts_as_the_mean_over_layers_and_exposes_its_weights():
    from kit.fusion import LAPHead
    from kit.testing import TINY_SPEC

    head = LAPHead(TINY_SPEC, 16)
    w = head.layer_weights()
    assert w.shape == (TINY_SPEC.num_taps,)
    assert torch.allclose(w, torch.full_like(w, 1 / TINY_SPEC.num_taps))


def test_registry_errors_list_the_known_names():
    with pytest.raises(KeyError, match=r"unknown fusion head 'perceiver'; known fusion heads: injection \(kit.fusion.per_block.InjectionHead\)"):
        FUSION_HEADS.get("perceiver")
    assert FUSION_HEADS.get("LAPHead") is FUSION_HEADS.get("lap")


def test_incompatible_head_is_refused_with_both_names():
    from kit.backbones import IncompatibleHeadError, SingleStreamDiT
    from kit.testing import TINY_SPEC

    class PooledOnly(FusionHead):
        provides = frozenset({"pooled"})

        def forward(self, enc):
            raise NotImplementedError

    dit = SingleStreamDiT(3, 8, patch_size=2, width=32, depth=1, num_heads=2)
    with pytest.raises(IncompatibleHeadError, match=r"PooledOnly provides \['pooled'\].*SingleStreamDiT consumes \['per_layer', 'tokens'\]"):
        dit.check_head(PooledOnly(TINY_SPEC, 32))


def test_per_layer_head_with_the_wrong_depth_is_refused_with_the_numbers():
    from kit.backbones import IncompatibleHeadError, SingleStreamDiT
    from kit.testing import TINY_SPEC

    class FourLayerHead(FusionHead):
        provides = frozenset({"per_layer"})
        num_output_layers = 4

        def forward(self, enc):
            raise NotImplementedError

    dit = SingleStreamDiT(3, 8, patch_size=2, width=32, depth=6, num_heads=2)
    with pytest.raises(IncompatibleHeadError, match="FourLayerHead feeds 4 blocks but backbone SingleStreamDiT has 6"):
        dit.check_head(FourLayerHead(TINY_SPEC, 32))


@pytest.mark.parametrize("name", ["dit", "dit_xattn", "mmdit", "uvit"])
def test_pixel_positions_count_input_pixels_and_separate_a_coarse_grid(name):
    from kit.layers import sincos_2d

    patch = BACKBONES.get(name)(3, 48, patch_size=16, width=64, depth=1, num_heads=2)
    pixel = BACKBONES.get(name)(3, 48, patch_size=16, width=64, depth=1, num_heads=2, positions="pixel")
    torch.testing.assert_close(patch.image_positions(3, 3, 64, 16), sincos_2d(3, 3, 64))
    torch.testing.assert_close(pixel.image_positions(3, 3, 64, 16)[4], sincos_2d(48, 48, 64)[16 * 48 + 16], msg="token (1, 1) sits at pixel (16, 16)")

    def varying(pos):  # dimensions whose value moves by more than 0.5 across the 9 tokens of a 3x3 grid
        return int(((pos.max(0).values - pos.min(0).values) > 0.5).sum())

    assert varying(pixel.image_positions(3, 3, 64, 16)) >= 2 * varying(patch.image_positions(3, 3, 64, 16))
    with pytest.raises(ValueError, match="unknown positions 'grid'; choose patch or pixel"):
        BACKBONES.get(name)(3, 48, patch_size=16, width=64, depth=1, num_heads=2, positions="grid")


def test_the_dit_decoder_hidden_layer_is_there_and_starts_at_zero():
    """`decoder_hidden` puts a GELU layer of that width before the zero-initialised output map; 0 keeps
    DiT's single linear map and its state-dict keys (older checkpoints load)."""
    from kit.backbones import SingleStreamDiT

    plain = SingleStreamDiT(3, 16, patch_size=8, width=32, depth=1, num_heads=2)
    deep = SingleStreamDiT(3, 16, patch_size=8, width=32, depth=1, num_heads=2, decoder_hidden=48)
    assert set(deep.state_dict()) - set(plain.state_dict()) == {"final.hidden.0.weight", "final.hidden.0.bias"}
    assert deep.final.linear.weight.shape == (8 * 8 * 3, 48) and not deep.final.linear.weight.any()
    with pytest.raises(ValueError, match="decoder hidden width must be >= 0"):
        SingleStreamDiT(3, 16, patch_size=8, width=32, depth=1, num_heads=2, decoder_hidden=-1)
    two = SingleStreamDiT(3, 16, patch_size=8, width=32, depth=1, num_heads=2, decoder_hidden=48, decoder_layers=2)
    assert [tuple(m.weight.shape) for m in two.final.hidden if isinstance(m, torch.nn.Linear)] == [(48, 32), (48, 48)]
    assert two(torch.randn(2, 3, 16, 16), torch.rand(2), Conditioning(tokens=torch.randn(2, 5, 32), mask=torch.ones(2, 5, dtype=torch.bool))).abs().sum() == 0
    with pytest.raises(ValueError, match="decoder hidden layers must be >= 1"):
        SingleStreamDiT(3, 16, patch_size=8, width=32, depth=1, num_heads=2, decoder_hidden=48, decoder_layers=0)
