"""`ImageEditing`: text-to-image whose prompts are instructions about reference images (UniFusion's editing).

The source image(s) reach the model only through the frozen VLM: its chat template places them
before the instruction and the fusion head reads their tokens with the instruction's, exactly as
`TextToImage` conditions on `references`. What this task adds:

- `source_pixels`, the usual design as a baseline: the first reference's pixels (latents with a VAE)
  are also concatenated to the backbone's input channels (InstructPix2Pix-style channel
  concatenation), so the paper's claim that the VLM path alone preserves the source can be tested
  against it on the same data;
- fine-tuning from a text-to-image checkpoint (`init_from`: its weights, buffers and EMA averages; a
  fresh optimizer): with `source_pixels` the patch embedding's new input channels start at zero, so
  the fine-tuning starts from the text-to-image model exactly.
"""

from __future__ import annotations

import re
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kit.backbones.base import Backbone
from kit.encoders import PromptEncoder
from kit.encoders.chat import to_pil
from kit.images import image_to_tensor
from kit.tasks.base import TASKS
from kit.tasks.text_to_image import BackboneFactory, FusionFactory, TextToImage
from kit.types import Conditioning, References

ORDINAL_IMAGES = re.compile(r"\b(first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th) (image|picture|reference)\b", re.IGNORECASE)


def check_references(instruction: str, num_images: int) -> None:
    """Refuse more reference images than `instruction` names: one unnamed image, or as many as it
    names by ordinal ('the second image'); the error gives both counts."""
    named = len({m.group(1).lower() for m in ORDINAL_IMAGES.finditer(instruction)})
    if num_images > max(1, named):
        raise ValueError(
            f"{num_images} reference images but the instruction names {named or 1} ({instruction!r}); name each image ('... from the second image') or pass fewer"
        )


def doubled_input(factory: BackboneFactory, in_channels: int, image_size: int) -> Backbone:
    """The backbone `factory` builds for samples of `in_channels` with their source's `in_channels` beside them."""
    return factory(2 * in_channels, image_size, out_channels=in_channels)


class SourceConcat:
    """A denoiser that calls `backbone` on its input with `source` concatenated along the channels.

    Args:
        backbone: a backbone built for twice the sample's channels.
        source: `(B, C, H, W)` the source of each sample (zeros for a sample without one).
    """

    def __init__(self, backbone: Backbone, source: Tensor) -> None:
        self.backbone, self.source = backbone, source

    def __call__(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        """x `(B', C, H, W)`, B' = B or 2B (guidance stacks `[cond, null]`), t `(B',)` -> `(B', C, H, W)`."""
        copies, rest = divmod(x.shape[0], self.source.shape[0])
        if rest or copies not in (1, 2):
            raise ValueError(f"a batch of {x.shape[0]} for {self.source.shape[0]} sources: only the batch or guidance's doubled batch")
        source = self.source.to(x.dtype).repeat(copies, 1, 1, 1)  # (B', C, H, W)
        return self.backbone(torch.cat([x, source], dim=1), t, cond)


@TASKS.register("image_editing")
class ImageEditing(TextToImage):
    """Editing and multi-reference generation: instruction + reference images through the frozen VLM -> image.

    Args:
        encoder: the frozen VLM that reads the instruction and the reference images (`TextToImage`).
        fusion: the fusion head (`TextToImage`).
        backbone: the denoiser (`TextToImage`); with `source_pixels`, built for twice the sample's channels.
        source_pixels: also feed the first reference's pixels to the backbone, concatenated to its
            input (the baseline against UniFusion's VLM-only design; a sample without references gets zeros).
        kwargs: `TextToImage`'s settings (encoder, fusion head, backbone, objective, ...; `init_from` starts
            from a text-to-image checkpoint).
    """

    model_arguments = (*TextToImage.model_arguments, "source_pixels")

    @classmethod
    def tiny_recipe(cls) -> list[str]:
        return ["-c", "recipes/lap.yaml", "-c", "recipes/edit.yaml", "-c", "recipes/smoke.yaml"]

    def __init__(self, encoder: PromptEncoder, fusion: FusionFactory, backbone: BackboneFactory, *, source_pixels: bool = False, **kwargs) -> None:
        if not encoder.takes_images:
            raise ValueError(f"ImageEditing needs an encoder that reads images (a VLM with an image processor); {encoder.spec.name!r} does not")
        if source_pixels:  # the backbone reads the sample and the source, concatenated along the channels
            backbone = partial(doubled_input, backbone)
        super().__init__(encoder, fusion, backbone, **kwargs)
        self.source_pixels = source_pixels

    def denoiser(self, references: References | None, batch_size: int):
        if not self.source_pixels:
            return self.backbone
        return SourceConcat(self.backbone, self.sources(references, batch_size))

    def sources(self, references: References | None, batch_size: int) -> Tensor:
        """The first reference of each sample in model space `(B, C, H, W)`; zeros where a sample has none."""
        c, h, w = self.sample_shape
        rows = references if references is not None else [[] for _ in range(batch_size)]
        pixels = self.image_size
        out = []
        for refs in rows:
            if not refs:
                out.append(None)
                continue
            image = refs[0] if isinstance(refs[0], Tensor) else image_to_tensor(np.array(to_pil(refs[0])))
            image = image.to(self.device, torch.float32)[None]  # (1, 3, H', W')
            if image.shape[-2:] != (pixels, pixels):
                image = F.interpolate(image, size=(pixels, pixels), mode="bilinear", antialias=True, align_corners=False)
            out.append(self.to_model_space(image)[0])
        zeros = torch.zeros(c, h, w, device=self.device)
        return torch.stack([zeros if x is None else x for x in out])

    def adapt_initial_weight(self, name: str, saved: Tensor, target: Tensor) -> Tensor | None:
        """A text-to-image patch embedding for the doubled input: its weights on the sample's channels,
        zeros on the source's (so the model starts as the text-to-image one)."""
        if name == "backbone.x_embedder.proj.weight" and saved.shape[1] * 2 == target.shape[1] and saved.shape[2:] == target.shape[2:]:
            out = torch.zeros_like(target)
            out[:, : saved.shape[1]] = saved
            return out
        return None
