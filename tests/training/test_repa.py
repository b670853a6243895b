"""Representation alignment (REPA): the teacher reads images as its processor does, backbones record the
block asked for, and the module adds the loss, trains the projector and keeps the teacher out of checkpoints."""

from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from kit.backbones import BACKBONES, SingleStreamDiT
from kit.fusion import LAPHead
from kit.tasks import TextToImage
from kit.training.repa import RepresentationAlignment, VisionTeacher
from kit.types import Batch, Conditioning
from kit.world.render import render
from kit.world.scene import Scene, SceneObject, sample_scene


@pytest.fixture(scope="module")
def teacher():
    return VisionTeacher("kit:shapes-vlm")


def _images(scenes, size: int) -> torch.Tensor:
    return torch.stack([torch.from_numpy(render(s, size)).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])


def test_teacher_reads_images_as_its_processor_does(teacher):
    from kit.encoders.frozen import load_processor, resolve_model_path

    _, processor = load_processor(resolve_model_path("kit:shapes-vlm"), None, False, {})
    rng = np.random.default_rng(0)
    renders = [render(sample_scene(rng), teacher.image_size) for _ in range(3)]
    expected = processor.image_processor(images=[Image.fromarray(r) for r in renders], return_tensors="pt")["pixel_values"]
    images = torch.stack([torch.from_numpy(r).permute(2, 0, 1).float() / 127.5 - 1 for r in renders])
    assert (teacher.image_size, teacher.grid) == (72, 3), "the shapes VLM's pixel budget: 72 px, a 3x3 merged grid"
    torch.testing.assert_close(teacher.patches(images), expected, atol=1e-5, rtol=0)
    assert teacher(images).shape == (3, 3, 3, teacher.width)
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("cell", [(0, 2), (2, 0), (1, 1)])
def test_teacher_features_are_in_reading_order(teacher, cell):
    """An object in one cell changes that cell's feature most: the (row, col) of the teacher's grid is the
    backbone's token grid, so the tokens are aligned with the features of their own cell."""
    obj = SceneObject("circle", "red", "large", *cell)
    empty, one = teacher(_images([Scene(()), Scene((obj,))], 48))  # 48-px renders, as the DiT trains on
    change = (one - empty).norm(dim=-1)  # (3, 3)
    assert tuple(int(i) for i in np.unravel_index(int(change.argmax()), (3, 3))) == cell, change


def test_teacher_refuses_a_model_without_a_vision_tower(tiny_family):
    with pytest.raises(ValueError, match="Qwen2-VL-family vision tower"):
        VisionTeacher(str(tiny_family("qwen2")))


@pytest.mark.parametrize("family", ["dit", "mmdit", "dit_xattn", "uvit"])
def test_backbones_record_the_block_asked_for(family):
    """Only the blocks up to the recorded one receive gradient from a loss on the recorded tokens."""
    kwargs = dict(patch_size=4, width=16, depth=3 if family != "uvit" else 5, num_heads=2)
    backbone = BACKBONES.get(family)(3, 8, **kwargs)
    cond = Conditioning(tokens=torch.randn(2, 5, 16), mask=torch.ones(2, 5, dtype=torch.bool), pooled=torch.randn(2, 16))
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    blocks = backbone.in_blocks if family == "uvit" else backbone.blocks
    with backbone.capturing(1) as capture:
        backbone(x, t, cond)
    backbone(x, t, cond)  # outside the context: nothing more is recorded
    tokens = capture.tokens
    assert tokens.shape == (2, 4, backbone.token_width), "(B, T, W): the 2x2 grid of image tokens"
    tokens.square().sum().backward()
    touched = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in b.parameters()) for b in blocks]
    assert touched[0] and not any(touched[1:]), f"only block 1 feeds the recorded tokens, got {touched}"
    with pytest.raises(ValueError, match="blocks 1.."):
        with backbone.capturing(len(blocks) + 1):
            pass


