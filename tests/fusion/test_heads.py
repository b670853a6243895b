"""The fusion-head library: tap selection, initialisation, layer dropout, per-block heads and their build-time errors."""

from pathlib import Path

import pytest
import torch

from kit.cli import ConfigurationError, run_cli
from kit.fusion import InjectionHead, KVFusionHead, LAPHead, ScalarMixHead, tap_positions
from kit.fusion.lap import AttentionProjector, WeightProjector
from kit.testing import TINY_SPEC, random_encoder_output
from kit.types import EncoderSpec

REPO = Path(__file__).resolve().parents[2]
NINE = EncoderSpec(name="nine", hidden_size=16, num_layers=8, taps=tuple(range(9)))
ABLATION = REPO / "recipes/ablations/fusion"
HEAD_OVERLAYS = sorted(p.name for p in ABLATION.glob("*.yaml") if p.name != "base.yaml")


def test_tap_stride_counts_back_from_the_deepest_layer():
    assert [NINE.taps[p] for p in tap_positions(NINE, 3, "lap")] == [2, 5, 8]
    assert [NINE.taps[p] for p in tap_positions(NINE, 4, "lap")] == [0, 4, 8]
    assert [NINE.taps[p] for p in tap_positions(NINE, [1, -1], "lap")] == [1, 8]
    assert tap_positions(NINE, None, "lap") == tuple(range(9))


def test_taps_the_encoder_does_not_return_are_refused_with_the_numbers():
    with pytest.raises(ValueError, match=r"lap: taps \[3, 20\] are not all returned.*hidden states \[2, 4, 5, 6\] of its 6 layers"):
        LAPHead(TINY_SPEC, 16, taps=[3, 20])


def test_layer_mixes_and_lap_projectors_start_as_the_mean_over_layers():
    enc = random_encoder_output(TINY_SPEC, [4, 2])
    mix = ScalarMixHead(TINY_SPEC, 16)
    assert torch.allclose(mix.layer_weights(), torch.full((4,), 0.25))
    heads = {projector: LAPHead(TINY_SPEC, 16, projector=projector).eval() for projector in ("weight", "flatten", "attention")}
    shared = {k: v for k, v in heads["weight"].state_dict().items() if not k.startswith("projector.")}
    for head in heads.values():  # same blocks, refiner and adaptor: only the projector differs
        head.load_state_dict(shared, strict=False)
    out = {k: h(enc).tokens for k, h in heads.items()}
    assert torch.allclose(out["weight"], out["flatten"], atol=1e-5)
    assert torch.allclose(out["weight"], out["attention"], atol=1e-5)
    assert torch.allclose(heads["attention"].layer_weights(), torch.full((4,), 0.25))


def test_attention_projector_weights_are_a_distribution_that_moves_with_the_query():
    proj = AttentionProjector(5, 8, num_heads=2)
    torch.nn.init.normal_(proj.query)
    proj(torch.randn(7, 5, 8))
    w = proj.layer_weights()
    assert w.shape == (5,) and torch.isclose(w.sum(), torch.tensor(1.0)) and w.std() > 0


@pytest.mark.parametrize("projector", ["weight", "attention"])
def test_a_dropped_layer_does_not_reach_the_pooled_vector(projector):
    proj = WeightProjector(4) if projector == "weight" else AttentionProjector(4, 8, num_heads=2)
    torch.nn.init.normal_(proj.weight if projector == "weight" else proj.query)
    h = torch.randn(3, 4, 8)
    keep = torch.tensor([[True, False, True, True]] * 3)
    changed = h.clone()
    changed[:, 1] += 5.0
    assert torch.allclose(proj(h, keep), proj(changed, keep))
    assert not torch.allclose(proj(h), proj(changed))


def test_layer_dropout_is_random_in_training_and_off_in_eval():
    head = LAPHead(TINY_SPEC, 16, layer_dropout=0.5)
    enc = random_encoder_output(TINY_SPEC, [4, 3])
    torch.manual_seed(1)
    a = head.train()(enc).tokens
    b = head(enc).tokens
    assert not torch.allclose(a, b)
    head.eval()
    assert torch.equal(head(enc).tokens, head(enc).tokens)


