"""A small convolutional autoencoder for the shapes world, and `ShapesAutoencoder`, its frozen wrapper.

Diffusion in pixel space asks each DiT token of the shapes recipe to draw a 16x16x3 patch (768 values)
and weighs an object by its pixels. `ConvAutoencoder` maps a 48-px scene to a small latent grid (the
shipped one: 6x6 cells of 4 channels, 2x2 latent cells per grid cell), so the DiT predicts a few numbers
per object and the decoder, trained on clean renders, draws the crisp shape (what that does to learning
is measured in docs/efficiency.md, "A latent space"). Three choices make the latent suited to diffusion:

- the encoder ends in a batch norm without affine parameters: every latent channel has zero mean and
  unit variance over the training data, so no scaling factor is needed and noise levels mean the same
  in every channel;
- the decoder is trained on latents with Gaussian noise of a random level up to `latent_noise` added,
  so a latent near the data (what a sampler ends on) decodes to a clean scene rather than a smear;
- it is a plain deterministic autoencoder: the noise, not a KL term, sets how much a latent may be off.

`ShapesAutoencoder` loads a trained one from a folder (`config.json` + `model.safetensors`; the kit ships
`kit:shapes-ae`, built by `python -m kit pretrain-autoencoder --config recipes/autoencoder/shapes_ae.yaml`)
and offers the interface `TextToImage(autoencoder=...)` uses: `latent_channels`, `downsample`,
`latent_size`, `encode`, `decode`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from kit.encoders.base import LatentAutoencoder
from kit.encoders.frozen import resolve_model_path


@dataclass
class AutoencoderConfig:
    """The shape of a `ConvAutoencoder`.

    Args:
        channels: feature channels of each level, from the input's resolution down; every level ends in a
            stride-2 convolution, so the downsampling factor is `2 ** len(channels)` (`downsample`).
        latent_channels: channels of the latent grid.
        groups: group-norm groups in the residual blocks.
        image_size: the render size it was trained at (recorded; any multiple of `downsample` runs).
    """

    channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 4
    groups: int = 8
    image_size: int = 48

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) < 1 or any(c < 1 or c % self.groups for c in self.channels):
            raise ValueError(f"autoencoder channels {self.channels} must be positive multiples of groups={self.groups}")
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {self.latent_channels}")

    @property
    def downsample(self) -> int:
        return 2 ** len(self.channels)


class ResBlock(nn.Module):
    """Pre-norm residual block: (GroupNorm, SiLU, 3x3 conv) twice, plus the input."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )  # fmt: skip
        nn.init.zeros_(self.body[-1].weight)  # starts as the identity
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)  # (B, C, H, W)


class ConvAutoencoder(nn.Module):
    """Images `(B, 3, H, W)` in [-1, 1] <-> latents `(B, latent_channels, H / f, W / f)`, f = `config.downsample`.

    Args:
        config: its shape (`AutoencoderConfig`).
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        ch, g = config.channels, config.groups
        down: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):  # each level: a residual block, then a stride-2 conv to the next width
            nxt = ch[i + 1] if i + 1 < len(ch) else ch[-1]
            down += [ResBlock(c, g), nn.Conv2d(c, nxt, 3, stride=2, padding=1)]
        down += [nn.GroupNorm(g, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], config.latent_channels, 1)]
        self.encoder = nn.Sequential(*down)
        self.latent_norm = nn.BatchNorm2d(config.latent_channels, affine=False, momentum=0.01)  # unit-variance channels
        up: list[nn.Module] = [nn.Conv2d(config.latent_channels, ch[-1], 3, padding=1)]
        for i in reversed(range(len(ch))):  # mirror: residual block, nearest x2, conv to the previous width
            prev = ch[i - 1] if i > 0 else ch[0]
            up += [ResBlock(ch[i], g), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[i], prev, 3, padding=1)]
        up += [nn.GroupNorm(g, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*up)

    def encode(self, images: Tensor) -> Tensor:
        """`(B, 3, H, W)` -> standardised latents `(B, C_lat, H / f, W / f)`."""
        return self.latent_norm(self.encoder(images))

    def decode(self, latents: Tensor) -> Tensor:
        """`(B, C_lat, h, w)` -> images `(B, 3, h * f, w * f)` (not clamped)."""
        return self.decoder(latents)

    def forward(self, images: Tensor, latent_noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Reconstruct `(B, 3, H, W)`; `latent_noise` `(B,)` is the std of Gaussian noise added to each
        sample's latent before decoding. Returns (reconstruction `(B, 3, H, W)`, latents `(B, C_lat, h, w)`)."""
        z = self.encode(images)  # (B, C_lat, h, w)
        zn = z if latent_noise is None else z + latent_noise.view(-1, 1, 1, 1) * torch.randn_like(z)
        return self.decode(zn), z

    def save(self, folder: str | Path) -> Path:
        """Write `config.json` and `model.safetensors` to `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"kind": "kit-conv-autoencoder", **asdict(self.config)}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ConvAutoencoder:
        """Build from a folder `save` wrote (weights are tensors only: nothing in the folder runs code)."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.pop("kind", None) != "kit-conv-autoencoder":
            raise ValueError(f"{folder} does not hold a kit autoencoder (its config.json has no kind 'kit-conv-autoencoder')")
        model = cls(AutoencoderConfig(**config))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model


class ShapesAutoencoder(LatentAutoencoder):
    """A frozen `ConvAutoencoder`: diffusion then runs on its latents (`TextToImage(autoencoder=...)`).

    Args:
        model: `kit:<asset>` for one shipped with the kit (`kit:shapes-ae`, trained on 48-px shapes-world
            renders: 6x6x4 latents, 2x2 latent cells per grid cell) or a folder `ConvAutoencoder.save` wrote.
    """

    def __init__(self, model: str = "kit:shapes-ae") -> None:
        super().__init__()
        self.name = model
        self.model = ConvAutoencoder.load(resolve_model_path(model))
        self.latent_channels = self.model.config.latent_channels
        self.downsample = self.model.config.downsample
        self.freeze()

    @torch.no_grad()
    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """`(B, 3, H, W)` in [-1, 1] -> `(B, C_lat, H / f, W / f)` latents, about unit variance per channel."""
        return self.model.encode(images.float())

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> images `(B, 3, H, W)`, clamped to [-1, 1]."""
        return self.model.decode(latents.float()).clamp(-1, 1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, latent_channels={self.latent_channels}, downsample={self.downsample}"
