"""Peer check of the joint model's per-modality times and CFG for free against diffusers' UniDiffuser pipeline.

diffusers' `UniDiffuserPipeline._get_noise_pred` is the reference logic: which stream is at time 0, which at the
maximal time, which noise fills a marginalised stream, and how the guided prediction is formed, in the modes
text2img, img2text, joint, img and text. Here it runs with the kit's tiny `JointUViT` behind an adapter in place of
its U-ViT (its image stream is split in two, a VAE part and a CLIP-embedding part: the adapter maps the CLIP part
onto the kit's image embedding, `image_embed_layer`, or gives it zero width without one; its times are integers up
to 1000, the kit's are in [0, 1]) and must give what
`kit.joint.sampling.denoiser` gives when that function is handed the same marginalising noise.

Not mapped: the pipeline's scheduler (DPM-Solver multistep on a discrete VP schedule, against the kit's samplers on
rectified flow: compared elsewhere, `tests/diffusion/test_diffusion.py`), its CLIP and VAE encoders and its GPT-2 decoder
(the kit's text codec plays their part), and its fresh marginalising noise at every step (the kit draws it once
per sample: both are draws of the same distribution).
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch

from kit.joint import JointImageText, JointUViT
from kit.joint.sampling import denoiser

pipeline = pytest.importorskip("diffusers.pipelines.deprecated.unidiffuser.pipeline_unidiffuser")
MAX_T = 1000


def _reference(net: JointUViT, clip_shape: tuple, image_shape: tuple, text_shape: tuple) -> SimpleNamespace:
    """What `_get_noise_pred` reads of the pipeline, around the kit's network: `unet(img_vae, img_clip, text,
    timestep_img, timestep_text, data_type) -> (img_vae, img_clip, text)` with integer times up to `MAX_T` (the CLIP
    part is the kit's image embedding when it has width), and the image's parts (and, jointly, the text) flattened
    side by side as the pipeline keeps them."""
    n, c = torch.Size(image_shape[1:]).numel(), torch.Size(clip_shape[1:]).numel()
    embed = c > 0

    def unet(img_vae, img_clip, text, timestep_img, timestep_text, data_type=None):
        b = img_vae.shape[0]
        ts = {n: torch.as_tensor(t, dtype=torch.float32).expand(b) / MAX_T for n, t in (("image", timestep_img), ("text", timestep_text))}
        out = net({"image": img_vae, "text": text} | ({"image_embed": img_clip} if embed else {}), ts)
        return out["image"], out["image_embed"] if embed else torch.zeros_like(img_clip), out["text"]

    def split(latents, h=None, w=None):  # (B, n + c) -> the VAE part, the CLIP part
        return latents[:, :n].reshape(image_shape), latents[:, n : n + c].reshape(clip_shape)

    return SimpleNamespace(
        unet=unet,
        _split=split,
        _combine=lambda vae, clip: torch.cat([vae.flatten(1), clip.flatten(1)], dim=1),
        _split_joint=lambda latents, h, w: (*split(latents), latents[:, n + c :].reshape(text_shape)),
        _combine_joint=lambda vae, clip, text: torch.cat([vae.flatten(1), clip.flatten(1), text.flatten(1)], dim=1),
    )


@pytest.fixture(scope="module")
def vlm():
    from kit.encoders import FrozenEncoder

    return FrozenEncoder("kit:shapes-vlm", taps="all", max_length=64)


@pytest.mark.parametrize("embed", [False, True], ids=["vae-only", "with-image-embedding"])
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_per_modality_times_and_cfg_for_free_match_diffusers_unidiffuser(encoder, vlm, scale, embed):
    torch.manual_seed(0)
    backbone = partial(JointUViT, patch_size=2, width=32, depth=3, num_heads=2)
    codec = {"num_latents": 6, "latent_dim": 8, "width": 32, "decoder_depth": 1, "max_tokens": 16}
    task = (
        JointImageText(vlm, backbone, codec=codec, image_size=8, image_embed_layer=-2)
        if embed
        else JointImageText(encoder, backbone, codec=codec, image_size=8)
    )
    net = task.backbone
    for layer in (net.final, net.text_out, *((net.embed_out,) if embed else ())):  # zero at init: give the outputs weights
        torch.nn.init.normal_(layer.weight, std=0.5)
    b, step = 2, 400
    x, y = torch.randn(b, 3, 8, 8), torch.randn(b, 6, 8)
    x_clean, y_clean = torch.randn(b, 3, 8, 8), torch.randn(b, 6, 8)
    clip_shape = (b, net.embed_tokens, net.embed_dim) if embed else (b, 1, 0)  # the CLIP image embedding: the kit's, or no width
    e, e_clean = torch.randn(clip_shape), torch.randn(clip_shape)
    t = torch.full((b,), step / MAX_T)
    ref = _reference(net, clip_shape, x.shape, y.shape)
    parts = ("image", "image_embed") if embed else ("image",)
    tol = 1e-4 if embed else 1e-5  # float32 rounding: the embedding's outputs are sums over 32 widths into 128 channels

    def image(vae, clip):  # the image modality's streams, and the pipeline's flat form of them
        return {"image": vae} | ({"image_embed": clip} if embed else {}), ref._combine(vae, clip)

    def flat(out):
        return ref._combine(out["image"], out["image_embed"] if embed else torch.zeros(clip_shape))

    def reference(mode: str, latents, seed: int = 7):
        generator = torch.Generator().manual_seed(seed)
        return pipeline.UniDiffuserPipeline._get_noise_pred(
            ref, mode, latents, step, y_clean, x_clean, e_clean, MAX_T, 1, scale, generator, torch.device("cpu"), 8, 8
        )

    def noise_of(seed: int = 7, *shapes):  # the pipeline's draws, in its order
        generator = torch.Generator().manual_seed(seed)
        return [torch.randn(s, generator=generator) for s in shapes]

    with torch.no_grad():
        xs, x_flat = image(x, e)
        given_image = {n: (v, 0.0) for n, v in image(x_clean, e_clean)[0].items()}
        (text_T,) = noise_of(7, y.shape)
        ours = denoiser(task, parts, {"text": (y_clean, 0.0)}, scale, "free", {"text": text_T})(xs, t)
        assert torch.allclose(flat(ours), reference("text2img", x_flat), atol=tol), "text-to-image"

        image_T, clip_T = noise_of(7, x.shape, clip_shape)
        ours = denoiser(task, ("text",), given_image, scale, "free", image(image_T, clip_T)[0])({"text": y}, t)["text"]
        assert torch.allclose(ours, reference("img2text", y), atol=tol), "image-to-text"

        image_T, clip_T, text_T = noise_of(7, x.shape, clip_shape, y.shape)
        ours = denoiser(task, (*parts, "text"), {}, scale, "free", image(image_T, clip_T)[0] | {"text": text_T})(xs | {"text": y}, t)
        theirs = reference("joint", torch.cat([x_flat, y.flatten(1)], dim=1))
        mine = torch.cat([flat(ours), ours["text"].flatten(1)], dim=1)
        assert torch.allclose(mine, theirs, atol=tol), "joint"

        # the marginals: the pipeline holds the other modality's given value at the maximal time
        ours = denoiser(task, parts, {"text": (y_clean, 1.0)}, 1.0, "free", {})(xs, t)
        assert torch.allclose(flat(ours), reference("img", x_flat), atol=tol), "image marginal"
        given_image = {n: (v, 1.0) for n, (v, _) in given_image.items()}
        ours = denoiser(task, ("text",), given_image, 1.0, "free", {})({"text": y}, t)["text"]
        assert torch.allclose(ours, reference("text", y), atol=tol), "text marginal"
