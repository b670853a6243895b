"""Representation alignment (REPA, Yu et al. 2024): an auxiliary loss that pulls a backbone block's
image tokens towards a frozen vision encoder's features of the clean image.

The denoiser sees a noised image; a small projector maps the image tokens after one of its blocks
to the teacher's feature width, and the loss is their negative cosine similarity with the
teacher's features of the clean image, token by token. Near pure noise the tokens can only match
by reading the prompt, so the loss also supervises, cell by cell, what the prompt puts where.

The teacher is the vision tower of a Qwen2-VL-family checkpoint: by default the shapes VLM the
kit conditions on, whose merged vision tokens fall one per cell of the world's 3x3 grid (the
48-px DiT at patch 16 has the same grid). When the grids differ the teacher's features are
resampled bilinearly onto the backbone's token grid. The teacher is frozen and never checkpointed
(like every `FrozenModel`); the projector trains and is saved with the model, though sampling
never uses it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from kit.encoders.base import FrozenModel


class VisionTeacher(FrozenModel):
    """The frozen vision tower of a Qwen2-VL-family model: images -> merged vision tokens on their grid.

    Args:
        model: the checkpoint (`kit:<asset>`, a local folder or a hub name already in the cache).
        image_size: side the images are resized to before the tower reads them; None takes the side
            of the checkpoint's own pixel budget (72 px for the shapes VLM: a 3x3 merged grid).
    """

    def __init__(self, model: str = "kit:shapes-vlm", image_size: int | None = None) -> None:
        super().__init__()
        from kit.encoders.frozen import load_model, load_processor, resolve_model_path

        path = resolve_model_path(model)
        _, processor = load_processor(path, None, False, {})
        vlm = load_model(path, torch.float32, None, False)
        visual = getattr(getattr(vlm, "model", vlm), "visual", None)
        config = getattr(vlm.config, "vision_config", None)
        if visual is None or not str(getattr(config, "model_type", "")).startswith("qwen2"):
            raise ValueError(f"representation alignment reads a Qwen2-VL-family vision tower; {model!r} has none (model type {vlm.config.model_type!r})")
        if processor is None:
            raise ValueError(f"the teacher {model!r} ships no image processor (processor_config.json): its patching and normalisation are unknown")
        ip = processor.image_processor
        self.name = model
        self.patch_size, self.merge_size, self.temporal = int(ip.patch_size), int(ip.merge_size), int(ip.temporal_patch_size)
        unit = self.patch_size * self.merge_size
        if image_size is None:
            budget = ip.size.get("shortest_edge") or ip.min_pixels
            image_size = max(unit, round(math.isqrt(int(budget)) / unit) * unit)
        if image_size % unit:
            raise ValueError(f"teacher image_size {image_size} is not a multiple of patch x merge = {unit}")
        self.image_size = image_size
        self.grid = image_size // unit
        self.register_buffer("mean", torch.tensor(ip.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(ip.image_std).view(1, 3, 1, 1), persistent=False)
        self.model = visual
        self.width = [m for m in visual.merger.modules() if isinstance(m, nn.Linear)][-1].out_features  # the merged tokens' width
        self.freeze()

    def patches(self, images: Tensor) -> Tensor:
        """images `(B, 3, H, W)` in [-1, 1] -> the tower's flattened patches `(B * g*g*m*m, 3 * temporal * p * p)`,
        in the processor's order (merge windows in reading order, patches within each)."""
        x = F.interpolate((images.float() + 1) / 2, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False, antialias=True)
        x = (x.clamp(0, 1) - self.mean) / self.std  # (B, 3, S, S)
        x = x[:, None].expand(-1, self.temporal, -1, -1, -1)  # (B, temporal, 3, S, S): a still image repeats in time
        return rearrange(
            x,
            "b t c (gh mh p) (gw mw q) -> (b gh gw mh mw) (c t p q)",
            mh=self.merge_size,
            mw=self.merge_size,
            p=self.patch_size,
            q=self.patch_size,
        )

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """images `(B, 3, H, W)` in [-1, 1] -> merged vision tokens `(B, g, g, D)` on the teacher's grid."""
        b = images.shape[0]
        grid_thw = torch.tensor([[1, self.grid * self.merge_size, self.grid * self.merge_size]] * b, device=images.device)
        out = self.model(self.patches(images).to(self.mean.device), grid_thw=grid_thw)
        merged = out.pooler_output if hasattr(out, "pooler_output") else out  # (B * g * g, D)
        return rearrange(merged, "(b h w) d -> b h w d", b=b, h=self.grid, w=self.grid)


class RepresentationAlignment(nn.Module):
    """REPA: a projector from a backbone block's image tokens to a frozen teacher's features, and its loss.

    Args:
        width: the backbone's token width (given by `TextToImage` from the backbone).
        teacher: the vision teacher's checkpoint (a Qwen2-VL-family model; the shapes VLM by default).
        block: align the image tokens after this backbone block (1-based; REPA aligns an early one).
        weight: the loss's weight beside the diffusion loss.
        projector_width: hidden width of the 3-layer MLP projector.
        teacher_image_size: side the teacher reads the images at (None: its own pixel budget).
    """

    def __init__(
        self,
        width: int,
        *,
        teacher: str = "kit:shapes-vlm",
        block: int = 2,
        weight: float = 0.5,
        projector_width: int = 512,
        teacher_image_size: int | None = None,
    ) -> None:
        super().__init__()
        if block < 1:
            raise ValueError(f"repa block must be >= 1 (blocks count from 1), got {block}")
        if weight <= 0:
            raise ValueError(f"repa weight must be > 0 (leave repa out to turn it off), got {weight}")
        self.block = block
        self.weight = weight
        self.teacher = VisionTeacher(teacher, teacher_image_size)
        self.projector = nn.Sequential(
            nn.Linear(width, projector_width),
            nn.SiLU(),
            nn.Linear(projector_width, projector_width),
            nn.SiLU(),
            nn.Linear(projector_width, self.teacher.width),
        )
        for layer in self.projector:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def targets(self, images: Tensor, rows: int, cols: int) -> Tensor:
        """images `(B, 3, H, W)` -> the teacher's features on a `rows x cols` token grid `(B, rows*cols, D)`."""
        feats = self.teacher(images)  # (B, g, g, D)
        if feats.shape[1:3] != (rows, cols):
            feats = F.interpolate(rearrange(feats, "b h w d -> b d h w"), size=(rows, cols), mode="bilinear", align_corners=False)
            feats = rearrange(feats, "b d h w -> b h w d")
        return rearrange(feats, "b h w d -> b (h w) d")

    def forward(self, tokens: Tensor, images: Tensor) -> Tensor:
        """tokens `(B, T, W)` (a square grid in reading order), clean images `(B, 3, H, W)` -> the mean
        cosine similarity `()` between projected tokens and the teacher's features (the loss is its negative)."""
        side = math.isqrt(tokens.shape[1])
        if side * side != tokens.shape[1]:
            raise ValueError(f"representation alignment needs a square token grid, got {tokens.shape[1]} tokens")
        target = self.targets(images, side, side).to(tokens.dtype)  # (B, T, D)
        projected = self.projector(tokens)  # (B, T, D)
        return F.cosine_similarity(projected, target, dim=-1).mean()
