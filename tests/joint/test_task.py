"""The joint image-text model (UniDiffuser): the joint U-ViT, the pinned training times, the masked loss,
CFG for free in every mode, the sampling modes, and the errors a user meets."""

from __future__ import annotations

import importlib.util
import json
from functools import partial

import pytest
import torch

from kit.joint import JointImageText, JointUViT
from kit.joint.sampling import denoiser
from kit.loading import load_checkpoint
from kit.tasks import Capability
from kit.types import Batch

PROMPTS = ["a red circle", "two blue squares", "a green triangle on the left", "a diamond"]
CODEC = {"num_latents": 12, "latent_dim": 8, "width": 32, "decoder_depth": 1, "max_tokens": 16}


@pytest.fixture(scope="module")
def vlm():
    """The shipped shapes VLM: it reads images (the random stand-in of the `encoder` fixture reads text only)."""
    from kit.encoders import FrozenEncoder

    return FrozenEncoder("kit:shapes-vlm", taps="all", max_length=64)


def _task(encoder, **kwargs) -> JointImageText:
    backbone = partial(JointUViT, patch_size=2, width=32, depth=3, num_heads=2)
    return JointImageText(encoder, backbone, codec=CODEC, image_size=8, **kwargs)


def _randomise_outputs(net: JointUViT) -> None:
    """The output layers start at zero; give them weights so that predictions depend on the inputs."""
    for layer in (net.final, net.text_out):
        torch.nn.init.normal_(layer.weight, std=0.5)


def test_the_joint_uvit_predicts_both_streams_each_reading_the_other_and_both_times():
    net = JointUViT(4, 8, 5, 6, patch_size=2, width=32, depth=3, num_heads=2)
    xs = {"image": torch.randn(2, 4, 8, 8), "text": torch.randn(2, 5, 6)}
    ts = {"image": torch.tensor([0.3, 0.7]), "text": torch.tensor([0.9, 0.1])}
    out = net(xs, ts)
    assert out["image"].shape == (2, 4, 8, 8) and out["text"].shape == (2, 5, 6)
    assert out["image"].abs().max() == 0 and out["text"].abs().max() == 0, "both output layers start at zero"
    _randomise_outputs(net)
    base = net(xs, ts)
    moved_text = net({"image": xs["image"], "text": xs["text"] + 1.0}, ts)
    assert (moved_text["image"] - base["image"]).abs().max() > 1e-4, "the image prediction reads the text stream"
    moved_time = net(xs, {"image": ts["image"], "text": torch.tensor([0.0, 1.0])})
    assert (moved_time["image"] - base["image"]).abs().max() > 1e-4, "the image prediction reads the text's time"
    with pytest.raises(ValueError, match=r"the text stream is \(4, 6\) per sample; this network takes 5 tokens x 6"):
        net({"image": xs["image"], "text": torch.randn(2, 4, 6)}, ts)


def test_training_times_pin_one_stream_and_the_clean_one_leaves_the_loss(encoder):
    task = _task(encoder, clean_prob=1.0, noise_prob=0.0)
    times, keep, null = task.pinned_times(256, torch.Generator().manual_seed(0))
    clean = (times["image"] == 0) ^ (times["text"] == 0)
    assert clean.all(), "every sample has exactly one stream clean"
    assert 0.35 < float((times["image"] == 0).float().mean()) < 0.65, "either stream, at random"
    assert torch.equal(keep["image"], times["image"] > 0) and torch.equal(keep["text"], times["text"] > 0) and not null.any()
    task = _task(encoder, clean_prob=0.0, noise_prob=1.0, null_text_prob=0.5)
    times, keep, null = task.pinned_times(256, torch.Generator().manual_seed(0))
    assert (times["text"][null] == 0).all() and not keep["text"][null].any(), "a null text is given clean"
    rest = ~null
    assert ((times["image"][rest] == 1) ^ (times["text"][rest] == 1)).all(), "every other sample has one stream at pure noise"
    with pytest.raises(ValueError, match="clean_prob \\+ noise_prob is 1.5"):
        _task(encoder, clean_prob=1.0, noise_prob=0.5)


