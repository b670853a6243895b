"""`VAELatents`: a frozen diffusers `AutoencoderKL` that moves images to and from scaled latents.

Optional (`pip install -e ".[vae]"`); pixel space stays the default for the shapes world.
Latents are `(z - shift_factor) * scaling_factor`, with both factors read from the VAE's
config unless given (SD 1/2: 0.18215 and no shift; SD3/Flux VAEs carry a shift).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kit.encoders.base import LatentAutoencoder


class VAELatents(LatentAutoencoder):
    """Frozen AutoencoderKL: images in [-1, 1] <-> scaled latents.

    Args:
        model: a diffusers AutoencoderKL: hub name or local path.
        subfolder: subfolder of the checkpoint holding the VAE ('vae' in full pipelines).
        scaling_factor: latent scale; the VAE config's when None.
        shift_factor: latent shift; the VAE config's (or 0) when None.
        sample_posterior: encode to a sample of the posterior (as latent diffusion trains) rather than its mean.
        dtype: weight dtype.
        revision: hub revision.
    """

    def __init__(
        self,
        model: str,
        subfolder: str | None = None,
        scaling_factor: float | None = None,
        shift_factor: float | None = None,
        sample_posterior: bool = True,
        dtype: str = "float32",
        revision: str | None = None,
    ) -> None:
        super().__init__()
        try:
            from diffusers import AutoencoderKL
        except ImportError as e:  # an optional extra
            raise ImportError('VAELatents needs diffusers: pip install -e ".[vae]"') from e
        self.name = model
        self.model = AutoencoderKL.from_pretrained(model, subfolder=subfolder, torch_dtype=getattr(torch, dtype), revision=revision)
        config = self.model.config
        self.scaling_factor = config.scaling_factor if scaling_factor is None else scaling_factor
        self.shift_factor = (getattr(config, "shift_factor", None) or 0.0) if shift_factor is None else shift_factor
        self.sample_posterior = sample_posterior
        self.latent_channels = int(config.latent_channels)
        self.downsample = 2 ** (len(config.block_out_channels) - 1)
        self.freeze()

    @torch.no_grad()
    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """`(B, 3, H, W)` in [-1, 1] -> `(B, C_lat, H / f, W / f)` scaled latents."""
        dist = self.model.encode(images.to(self.model.dtype)).latent_dist
        z = dist.sample(generator) if self.sample_posterior else dist.mean
        return ((z - self.shift_factor) * self.scaling_factor).float()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents -> images `(B, 3, H, W)`, clamped to [-1, 1]."""
        z = latents / self.scaling_factor + self.shift_factor
        return self.model.decode(z.to(self.model.dtype)).sample.float().clamp(-1, 1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, latent_channels={self.latent_channels}, downsample={self.downsample}, scaling={self.scaling_factor}"
