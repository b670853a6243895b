"""The shapes world's autoencoder: shapes, saving and loading, its frozen wrapper, latent diffusion on it,
its pretraining verb, and the fidelity of the shipped `kit:shapes-ae`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kit.data.shapes import ShapesDataset
from kit.encoders import AutoencoderConfig, ConvAutoencoder, ShapesAutoencoder
from kit.images import tensor_to_image
from kit.world.oracle import Oracle

REPO = Path(__file__).resolve().parents[2]
TINY = AutoencoderConfig(channels=(8, 8), latent_channels=4, groups=4, image_size=16)


def test_shapes_and_downsampling():
    model = ConvAutoencoder(TINY)
    assert TINY.downsample == 4
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    recon, z = model(x, torch.tensor([0.0, 0.5]))
    assert z.shape == (2, 4, 4, 4) and recon.shape == x.shape
    assert model.encode(torch.zeros(1, 3, 24, 24)).shape == (1, 4, 6, 6), "fully convolutional: any multiple of the factor"


def test_latents_are_standardised_per_channel_in_training():
    model = ConvAutoencoder(TINY).train()
    z = model.encode(torch.randn(16, 3, 16, 16))  # (16, 4, 4, 4)
    per_channel = z.transpose(0, 1).reshape(4, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(4), atol=1e-2)


def test_residual_blocks_start_as_the_identity():
    from kit.encoders.autoencoder import ResBlock

    block = ResBlock(8, 4)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(block(x), x)


def test_latent_noise_changes_only_the_decoder_input():
    model = ConvAutoencoder(TINY).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    clean, z0 = model(x)
    noisy, z1 = model(x, torch.tensor([0.0, 1.0]))
    assert torch.equal(z0, z1), "the returned latents are the clean ones"
    assert torch.allclose(noisy[0], clean[0]) and not torch.allclose(noisy[1], clean[1])


def test_save_load_round_trip(tmp_path):
    model = ConvAutoencoder(TINY).eval()
    model.save(tmp_path / "ae")
    again = ConvAutoencoder.load(tmp_path / "ae").eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(model.decode(model.encode(x)), again.decode(again.encode(x)))
    config = json.loads((tmp_path / "ae" / "config.json").read_text())
    assert config["kind"] == "kit-conv-autoencoder" and config["latent_channels"] == 4


def test_load_refuses_a_folder_that_is_not_a_kit_autoencoder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"latent_channels": 4}))
    with pytest.raises(ValueError, match="kit-conv-autoencoder"):
        ConvAutoencoder.load(tmp_path)


def test_config_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiples of groups"):
        AutoencoderConfig(channels=(6,), groups=4)
    with pytest.raises(ValueError, match="latent_channels"):
        AutoencoderConfig(latent_channels=0)


def test_frozen_wrapper(tmp_path):
    ConvAutoencoder(TINY).save(tmp_path / "ae")
    ae = ShapesAutoencoder(str(tmp_path / "ae"))
    assert ae.latent_channels == 4 and ae.downsample == 4 and ae.latent_size(32) == 8
    assert not any(p.requires_grad for p in ae.parameters())
    ae.train()
    assert not ae.model.training, "the frozen model stays in eval mode (batch norm uses its running statistics)"
    assert ae.state_dict() == {}, "frozen weights never enter a checkpoint"
    with pytest.raises(ValueError, match="not a multiple of the autoencoder's downsampling factor 4"):
        ae.latent_size(18)
    out = ae.decode(ae.encode(torch.rand(2, 3, 16, 16) * 2 - 1) * 100)
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1, "decoded images are clamped to [-1, 1]"


def test_unknown_shipped_name_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no shipped model 'kit:no-such-ae'"):
        ShapesAutoencoder("kit:no-such-ae")


@pytest.mark.parametrize("name", ["kit:shapes-ae", "kit:shapes-ae-plain"])
@pytest.mark.slow
def test_shipped_autoencoder_reconstructs_scenes_the_oracle_reads_alike(name):
    """`kit:shapes-ae` is data the defaults rely on: its reconstructions of unseen validation renders must
    read as the same scenes (the figures at training time are in results/autoencoder.json)."""
    ae = ShapesAutoencoder(name)
    data = ShapesDataset(64, "val", image_size=48)
    images = torch.stack([data[i]["image"] for i in range(64)])
    recon = ae.decode(ae.encode(images))
    oracle = Oracle()
    same = np.mean([oracle.read(tensor_to_image(r)) == oracle.read(tensor_to_image(x)) for r, x in zip(recon, images)])
    assert same >= 0.9, f"the oracle reads only {same:.2f} of reconstructions as their renders"
    z = ae.encode(images)
    assert 0.5 < float(z.std()) < 1.5, "latents are about unit variance, as the diffusion objective assumes"


@pytest.mark.slow
def test_latent_diffusion_on_the_shipped_autoencoder(tmp_path):
    """The default recipe fits and samples on kit:shapes-ae's latents; pixel positions count image pixels."""
    from kit.cli import run_cli

    ae = ShapesAutoencoder("kit:shapes-ae")
    size = ae.latent_size(48)
    args = ["fit", "-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / "recipes/smoke.yaml")]
    args += [f"--trainer.logger.init_args.save_dir={tmp_path}", f"--model.init_args.backbone.init_args.patch_size={size // 3}"]
    cli = run_cli(args)
    model = cli.model
    from kit.analysis.learning_curve import conditioning_gain

    gains = conditioning_gain(model, cli.datamodule, n=4)
    assert gains and all(np.isfinite(v) for v in gains.values()), "the learning curve's gain probe runs on latents"
    assert model.sample_shape == (ae.latent_channels, size, size)
    assert model.backbone.pixel_stride == ae.downsample
    from kit.layers import sincos_2d

    expected = sincos_2d(3, 3, model.backbone.width, spacing=float(48 // 3))
    assert torch.allclose(model.backbone.image_positions(3, 3, model.backbone.width, size // 3), expected), "positions in image pixels"
    images = model.generate(["a red circle"], num_steps=2)
    assert images.shape == (1, 3, 48, 48)
    ckpt = next(tmp_path.glob("*/version_0/checkpoints/last.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith("autoencoder.") for k in state), "the frozen autoencoder stays out of checkpoints"
    from kit.loading import load_checkpoint

    loaded = load_checkpoint(ckpt)  # kit:shapes-ae is a shipped name: no --trust-checkpoint needed
    assert isinstance(loaded.autoencoder, ShapesAutoencoder) and loaded.backbone.pixel_stride == ae.downsample


@pytest.mark.slow
def test_pretraining_verb_exports_a_loadable_model(tmp_path):
    from kit.cli import main

    out = tmp_path / "export"
    args = ["pretrain-autoencoder", "--config", str(REPO / "recipes/autoencoder/shapes_ae.yaml"), "--trainer.max_steps=3", "--trainer.val_check_interval=3"]
    args += ["--trainer.limit_val_batches=1", "--data.init_args.batch_size=4", "--data.init_args.val_size=4", "--data.init_args.num_workers=0"]
    args += ["--model.init_args.channels=[8,8]", "--model.init_args.groups=4", "--data.init_args.image_size=16", "--model.init_args.align_to=null"]
    args += [f"--model.init_args.export_to={out}", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    assert main(args) == 0
    ae = ShapesAutoencoder(str(out))
    assert ae.downsample == 4 and ae.model.config.image_size == 16, "the data's render size is recorded"
    logged = next(tmp_path.glob("shapes_ae/version_0"))
    assert logged.is_dir()


def test_pretraining_refuses_an_image_size_the_autoencoder_cannot_tile():
    from kit.pretrain import AutoencoderPretraining

    with pytest.raises(ValueError, match="not a multiple of the autoencoder's downsampling factor 16"):
        AutoencoderPretraining(channels=(8, 8, 8, 8), groups=4, image_size=40)


def test_vision_alignment_pulls_the_latent_through_a_linear_map():
    from kit.pretrain import AutoencoderPretraining
    from kit.types import Batch

    module = AutoencoderPretraining(channels=(8, 8, 8), groups=4, latent_channels=4, align_to="kit:shapes-vlm", image_size=48)
    assert isinstance(module.align, torch.nn.Linear) and module.align.in_features == 4 * 2 * 2, "one linear map per 2x2 latent cells"
    assert not any(p.requires_grad for p in module.teacher.parameters()), "the teacher is frozen"
    data = ShapesDataset(4, "val", image_size=48)
    images = torch.stack([data[i]["image"] for i in range(4)])
    loss = module.training_step(Batch(images=images, prompts=[""] * 4), 0)
    loss.backward()
    assert module.align.weight.grad is not None and module.model.encoder[0].weight.grad.abs().sum() > 0
    similarity = module.alignment(module.model.encode(images), images)
    assert -1 <= float(similarity) <= 1


def test_vision_alignment_needs_a_latent_grid_the_teacher_grid_divides():
    from kit.pretrain import AutoencoderPretraining

    with pytest.raises(ValueError, match="cannot be grouped onto the teacher's 3x3 grid"):
        AutoencoderPretraining(channels=(8, 8), groups=4, align_to="kit:shapes-vlm", image_size=32)