def test_a_single_direction_keeps_its_condition_clean_in_every_sample(encoder):
    joint = _task(encoder, clean_prob=0.7, noise_prob=0.15, null_text_prob=0.1)
    base, _, _ = joint.pinned_times(256, torch.Generator().manual_seed(0))
    for direction, given, learned in (("image_to_text", "image", "text"), ("text_to_image", "text", "image")):
        task = _task(encoder, clean_prob=0.7, noise_prob=0.15, null_text_prob=0.1, direction=direction)
        times, keep, null = task.pinned_times(256, torch.Generator().manual_seed(0))
        assert (times[given] == 0).all() and not keep[given].any() and not null.any(), f"{direction}: the {given} is always given clean"
        assert (times[learned] > 0).all() and (times[learned] < 1).all() and keep[learned].all(), f"{direction}: the {learned} is learned at drawn times"
        assert not torch.equal(times[learned], base[learned]), "the joint draw pins some samples; a single direction pins none"
    with pytest.raises(ValueError, match="unknown direction 'both'; known: joint, image_to_text, text_to_image"):
        _task(encoder, direction="both")


def test_the_loss_is_each_stream_mean_over_the_samples_that_predict_it(encoder):
    task = _task(encoder)
    per_sample = {"loss_per_sample/image": torch.tensor([1.0, 2.0, 3.0, 4.0]), "loss_per_sample/text": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    keep = {"image": torch.tensor([True, True, False, False]), "text": torch.tensor([False, True, True, True])}
    task.log = lambda *a, **k: None
    assert torch.allclose(task.stream_loss(per_sample, keep), torch.tensor(1.5 + 30.0))


def test_a_training_step_moves_the_network_and_never_the_frozen_codec(encoder):
    task = _task(encoder, null_text_prob=0.2)
    task.log = lambda *a, **k: None
    codec = {k: v.clone() for k, v in task.codec.state_dict().items()}
    optimizer = torch.optim.AdamW([p for g in task.trainable_parameter_groups() for p in g["params"]], lr=1e-2)
    assert not any(p is q for g in task.trainable_parameter_groups() for p in g["params"] for q in task.codec.parameters())
    batch = Batch(images=torch.rand(4, 3, 8, 8) * 2 - 1, prompts=PROMPTS)
    task.train()
    assert not task.codec.training, "the frozen codec stays in eval mode"
    before = task.backbone.final.weight.clone()
    loss = task.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, task.backbone.final.weight)
    assert all(torch.equal(v, task.codec.state_dict()[k]) for k, v in codec.items())
    assert task.null_text.grad is not None, "the learned null text is trained"


def test_cfg_for_free_marginalises_the_other_stream_at_time_one(encoder):
    """The guided prediction is uncond + s (cond - uncond), the unconditional branch being the same network with the
    other stream at time 1 (fed the free noise); in joint sampling each stream is guided against its own marginal."""
    task = _task(encoder)
    calls = []

    class Fake(torch.nn.Module):  # a stream's prediction: the other stream's time plus the mean of its input, per sample
        def forward(self, xs, ts, cond):
            calls.append({n: t.clone() for n, t in ts.items()})
            return {
                "image": xs["image"] * 0 + (ts["text"] + xs["text"].mean(dim=(1, 2))).view(-1, 1, 1, 1),
                "text": xs["text"] * 0 + (ts["image"] + 10 * xs["image"].mean(dim=(1, 2, 3))).view(-1, 1, 1),
            }

    task.backbone = Fake()
    b = 2
    y, free = torch.full((b, 12, 8), 0.5), {"image": torch.full((b, 4, 4, 4), 0.25), "text": torch.full((b, 12, 8), -1.0)}
    x, t = torch.zeros(b, 4, 4, 4), torch.full((b,), 0.4)
    out = denoiser(task, ("image",), {"text": (y, 0.0)}, 3.0, "free", free)({"image": x}, t)
    cond_pred, uncond_pred = 0.0 + 0.5, 1.0 + task.objective.model_input(free["text"], torch.ones(b)).mean()
    assert torch.allclose(out["image"], torch.full_like(x, uncond_pred + 3.0 * (cond_pred - uncond_pred)))
    assert torch.equal(calls[-1]["text"], torch.tensor([0.0, 0.0, 1.0, 1.0])), "one batched forward: conditional, then text at time 1"
    joint = denoiser(task, ("image", "text"), {}, 2.0, "free", free)({"image": x, "text": y}, t)
    assert torch.equal(calls[-1]["text"], torch.tensor([0.4, 0.4, 1.0, 1.0, 0.4, 0.4])) and torch.equal(
        calls[-1]["image"], torch.tensor([0.4, 0.4, 0.4, 0.4, 1.0, 1.0])
    )
    image_marginal = 1.0 + task.objective.model_input(free["text"], torch.ones(b)).mean()
    assert torch.allclose(joint["image"], torch.full_like(x, image_marginal + 2.0 * (0.4 + 0.5 - image_marginal)))
    plain = denoiser(task, ("image",), {"text": (y, 0.0)}, 1.0, "free", free)({"image": x}, t)
    assert len(calls[-1]["text"]) == b and torch.allclose(plain["image"], torch.full_like(x, 0.5)), "scale 1: one forward, no guidance"