def test_kv_fusion_spreads_the_deepest_taps_over_the_blocks():
    head = KVFusionHead(NINE, 16, 6)
    assert head.weighted_layers == (1, 2, 3, 5, 7, 8) and head.num_output_layers == 6
    assert KVFusionHead(NINE, 16, 9).weighted_layers == tuple(range(9))
    assert KVFusionHead(NINE, 16, 2, layers=[4, 6]).weighted_layers == (4, 6)


def test_per_block_heads_refuse_a_depth_they_cannot_match():
    with pytest.raises(ValueError, match=r"12 blocks its own encoder layer, but the encoder 'nine' returns only 9 taps"):
        KVFusionHead(NINE, 16, 12)
    with pytest.raises(ValueError, match=r"lists 2 encoder layers but the backbone has 3 blocks"):
        InjectionHead(NINE, 16, 3, layers=[1, 2])
    with pytest.raises(ValueError, match=r"layers \[11\] are not returned"):
        KVFusionHead(NINE, 16, 2, layers=[8, 11])
    with pytest.raises(ValueError, match="needs a backbone with per-layer conditioning hooks"):
        KVFusionHead(NINE, 16, None)


def test_injection_starts_as_last_layer_conditioning():
    head = InjectionHead(TINY_SPEC, 16, 3)
    cond = head(random_encoder_output(TINY_SPEC, [4, 2]))
    assert cond.per_layer.shape == (2, 3, 4, 16) and cond.per_layer.abs().max() == 0
    assert cond.tokens.abs().max() > 0