@pytest.fixture
def module(encoder):
    backbone = partial(SingleStreamDiT, patch_size=8, width=32, depth=2, num_heads=2)
    repa = partial(RepresentationAlignment, teacher="kit:shapes-vlm", block=1, weight=0.5, projector_width=32)
    return TextToImage(encoder, fusion=partial(LAPHead, layer_depth=1, refiner_depth=1), backbone=backbone, repa=repa, image_size=16)


def test_module_adds_the_alignment_loss_and_trains_the_projector(module, monkeypatch):
    monkeypatch.setattr(TextToImage, "global_step", property(lambda self: 0))
    logged = {}
    monkeypatch.setattr(TextToImage, "log", lambda self, name, value, **k: logged.__setitem__(name, value))
    batch = Batch(images=torch.rand(4, 3, 16, 16) * 2 - 1, prompts=["a red circle"] * 4)
    with_repa = module.training_step(batch, 0)
    repa, module.repa = module.repa, None
    plain = module.training_step(batch, 0)  # the same step's random stream without the alignment term
    module.repa = repa
    similarity = logged["train/repa_similarity"]
    assert abs(float(similarity)) > 1e-4
    torch.testing.assert_close(with_repa, plain - 0.5 * similarity), "loss = diffusion loss - weight x similarity"
    with_repa.backward()
    assert all(p.grad is not None for p in module.repa.projector.parameters()), "the projector trains"
    groups = module.trainable_parameter_groups()
    optimised = {id(p) for g in groups for p in g["params"]}
    assert {id(p) for p in module.repa.projector.parameters()} <= optimised
    assert not optimised & {id(p) for p in module.repa.teacher.parameters()}, "the teacher is frozen"
    keys = module.state_dict().keys()
    assert any(k.startswith("repa.projector.") for k in keys) and not any(k.startswith("repa.teacher.") for k in keys)


def test_alignment_is_the_cosine_with_the_teacher_on_the_token_grid(module, monkeypatch):
    """Similarity 1 for tokens that project onto the teacher's features of the same images, -1 for their
    opposite, and less than 1 for the features of other images; a 2x2 token grid reads the 3x3 teacher
    grid resampled (its corner tokens nearest the corner cells)."""
    repa = module.repa
    rng = np.random.default_rng(1)
    corner_scenes = [Scene((SceneObject(shape, "red", "large", 0, 0),)) for shape in ("circle", "square")]  # objects top left only
    images, others = _images(corner_scenes, 16), _images([sample_scene(rng) for _ in range(2)], 16)
    target = repa.targets(images, 2, 2)  # (B, 4, D)
    assert target.shape == (2, 4, repa.teacher.width)
    grid = repa.teacher(images)  # (B, 3, 3, D)
    corner = torch.nn.functional.cosine_similarity(target[:, 0], grid[:, 0, 0], dim=-1)
    far = torch.nn.functional.cosine_similarity(target[:, 0], grid[:, 2, 2], dim=-1)
    assert (corner > far).all(), "the top-left token is aligned with the top-left cell"
    torch.testing.assert_close(repa.targets(images, 3, 3), grid.flatten(1, 2)), "same grid: no resampling"
    monkeypatch.setattr(repa, "projector", torch.nn.Identity())
    assert float(repa(target, images)) == pytest.approx(1.0, abs=1e-5)
    assert float(repa(-target, images)) == pytest.approx(-1.0, abs=1e-5)
    assert float(repa(target, others)) < 0.999
    with pytest.raises(ValueError, match="square token grid"):
        repa(target[:, :3], images)


def test_a_block_the_backbone_lacks_is_refused_at_build(encoder):
    backbone = partial(SingleStreamDiT, patch_size=8, width=32, depth=2, num_heads=2)
    repa = partial(RepresentationAlignment, teacher="kit:shapes-vlm", block=3)
    with pytest.raises(ValueError, match="repa block 3.*blocks 1..2"):
        TextToImage(encoder, fusion=LAPHead, backbone=backbone, repa=repa, image_size=16)
    with pytest.raises(ValueError, match="repa weight must be > 0"):
        RepresentationAlignment(32, weight=0.0)
    with pytest.raises(ValueError, match="no image processor"):
        VisionTeacher("kit:shapes-vlm-random")
