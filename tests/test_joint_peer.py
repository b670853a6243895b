"""Peer check of the joint model's per-modality times and CFG for free against diffusers' UniDiffuser pipeline.

diffusers' `UniDiffuserPipeline._get_noise_pred` is the reference logic: which stream is at time 0, which at the
maximal time, which noise fills a marginalised stream, and how the guided prediction is formed, in the modes
text2img, img2text, joint, img and text. Here it runs with the kit's tiny `JointUViT` behind an adapter in place of
its U-ViT (its image stream is split in two, a VAE part and a CLIP-embedding part; the adapter gives the CLIP part
zero width; its times are integers up to 1000, the kit's are in [0, 1]) and must give what
`kit.tasks.joint_sampling.denoiser` gives when that function is handed the same marginalising noise.

Not mapped: the pipeline's scheduler (DPM-Solver multistep on a discrete VP schedule, against the kit's samplers on
rectified flow: compared elsewhere, `tests/test_diffusion.py`), its CLIP and VAE encoders and its GPT-2 decoder
(the kit's text codec plays their part), and its fresh marginalising noise at every step (the kit draws it once
per sample: both are draws of the same distribution).
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch

from kit.backbones import JointUViT
from kit.tasks import JointImageText
from kit.tasks.joint_sampling import denoiser

pipeline = pytest.importorskip("diffusers.pipelines.deprecated.unidiffuser.pipeline_unidiffuser")
MAX_T = 1000


def _reference(net: JointUViT, clip: torch.Tensor, image_shape: tuple, text_shape: tuple) -> SimpleNamespace:
    """What `_get_noise_pred` reads of the pipeline, around the kit's network: `unet(img_vae, img_clip, text,
    timestep_img, timestep_text, data_type) -> (img_vae, img_clip, text)` with integer times up to `MAX_T`, and
    joint latents flattened side by side as the pipeline keeps them."""
    n = torch.Size(image_shape[1:]).numel()

    def unet(img_vae, img_clip, text, timestep_img, timestep_text, data_type=None):
        b = img_vae.shape[0]
        ts = {n: torch.as_tensor(t, dtype=torch.float32).expand(b) / MAX_T for n, t in (("image", timestep_img), ("text", timestep_text))}
        out = net({"image": img_vae, "text": text}, ts)
        return out["image"], torch.zeros_like(img_clip), out["text"]

    return SimpleNamespace(
        unet=unet,
        _split=lambda latents, h, w: (latents, clip),
        _combine=lambda vae, clip_: vae,
        _split_joint=lambda latents, h, w: (latents[:, :n].reshape(image_shape), clip, latents[:, n:].reshape(text_shape)),
        _combine_joint=lambda vae, clip_, text: torch.cat([vae.flatten(1), text.flatten(1)], dim=1),
    )


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_per_modality_times_and_cfg_for_free_match_diffusers_unidiffuser(encoder, scale):
    torch.manual_seed(0)
    backbone = partial(JointUViT, patch_size=2, width=32, depth=3, num_heads=2)
    task = JointImageText(encoder, backbone, codec={"num_latents": 6, "latent_dim": 8, "width": 32, "decoder_depth": 1, "max_tokens": 16}, image_size=8)
    net = task.backbone
    for layer in (net.final, net.text_out):  # zero at init: give the outputs weights so predictions differ
        torch.nn.init.normal_(layer.weight, std=0.5)
    b, step = 2, 400
    x, y = torch.randn(b, 3, 8, 8), torch.randn(b, 6, 8)
    x_clean, y_clean = torch.randn(b, 3, 8, 8), torch.randn(b, 6, 8)
    clip = torch.zeros(b, 1, 0)  # the pipeline's CLIP image embedding: no width here
    t = torch.full((b,), step / MAX_T)
    ref = _reference(net, clip, x.shape, y.shape)

    def reference(mode: str, latents, seed: int = 7):
        generator = torch.Generator().manual_seed(seed)
        return pipeline.UniDiffuserPipeline._get_noise_pred(
            ref, mode, latents, step, y_clean, x_clean, clip, MAX_T, 1, scale, generator, torch.device("cpu"), 8, 8
        )

    def noise_of(seed: int = 7, *shapes):  # the pipeline's draws, in its order
        generator = torch.Generator().manual_seed(seed)
        return [torch.randn(s, generator=generator) for s in shapes]

    with torch.no_grad():
        (text_T,) = noise_of(7, y.shape)
        ours = denoiser(task, ("image",), {"text": (y_clean, 0.0)}, scale, "free", {"text": text_T})({"image": x}, t)["image"]
        assert torch.allclose(ours, reference("text2img", x), atol=1e-5), "text-to-image"

        image_T, _ = noise_of(7, x.shape, clip.shape)
        ours = denoiser(task, ("text",), {"image": (x_clean, 0.0)}, scale, "free", {"image": image_T})({"text": y}, t)["text"]
        assert torch.allclose(ours, reference("img2text", y), atol=1e-5), "image-to-text"

        image_T, _, text_T = noise_of(7, x.shape, clip.shape, y.shape)
        ours = denoiser(task, ("image", "text"), {}, scale, "free", {"image": image_T, "text": text_T})({"image": x, "text": y}, t)
        theirs = reference("joint", torch.cat([x.flatten(1), y.flatten(1)], dim=1))
        assert torch.allclose(torch.cat([ours["image"].flatten(1), ours["text"].flatten(1)], dim=1), theirs, atol=1e-5), "joint"

        # the marginals: the pipeline holds the other stream's given value at the maximal time
        ours = denoiser(task, ("image",), {"text": (y_clean, 1.0)}, 1.0, "free", {})({"image": x}, t)["image"]
        assert torch.allclose(ours, reference("img", x), atol=1e-5), "image marginal"
        ours = denoiser(task, ("text",), {"image": (x_clean, 1.0)}, 1.0, "free", {})({"text": y}, t)["text"]
        assert torch.allclose(ours, reference("text", y), atol=1e-5), "text marginal"