def build(*extra: str):
    return run_cli(["fit", "-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / "recipes/smoke.yaml"), "--trainer.logger=false", *extra], run=False)


@pytest.mark.slow
def test_build_time_errors_name_the_numbers():
    with pytest.raises(ConfigurationError, match=r"taps \[3, 20\] are not all returned by the encoder 'kit:shapes-vlm'.*\[1, 2, 3, 4, 5, 6, 7, 8\]"):
        build("--model.init_args.fusion.init_args.taps=[3, 20]")
    with pytest.raises(
        ConfigurationError, match=r"each of the backbone's 12 blocks its own encoder layer, but the encoder 'kit:shapes-vlm' returns only 8 taps"
    ):
        build("-c", str(ABLATION / "kv_fusion.yaml"), "--model.init_args.backbone.init_args.depth=12")
    uvit = ["--model.init_args.backbone.class_path=kit.backbones.UViT", "--model.init_args.backbone.init_args.depth=3"]
    with pytest.raises(ConfigurationError, match="needs a backbone with per-layer conditioning hooks"):
        build("-c", str(ABLATION / "injection.yaml"), *uvit)


@pytest.mark.parametrize("overlay", HEAD_OVERLAYS)
@pytest.mark.slow
def test_every_ablation_head_trains_through_the_cli(overlay, tmp_path):
    cli = run_cli(
        [
            "fit",
            "-c",
            str(REPO / "recipes/lap.yaml"),
            "-c",
            str(ABLATION / "base.yaml"),
            "-c",
            str(ABLATION / overlay),
            "-c",
            str(REPO / "recipes/smoke.yaml"),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.logger.init_args.name=fusion/x",
            "--trainer.callbacks=[]",
            "--trainer.max_steps=2",
        ]
    )
    assert cli.trainer.global_step == 2
    assert torch.isfinite(torch.as_tensor(cli.trainer.callback_metrics["train/loss"]))


def test_rope_refiner_sees_token_order_and_ignores_padding():
    from kit.fusion.base import TokenRefiner

    torch.manual_seed(0)
    plain, rope = TokenRefiner(32, 2, 4), TokenRefiner(32, 2, 4, positions="rope")
    rope.load_state_dict(plain.state_dict())  # the same parameters: only the positions differ
    x, mask = torch.randn(1, 5, 32), torch.ones(1, 5, dtype=torch.bool)
    perm = torch.tensor([4, 2, 0, 1, 3])
    with torch.no_grad():
        # without positions the refiner is permutation-equivariant; with rope the order matters
        assert torch.allclose(plain(x[:, perm], mask), plain(x, mask)[:, perm], atol=1e-5)
        assert not torch.allclose(rope(x[:, perm], mask), rope(x, mask)[:, perm], atol=1e-3)
        # kept tokens are numbered in order, so padding (and where it sits) changes nothing
        padded = torch.cat([x[:, :2], torch.randn(1, 1, 32), x[:, 2:]], dim=1)
        keep = torch.tensor([[True, True, False, True, True, True]])
        assert torch.allclose(rope(padded, keep)[keep], rope(x, mask)[0], atol=1e-5)
    with pytest.raises(ValueError, match="'none' or 'rope'"):
        TokenRefiner(32, 1, 4, positions="alibi")
    with pytest.raises(ValueError, match="even head width"):
        TokenRefiner(12, 1, 4, positions="rope")
    head = LAPHead(TINY_SPEC, 16, refiner_depth=1, refiner_positions="rope", num_heads=2)
    assert head(random_encoder_output(TINY_SPEC, [3, 5])).tokens.shape[-1] == 16


def test_standardized_input_uses_the_exact_statistics_of_every_training_token():
    from kit.fusion.base import FeatureStandardizer

    torch.manual_seed(0)
    norm = FeatureStandardizer(3, 8)
    offset, spread = torch.randn(3, 8) * 20, torch.rand(3, 8) * 10 + 0.1  # a shared component and uneven dimensions
    batches = [offset + spread * torch.randn(n, 3, 8) for n in (5, 40, 1, 17)]
    for h in batches:
        norm(h)  # training mode: each batch is folded in before it is normalised
    every = torch.cat(batches)
    assert torch.allclose(norm.mean, every.mean(0), atol=1e-4)
    assert torch.allclose(norm.var, every.var(0, unbiased=False), rtol=1e-4, atol=1e-4)
    out = norm.eval()(every)
    assert torch.allclose(out.mean(0), torch.zeros(3, 8), atol=1e-4) and torch.allclose(out.std(0, unbiased=False), torch.ones(3, 8), atol=1e-3)
    before = norm.mean.clone()
    norm(torch.randn(4, 3, 8) + 100)  # eval mode: the statistics do not move
    assert torch.equal(norm.mean, before)

    head = LAPHead(TINY_SPEC, 16, input_norm="standardize", num_heads=2)
    assert {"standardizer.mean", "standardizer.var", "standardizer.count"} <= set(head.state_dict()), "the statistics are saved in checkpoints"
    enc = random_encoder_output(TINY_SPEC, [3, 5])
    head(enc)
    assert int(head.standardizer.count) == 8, "only real tokens are counted"
    kept = enc.select(head.keep_kinds)
    real = kept.hidden_states.transpose(1, 2)[kept.mask]  # (T, N, D)
    assert torch.allclose(head.standardizer.mean, real.mean(0), atol=1e-5), "the statistics are those of the real tokens"


@pytest.mark.parametrize("name", ["last_layer", "mean_layers", "resampler", "qformer", "kv_fusion"])
def test_every_head_can_standardize_its_input_and_the_statistics_change_its_output(name):
    """input_norm=standardize is a head-agnostic option (a fair ablation): in training each head
    folds its real tokens into the statistics, and in eval the statistics change what it computes."""
    from kit.fusion import FUSION_HEADS

    torch.manual_seed(0)
    kwargs = {"num_blocks": 2} if name == "kv_fusion" else {}
    head = FUSION_HEADS.get(name)(TINY_SPEC, 16, input_norm="standardize", **kwargs)
    enc = random_encoder_output(TINY_SPEC, [3, 5])
    enc.hidden_states = enc.hidden_states * 7 + 3  # far from unit statistics
    fresh = _tensors(head.eval()(enc))
    head.train()(enc)
    assert int(head.standardizer.count) == 8
    fitted = _tensors(head.eval()(enc))
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(fresh, fitted)), f"{name} ignores its standardised input"
    with pytest.raises(ValueError, match="unknown input_norm"):
        FUSION_HEADS.get(name)(TINY_SPEC, 16, input_norm="batch", **kwargs)


def _tensors(cond):
    """The tensors a conditioning carries, in a fixed order."""
    return [t for t in (cond.tokens, cond.pooled, cond.per_layer) if t is not None]