def test_every_mode_samples_and_the_learned_null_baseline_guides_text_to_image(encoder):
    task = _task(encoder, null_text_prob=0.1)
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    shapes = {}
    for mode in ("t2i", "i2t", "joint", "image", "text", "image_variation", "text_variation", "gibbs"):
        out = task.sample(mode, prompts=PROMPTS[:3], images=images, num_samples=2, num_steps=2, guidance_scale=2.0)
        shapes[mode] = (None if out.images is None else tuple(out.images.shape), None if out.captions is None else len(out.captions))
        if out.images is not None:
            assert out.images.min() >= -1 and out.images.max() <= 1
    assert shapes == {
        "t2i": ((3, 3, 8, 8), None),
        "i2t": (None, 3),
        "joint": ((2, 3, 8, 8), 2),
        "image": ((2, 3, 8, 8), None),
        "text": (None, 2),
        "image_variation": ((3, 3, 8, 8), 3),
        "text_variation": ((3, 3, 8, 8), 3),
        "gibbs": ((2, 3, 8, 8), 2),
    }
    a = task.sample("t2i", prompts=PROMPTS[:2], num_steps=2, guidance_scale=3.0, guidance="null", seed=1).images
    b = task.sample("t2i", prompts=PROMPTS[:2], num_steps=2, guidance_scale=3.0, guidance="null", seed=1).images
    assert torch.equal(a, b), "a seed fixes every draw"
    task.guidance = "null"  # a learned-null model's default: text-to-image guides against the null text, the rest for free
    assert task.sample("i2t", images=images, num_steps=1, guidance_scale=2.0).captions is not None
    assert torch.equal(task.generate(PROMPTS[:2], num_steps=2, seed=1), task.sample("t2i", prompts=PROMPTS[:2], num_steps=2, seed=1).images)


def test_sampling_mistakes_are_one_clear_line(encoder):
    task = _task(encoder)
    with pytest.raises(ValueError, match="unknown sampling mode 'img2txt'; known: t2i, i2t, joint, image, text, image_variation, text_variation, gibbs"):
        task.sample("img2txt", images=torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"mode 'i2t' samples from images: pass images=\.\.\."):
        task.sample("i2t", prompts=PROMPTS)
    with pytest.raises(ValueError, match="pass num_samples >= 1"):
        task.sample("joint")
    with pytest.raises(ValueError, match=r"images must be a \(B, 3, 8, 8\) tensor in \[-1, 1\]"):
        task.sample("i2t", images=torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"images must be a \(B, 3, 8, 8\) tensor .* got \(2, 1, 8, 8\)"):
        task.sample("image_variation", images=torch.zeros(2, 1, 8, 8))  # a grey image: another mode
    with pytest.raises(ValueError, match="mode 'text_variation' got an empty caption: pass a caption for every sample"):
        task.sample("text_variation", prompts=[PROMPTS[0], " "])
    with pytest.raises(ValueError, match="needs a model trained with a learned null text"):
        task.sample("t2i", prompts=PROMPTS, guidance="null", guidance_scale=2.0)
    with pytest.raises(ValueError, match="tokens with start and end; the text decoder takes 16"):
        task.sample("t2i", prompts=[" and ".join(PROMPTS * 2)], num_steps=1)
    with pytest.raises(ValueError, match="unknown guidance 'learned'"):
        task.sample("t2i", prompts=PROMPTS, guidance="learned")
    with pytest.raises(ValueError, match="guides text-to-image only"):
        _task(encoder, null_text_prob=0.1).sample("i2t", images=torch.zeros(1, 3, 8, 8), guidance="null", guidance_scale=2.0)


