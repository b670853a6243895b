"""TextToImage built by hand (as a notebook would): optimizer scope, condition dropout, generation."""

from functools import partial

import pytest
import torch

from kit.backbones import SingleStreamDiT
from kit.fusion import LAPHead
from kit.tasks import TextToImage
from kit.types import Batch


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


def test_terminal_steps_train_at_pure_noise_first(module, monkeypatch):
    seen = []
    original = module.objective.loss

    def recording(model, x0, cond, t=None, noise=None):
        seen.append(t)
        return original(model, x0, cond, t=t, noise=noise)

    monkeypatch.setattr(module.objective, "loss", recording)
    batch = Batch(images=torch.zeros(4, 3, 16, 16), prompts=["a red circle"] * 4)
    module.terminal_steps = 3
    for step in (0, 2, 3):
        monkeypatch.setattr(TextToImage, "global_step", property(lambda self, s=step: s))  # no trainer needed
        module.training_step(batch, 0)
    assert torch.equal(seen[0], torch.ones(4)) and torch.equal(seen[1], torch.ones(4)), "steps 0 and 2 train at t = 1"
    assert not torch.equal(seen[2], torch.ones(4)), "from step 3 on the objective draws its own times"
    with pytest.raises(ValueError, match="terminal_steps"):
        TextToImage(module.encoder, fusion=LAPHead, backbone=SingleStreamDiT, terminal_steps=-1)


def test_generate_is_deterministic_and_bounded(module):
    a = module.generate(["a red circle", "two blue squares"], num_steps=3, seed=1)
    b = module.generate(["a red circle", "two blue squares"], num_steps=3, seed=1)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)
    assert not torch.equal(a, module.generate(["a red circle", "two blue squares"], num_steps=3, seed=2)), "the seed is used"
    assert module.training, "generate restores the training mode"


def test_generate_clamps_what_the_sampler_overshoots(module, monkeypatch):
    """A sampler that lands outside the image range (as an untrained model does) gives images in [-1, 1]:
    the clamp of its output, not a rescaling of it."""
    raw = torch.linspace(-3, 3, 2 * 3 * 16 * 16).reshape(2, 3, 16, 16)
    monkeypatch.setattr(module.sampler, "sample", lambda *args, **kwargs: raw.clone())
    images = module.generate(["a red circle", "two blue squares"], num_steps=3, seed=1)
    assert torch.equal(images, raw.clamp(-1, 1)) and images.min() == -1 and images.max() == 1


def test_ema_tracks_swaps_and_survives_a_checkpoint(encoder, tmp_path):
    from kit.training.ema import EMA

    backbone = partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2)
    module = TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1, refiner_depth=1), backbone=backbone, image_size=16, ema_decay=0.9)
    assert module.ema is not None and not any(name.startswith("encoder.") for name in module.ema.params), "EMA never copies the frozen encoder"
    shadows = {f"ema.{name}" for name, _ in module.ema.named_buffers()}
    assert shadows and set(module._ddp_params_and_buffers_to_ignore) == shadows, "DDP must not broadcast the averages at every step"
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
    state = module.ema.checkpoint_state()
    other = EMA(module.named_parameters(), 0.9)
    other.load_checkpoint_state(state)
    assert torch.equal(other.shadow["backbone.final.linear.weight"], averaged)
    assert list(module.state_dict()) == list(
        TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1, refiner_depth=1), backbone=backbone, image_size=16).state_dict()
    ), "the EMA's shadows stay out of the module's state dict (they travel under the checkpoint's 'ema' key)"


