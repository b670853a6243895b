"""The masked (discrete) text stream of the joint model: corruption, the cross-entropy at masked positions, the
unmasking sampler, guidance on log-probabilities, every mode, and learning to caption a few images."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.nn import functional as F

from kit.joint import JointImageText, JointUViT
from kit.joint.masked import MaskedTextCodec, Unmasker
from kit.joint.sampling import denoiser
from kit.types import Batch

PROMPTS = ["a red circle", "two blue squares", "a green triangle on the left", "a diamond"]


def _task(encoder, **kwargs) -> JointImageText:
    backbone = partial(JointUViT, patch_size=2, width=32, depth=3, num_heads=2)
    return JointImageText(encoder, backbone, text_stream="masked", codec={"max_tokens": 16}, image_size=8, **kwargs)


def test_captions_become_ids_without_the_start_token_and_decode_back(encoder):
    codec = MaskedTextCodec(encoder, max_tokens=16)
    ids = codec.ids(PROMPTS)
    assert ids.shape == (4, 15) and ids.dtype == torch.long and codec.num_latents == 15
    assert codec.decode(ids) == PROMPTS
    assert codec.decode(ids.masked_fill(torch.arange(15) >= 3, codec.mask_id))[0] == codec.decode(ids[:1, :3])[0], "masks read as padding"
    with pytest.raises(ValueError, match="the text decoder takes 16"):
        codec.ids([" and ".join(PROMPTS * 2)])


def test_corruption_masks_each_position_with_probability_t_and_the_loss_reads_only_masked_ones(encoder):
    codec = MaskedTextCodec(encoder, max_tokens=16)
    ids = codec.ids(PROMPTS * 64)  # (256, 15)
    t = torch.linspace(0, 1, 256)
    corrupted, masked = codec.corrupt(ids, t, torch.Generator().manual_seed(0))
    assert not masked[0].any() and masked[-1].all(), "time 0 is the caption, time 1 all masks"
    assert torch.equal(corrupted == codec.mask_id, masked) and torch.equal(corrupted[~masked], ids[~masked])
    assert abs(float(masked.float().mean()) - 0.5) < 0.03, "on average the share masked is the time"
    logits = torch.randn(256, 15, codec.vocab_size)
    per_sample = codec.loss(logits, ids, masked)
    ce = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    assert per_sample[0] == 0, "nothing masked, nothing to predict"
    pad = ids[-1] == codec.captions.pad
    weight = torch.where(pad, 1.0 / pad.sum(), 1.0)
    assert pad.sum() > 1 and torch.allclose(per_sample[-1], (ce[-1] * weight).sum() / weight.sum()), "the padding weighs one token in all"
    logits[~masked] = 100.0  # changing the unmasked positions' predictions changes nothing
    assert torch.allclose(codec.loss(logits, ids, masked), per_sample)


def test_the_unmasker_reveals_evenly_over_a_shifted_grid_and_ends_on_the_prediction(encoder):
    codec = MaskedTextCodec(encoder, max_tokens=16)
    target = codec.ids(PROMPTS)  # (4, 15)
    shift = 3.0
    grid = shift * torch.linspace(1, 0, 6) / (1 + (shift - 1) * torch.linspace(1, 0, 6))  # the samplers' shifted grid
    unmasker = Unmasker(codec, 4, torch.device("cpu"), shift=shift, temperature=1.0, generator=torch.Generator().manual_seed(0))
    shares = []
    for t in grid[:-1]:
        ids, share = unmasker.at(t.expand(4))
        shares.append(float(share[0]))
        assert torch.equal(ids[ids != codec.mask_id], target[ids != codec.mask_id]), "only predicted tokens are revealed"
        unmasker.update(F.one_hot(target, codec.vocab_size).float().log().clamp(min=-1e4))  # a certain, right prediction
    assert shares == pytest.approx([1.0, 12 / 15, 9 / 15, 6 / 15, 3 / 15]), "the shift undone: 3 of 15 tokens a step"
    assert torch.equal(unmasker.finish(), target)


def test_the_unmasker_reveals_the_most_confident_positions_first(encoder):
    codec = MaskedTextCodec(encoder, max_tokens=4)  # 3 positions
    unmasker = Unmasker(codec, 1, torch.device("cpu"), temperature=0)
    unmasker.at(torch.ones(1))
    log_probs = torch.full((1, 3, codec.vocab_size), -10.0)
    log_probs[0, 0, 5], log_probs[0, 1, 6], log_probs[0, 2, 7] = -2.0, -0.1, -1.0  # position 1 surest, then 2
    unmasker.update(log_probs)
    ids, _ = unmasker.at(torch.tensor([2 / 3]))
    assert ids[0].tolist() == [codec.mask_id, 6, codec.mask_id]
    ids, _ = unmasker.at(torch.tensor([1 / 3]))
    assert ids[0].tolist() == [codec.mask_id, 6, 7]


def test_the_discrete_uvit_reads_token_ids_and_predicts_logits():
    net = JointUViT(4, 8, 5, 30, text_vocab=30, patch_size=2, width=32, depth=3, num_heads=2)
    torch.nn.init.normal_(net.text_out.weight, std=0.5)
    torch.nn.init.normal_(net.final.weight, std=0.5)
    xs = {"image": torch.randn(2, 4, 8, 8), "text": torch.randint(0, 32, (2, 5))}
    ts = {"image": torch.tensor([0.3, 0.7]), "text": torch.tensor([0.9, 0.1])}
    out = net(xs, ts)
    assert out["text"].shape == (2, 5, 30) and out["image"].shape == (2, 4, 8, 8)
    other = net({"image": xs["image"], "text": (xs["text"] + 1) % 32}, ts)
    assert (other["image"] - out["image"]).abs().max() > 1e-4, "the image prediction reads the tokens"
    with pytest.raises(ValueError, match="this network takes 5 token ids"):
        net({"image": xs["image"], "text": torch.randn(2, 5, 30)}, ts)
    with pytest.raises(ValueError, match="text_dim must be text_vocab"):
        JointUViT(4, 8, 5, 16, text_vocab=30, patch_size=2, width=32, depth=1, num_heads=2)


def test_the_masked_stream_is_trained_by_cross_entropy_and_times_are_uniform(encoder):
    task = _task(encoder, clean_prob=0.0, noise_prob=0.0)
    times, keep, _ = task.pinned_times(4096, torch.Generator().manual_seed(0))
    assert abs(float((times["text"] < 0.3).float().mean()) - 0.3) < 0.03, "the mask ratio is uniform"
    logged = {}
    task.log = lambda name, value, **k: logged.__setitem__(name, float(value.detach()) if torch.is_tensor(value) else value)
    batch = Batch(images=torch.rand(4, 3, 8, 8) * 2 - 1, prompts=PROMPTS)
    before = task.backbone.text_out.weight.clone()
    loss = task.training_step(batch, 0)
    loss.backward()
    torch.optim.SGD(task.backbone.parameters(), lr=0.1).step()
    assert not torch.equal(before, task.backbone.text_out.weight), "the text head is trained"
    assert logged["train/loss/text"] == pytest.approx(float(torch.log(torch.tensor(float(task.codec.vocab_size)))), rel=1e-4), (
        "zero-initialised logits: the cross-entropy of a uniform guess"
    )


def test_discrete_guidance_combines_log_probabilities_and_marginalises_the_image(encoder):
    task = _task(encoder)
    calls = []
    v = task.codec.vocab_size

    class Fake(torch.nn.Module):  # text logits favour token (image time > 0.5) at every position
        def forward(self, xs, ts, cond):
            calls.append({n: t.clone() for n, t in ts.items()})
            logits = torch.zeros(xs["text"].shape[0], xs["text"].shape[1], v)
            logits[..., 5] = 2.0 * (ts["image"] < 0.5).float()[:, None]
            return {"image": xs["image"] * 0, "text": logits}

    task.backbone = Fake()
    unmasker = Unmasker(task.codec, 2, torch.device("cpu"), temperature=0)
    x = torch.zeros(2, 4, 4, 4)
    fn = denoiser(task, ("text",), {"image": (x, 0.0)}, 3.0, "free", {"image": torch.randn(2, 4, 4, 4), "text": task.codec.noise(2, "cpu")}, unmasker)
    assert fn({}, torch.ones(2)) == {}, "the discrete stream's prediction goes to the unmasker"
    assert torch.equal(calls[-1]["image"], torch.tensor([0.0, 0.0, 1.0, 1.0])), "the unconditional branch: the image at time 1"
    assert torch.equal(calls[-1]["text"], torch.ones(4)), "the text's time is its share masked"
    cond, uncond = torch.zeros(v), torch.zeros(v)
    cond[5] = 2.0
    expected = uncond.log_softmax(-1) + 3.0 * (cond.log_softmax(-1) - uncond.log_softmax(-1))
    assert unmasker.drawn.eq(5).all(), "the guided prediction's most probable token"
    assert torch.allclose(unmasker.confidence[0, 0], expected.log_softmax(-1)[5])


def test_every_mode_samples_with_a_masked_text_stream_and_a_seed_fixes_it(encoder):
    task = _task(encoder, null_text_prob=0.1)
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    for mode in ("t2i", "i2t", "joint", "image", "text", "image_variation", "text_variation", "gibbs"):
        a = task.sample(mode, prompts=PROMPTS[:3], images=images, num_samples=2, num_steps=3, guidance_scale=2.0, seed=1)
        b = task.sample(mode, prompts=PROMPTS[:3], images=images, num_samples=2, num_steps=3, guidance_scale=2.0, seed=1)
        if a.text_latents is not None:
            assert a.text_latents.dtype == torch.long and not (a.text_latents == task.codec.mask_id).any(), mode
            assert torch.equal(a.text_latents, b.text_latents) and a.captions == b.captions, mode
        if a.images is not None:
            assert torch.equal(a.images, b.images), mode
    null = task.sample("t2i", prompts=PROMPTS[:2], num_steps=2, guidance_scale=3.0, guidance="null").images
    assert null.shape == (2, 3, 8, 8)


def test_masked_stream_mistakes_are_one_clear_line(encoder, tmp_path):
    with pytest.raises(ValueError, match="the masked text stream diffuses the caption's tokens and reads no text codec"):
        _task(encoder, text_codec=str(tmp_path / "codec.ckpt"))
    backbone = partial(JointUViT, patch_size=2, width=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"codec settings \['latent_dim', 'num_latents'\] are the latent text stream's"):
        JointImageText(encoder, backbone, text_stream="masked", codec={"num_latents": 12, "latent_dim": 8}, image_size=8)
    with pytest.raises(ValueError, match="unknown text stream 'tokens'; known: latent, masked"):
        JointImageText(encoder, backbone, text_stream="tokens", image_size=8)
    with pytest.raises(ValueError, match="text_temperature must be >= 0"):
        _task(encoder, text_temperature=-1.0)


@pytest.mark.slow
def test_the_masked_stream_learns_to_caption_a_few_images(encoder):
    """Image-to-text alone on four fixed image-caption pairs: the model must read the image to tell them apart."""
    torch.manual_seed(0)
    task = _task(encoder, direction="image_to_text", text_temperature=0.0)
    task.log = lambda *a, **k: None
    task.step_generator = lambda step: torch.Generator().manual_seed(step)  # no trainer counts the steps here
    images = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1]])[:, :, None, None].expand(4, 3, 8, 8).contiguous()
    batch = Batch(images=images.repeat(4, 1, 1, 1), prompts=PROMPTS * 4)
    optimizer = torch.optim.AdamW(task.backbone.parameters(), lr=3e-3)
    task.train()
    for step in range(300):
        optimizer.zero_grad()
        task.training_step(batch, step).backward()
        optimizer.step()
    task.eval()
    assert task.sample("i2t", images=images, num_steps=15, guidance_scale=1.0, seed=0).captions == PROMPTS


def test_the_text_stream_has_its_own_guidance_scale(encoder):
    task = _task(encoder, guidance_scale=3.0, text_guidance_scale=1.0)
    sizes = []
    forward = task.backbone.forward
    task.backbone.forward = lambda xs, ts, cond=None: (sizes.append(len(ts["text"])), forward(xs, ts, cond))[1]
    task.sample("i2t", images=torch.zeros(2, 3, 8, 8), num_steps=2)
    assert set(sizes) == {2}, "image-to-text at text scale 1: no unconditional branch"
    sizes.clear()
    task.sample("t2i", prompts=PROMPTS[:2], num_steps=2)
    assert set(sizes) == {4}, "text-to-image at scale 3: the conditional and the unconditional branch"
    sizes.clear()
    task.sample("joint", num_samples=2, num_steps=2)
    assert set(sizes) == {6}, "joint pairs: both marginals are computed when one modality is guided"
    sizes.clear()
    task.sample("i2t", images=torch.zeros(2, 3, 8, 8), num_steps=2, guidance_scale=2.0)
    assert set(sizes) == {4}, "an explicit scale guides both streams"


def test_the_text_is_the_prompt_where_given_and_the_target_where_predicted(encoder):
    task = _task(encoder)
    batch = Batch(images=torch.zeros(2, 3, 8, 8), prompts=["a red circle", "a diamond"], targets=["two blue squares", "a green triangle on the left"])
    text = task.text_of(batch, given=torch.tensor([True, False]))
    assert task.codec.decode(text) == ["a red circle", "a green triangle on the left"]
    assert task.codec.decode(task.text_of(Batch(images=batch.images, prompts=batch.prompts), torch.tensor([False, False]))) == batch.prompts