@pytest.mark.slow
def test_the_recipe_trains_reloads_and_another_task_is_named(repo, tmp_path, capsys):
    """`recipes/unidiffuser.yaml` (shrunk) fits with a text codec checkpoint of `recipes/joint/text_latent.yaml`; the joint
    checkpoint reloads with its codec inside (the codec file may be gone) and samples; a text-to-image checkpoint
    given to the joint sampler names both tasks; a codec checkpoint of other settings is refused."""
    from kit.cli import main, run_cli

    random_vlm = "--model.init_args.encoder.init_args.model=kit:shapes-vlm-random"
    small = [
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        "--data.init_args.batch_size=4",
        "--data.init_args.image_size=16",
    ]
    codec_dir = tmp_path / "codec"
    run_cli(["fit", "-c", str(repo / "recipes/joint/text_latent.yaml"), *small, random_vlm, f"--trainer.logger.init_args.save_dir={codec_dir}"])
    codec_ckpt = next(codec_dir.glob("**/*.ckpt"))
    shrink = [
        "--model.init_args.backbone.init_args.width=32",
        "--model.init_args.backbone.init_args.depth=3",
        "--model.init_args.backbone.init_args.num_heads=2",
    ]
    joint = [
        "fit",
        "-c",
        str(repo / "recipes/unidiffuser.yaml"),
        *small,
        *shrink,
        random_vlm,
        "--trainer.callbacks=[]",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    capsys.readouterr()
    assert main([*joint, f"--model.init_args.text_codec={codec_ckpt}", "--model.init_args.codec.latent_dim=8"]) == 2
    assert "its codec settings differ from this task's codec (latent_dim: 16 there, 8 here)" in capsys.readouterr().err
    other_encoder = [a if a != random_vlm else "--model.init_args.encoder.init_args.model=kit:shapes-vlm" for a in joint]
    assert main([*other_encoder, f"--model.init_args.text_codec={codec_ckpt}"]) == 2
    assert "was trained on the encoder 'kit:shapes-vlm-random', this task reads 'kit:shapes-vlm'" in capsys.readouterr().err
    assert not (tmp_path / "unidiffuser").exists(), "refused before any run folder"
    run_cli([*joint, f"--model.init_args.text_codec={codec_ckpt}"])
    ckpt = next((tmp_path / "unidiffuser").glob("**/*.ckpt"))
    trained = torch.load(ckpt, weights_only=True)["state_dict"]
    codec_weights = torch.load(codec_ckpt, weights_only=True)["state_dict"]
    assert torch.equal(trained["codec.reducer.proj.weight"], codec_weights["codec.reducer.proj.weight"]), "the codec's weights are the checkpoint's"
    codec_ckpt.unlink()
    model = load_checkpoint(ckpt, require=Capability.IMAGE_TO_TEXT)
    assert model.sample("text", num_samples=1, num_steps=2).captions is not None
    spec = importlib.util.spec_from_file_location("kit_benchmark_joint_probe", repo / "benchmarks" / "joint_probe.py")
    joint_probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(joint_probe)
    assert joint_probe.main(["--ckpt", str(ckpt), "--num-scenes", "3", "--register", "canonical", "--out", str(tmp_path / "probe.json")]) == 0
    probed = json.loads((tmp_path / "probe.json").read_text())["results"][0]
    rows = probed["by_text_time"]
    assert probed["register"] == "canonical"
    assert set(rows) == {str(t) for t in joint_probe.TIMES} and all(r["mse_given"] > 0 and r["mse_marginalised"] > 0 for r in rows.values())
    t2i_dir = tmp_path / "t2i"
    t2i = ["fit", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), *small, random_vlm, "--trainer.callbacks=[]"]
    run_cli([*t2i, f"--trainer.logger.init_args.save_dir={t2i_dir}"])
    with pytest.raises(ValueError, match="holds a text_to_image model \\(TextToImage\\), which cannot do image_to_text; tasks that can: joint_image_text"):
        load_checkpoint(next(t2i_dir.glob("**/*.ckpt")), require=Capability.IMAGE_TO_TEXT)
    out = tmp_path / "joint_eval.json"
    capsys.readouterr()
    assert main(["evaluate", "--task", "joint", "--ckpt", str(ckpt), "--per-category", "1", "--num-scenes", "3", "--steps", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    for key in ("t2i_overall", "i2t_exact", "joint_consistency", "decoder_exact"):
        assert 0.0 <= figures[key] <= 1.0, key
    assert set(figures["cfg"]) == {"free", "none", "scale"} and figures["num_scenes"] == 3 and len(figures["i2t"]["examples"]) == 3
    assert figures["held_out"] is True and set(figures["anchors"]) == {"constant_caption", "shuffled_pairs"}
    assert main(["evaluate", "--task", "joint", "--ckpt", str(next(t2i_dir.glob("**/*.ckpt"))), "--out", str(tmp_path / "x.json")]) == 2
    assert "holds a text_to_image model (TextToImage), whose evaluation is t2i" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    assert main(["evaluate-edit", "--ckpt", str(ckpt), "--per-kind", "1", "--out", str(tmp_path / "edit.json")]) == 2
    assert "holds a joint_image_text model (JointImageText), which reads no source images" in capsys.readouterr().err
    assert (
        main(
            ["sample", "--ckpt", str(ckpt), "--prompt", "a red circle", "--image", str(repo / "docs/lap_default_samples.png"), "--out", str(tmp_path / "s.png")]
        )
        == 2
    )
    assert "takes no reference images" in capsys.readouterr().err


def test_the_image_embedding_is_a_second_image_part_diffused_under_the_image_time(vlm):
    """`image_embed_layer`: the VLM's states at the image tokens join the image modality (UniDiffuser's CLIP image
    embedding): the network takes and predicts them, they share the image's time in training, image-to-text reads
    them from the given images, and text-to-image samples them with the image."""
    task = _task(vlm, image_embed_layer=-2, clean_prob=1.0, noise_prob=0.0)
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    embed = task.image_embeddings(images)
    hidden = vlm(["", "", ""], [[im] for im in images])
    image_tokens = hidden.select((2,)).hidden_states[:, -2]  # TokenKind.IMAGE at the second-deepest tap
    assert embed.shape == image_tokens.shape == (3, task.backbone.embed_tokens, vlm.spec.hidden_size)
    assert torch.allclose(embed, torch.nn.functional.layer_norm(image_tokens, image_tokens.shape[-1:]), atol=1e-5)
    assert task.backbone.streams == ("image", "text", "image_embed")
    times, keep, _ = task.pinned_times(64, torch.Generator().manual_seed(0))
    assert torch.equal(times["image_embed"], times["image"]) and torch.equal(keep["image_embed"], keep["image"])
    task.log = lambda *a, **k: None
    _randomise_outputs(task.backbone)  # the outputs start at zero, and with them every gradient into the inputs
    loss = task.training_step(Batch(images=images, prompts=PROMPTS[:3]), 0)
    loss.backward()
    assert task.backbone.embed_in.weight.grad is not None and task.backbone.embed_in.weight.grad.abs().max() > 0
    assert task.backbone.embed_out.weight.grad.abs().max() > 0, "the embedding is predicted: it is in the loss"
    task.eval()
    a = task.sample("i2t", images=images, num_steps=2, seed=0).text_latents
    flipped = task.sample("i2t", images=images.flip(-1), num_steps=2, seed=0).text_latents
    assert not torch.allclose(a, flipped), "image-to-text reads the given image"
    task.image_streams_of = lambda ims: {"image": task.to_model_space(ims), "image_embed": torch.zeros_like(embed[: len(ims)])}
    blind = task.sample("i2t", images=images, num_steps=2, seed=0).text_latents
    assert not torch.allclose(a, blind), "image-to-text reads the image embedding"
    assert task.sample("t2i", prompts=PROMPTS[:2], num_steps=2).images.shape == (2, 3, 8, 8)


def test_cfg_for_free_marginalises_every_part_of_the_other_modality(vlm):
    """With an image embedding, text-to-image guides both image parts against the text at time 1, and image-to-text
    guides the text against both image parts at time 1 (fed their free noise)."""
    task = _task(vlm, image_embed_layer=-1)
    seen = []

    class Fake(torch.nn.Module):
        def forward(self, xs, ts, cond):
            seen.append({n: t.clone() for n, t in ts.items()})
            return {n: x * 0 + ts["text"].view(-1, *[1] * (x.dim() - 1)) + ts["image"].view(-1, *[1] * (x.dim() - 1)) for n, x in xs.items()}

    task.backbone = Fake()
    b, m, d = 2, 3, vlm.spec.hidden_size
    free = {"image": torch.zeros(b, 4, 4, 4), "text": torch.zeros(b, 12, 8), "image_embed": torch.zeros(b, m, d)}
    t = torch.full((b,), 0.4)
    out = denoiser(task, ("image", "image_embed"), {"text": (torch.zeros(b, 12, 8), 0.0)}, 3.0, "free", free)(
        {"image": torch.zeros(b, 4, 4, 4), "image_embed": torch.zeros(b, m, d)}, t
    )
    assert torch.equal(seen[-1]["text"], torch.tensor([0.0, 0.0, 1.0, 1.0])), "one unconditional branch for the image modality"
    for n in ("image", "image_embed"):  # cond 0.4 + 0, uncond 0.4 + 1: 1.4 + 3 (0.4 - 1.4)
        assert torch.allclose(out[n], torch.full_like(out[n], 1.4 + 3.0 * (0.4 - 1.4)))
    given = {"image": (torch.zeros(b, 4, 4, 4), 0.0), "image_embed": (torch.zeros(b, m, d), 0.0)}
    out = denoiser(task, ("text",), given, 2.0, "free", free)({"text": torch.zeros(b, 12, 8)}, t)
    assert torch.equal(seen[-1]["image"], torch.tensor([0.0, 0.0, 1.0, 1.0])) and torch.equal(seen[-1]["image_embed"], seen[-1]["image"])
    assert torch.allclose(out["text"], torch.full_like(out["text"], 1.4 + 2.0 * (0.4 - 1.4)))


def test_image_embedding_mistakes_are_one_clear_line(vlm, encoder):
    with pytest.raises(ValueError, match=r"image_embed_layer needs an encoder that reads images; FrozenEncoder \(kit:shapes-vlm-random\) reads text only"):
        _task(encoder, image_embed_layer=-1)
    with pytest.raises(ValueError, match=r"image_embed_layer 8 is not one of the encoder's \d+ taps"):
        _task(vlm, image_embed_layer=8)
    net = JointUViT(4, 8, 5, 6, embed_tokens=3, embed_dim=7, patch_size=2, width=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"takes an image_embed stream of 3 tokens x 7 per sample; got none"):
        net({"image": torch.randn(1, 4, 8, 8), "text": torch.randn(1, 5, 6)}, {"image": torch.ones(1), "text": torch.ones(1)})
    with pytest.raises(ValueError, match="needs both tokens and channels"):
        JointUViT(4, 8, 5, 6, embed_tokens=3, patch_size=2, width=32, depth=1, num_heads=2)