def test_ema_follows_the_module_to_another_dtype():
    """The averaged weights move with `.to()`: after a cast, swapping them in keeps the parameters' dtype,
    and the shadows are the cast values (not stale copies of the old ones)."""
    from kit.encoders import FrozenEncoder

    own = FrozenEncoder("kit:shapes-vlm-random", taps="all", max_length=64)  # the cast below moves the encoder too: not the shared one
    backbone = partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2)
    module = TextToImage(own, fusion=partial(LAPHead, layer_depth=1, refiner_depth=1), backbone=backbone, image_size=16, ema_decay=0.9)
    module.ema.update()
    module.to(torch.float64)
    p = module.backbone.final.adaLN[-1].weight
    assert module.ema.shadow["backbone.final.adaLN.1.weight"].dtype == torch.float64 == p.dtype
    assert all(s.dtype == torch.float64 for s in module.ema.shadow.values())
    with module.averaged():
        assert p.dtype == torch.float64
    module.ema.update()  # lerp between float64 tensors: fails if the shadows stayed float32


@pytest.mark.slow
def test_compile_flag_keeps_state_dict_keys(encoder):
    backbone = partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2)
    plain = TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1), backbone=backbone, image_size=16)
    compiled = TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1), backbone=backbone, image_size=16, compile=True)
    assert compiled.backbone._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(plain.state_dict()), "checkpoints stay loadable either way"


@pytest.mark.parametrize("name", ["dit", "dit_xattn", "mmdit", "uvit"])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    from kit.backbones import BACKBONES
    from kit.types import Conditioning

    torch.manual_seed(0)
    kwargs = {"patch_size": 4, "width": 32, "depth": 3 if name == "uvit" else 2, "num_heads": 2}
    plain = BACKBONES.get(name)(3, 8, **kwargs)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = BACKBONES.get(name)(3, 8, gradient_checkpointing=True, **kwargs)
    ckpt.load_state_dict(plain.state_dict())
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([0.3, 0.7])
    cond = Conditioning(tokens=torch.randn(2, 4, 32), mask=torch.ones(2, 4, dtype=torch.bool))
    calls = {}
    for label, model in (("plain", plain), ("ckpt", ckpt)):
        model.train()
        blocks = model.in_blocks if name == "uvit" else model.blocks
        blocks[0].register_forward_pre_hook(lambda *_, label=label: calls.__setitem__(label, calls.get(label, 0) + 1))
        model(x, t, cond).pow(2).mean().backward()
    for (n, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), n
    # the flag takes effect: a checkpointed block starts its forward again in the backward pass
    # (a pre-hook: the recomputation stops early, so a post-forward hook would not see it)
    assert calls == {"plain": 1, "ckpt": 2}


@pytest.mark.slow
def test_bf16_mixed_precision_fit(tmp_path):
    from kit.cli import run_cli

    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    args = ["fit", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), "--trainer.precision=bf16-mixed"]
    cli = run_cli([*args, f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)
    dtypes = set()
    cli.model.backbone.final.linear.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype) if torch.is_grad_enabled() else None)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert dtypes == {torch.bfloat16}, f"training matmuls ran in {dtypes}, not under bf16 autocast"


@pytest.mark.slow
def test_latent_diffusion_with_a_tiny_vae(tmp_path):
    """Fit and sample on the latents of a tiny random AutoencoderKL, through the recipe overlay."""
    from diffusers import AutoencoderKL

    from kit.cli import run_cli

    vae_dir = tmp_path / "vae"
    AutoencoderKL(
        block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=32,
    ).save_pretrained(vae_dir)  # fmt: skip
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    args = ["fit", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/latent/vae.yaml"), "-c", str(repo / "recipes/smoke.yaml")]
    args += [f"--model.init_args.autoencoder.init_args.model={vae_dir}", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    args += ["--model.init_args.backbone.init_args.patch_size=4", "--data.init_args.image_size=32"]
    cli = run_cli(args)
    model = cli.model
    assert model.backbone.in_channels == 4 and model.backbone.input_size == 16, "the backbone works on 4 x 16 x 16 latents"
    assert model.sample_shape == (4, 16, 16)
    images = model.generate(["a red circle"], num_steps=2)
    assert images.shape == (1, 3, 32, 32), "samples are decoded back to pixels"
    ckpt = next(tmp_path.glob("*/version_0/checkpoints/last.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith("autoencoder.") for k in state), "the frozen VAE stays out of checkpoints"
