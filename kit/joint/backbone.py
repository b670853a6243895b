"""Joint U-ViT: UniDiffuser's network, one U-ViT over an image and a text latent, each under its own time.

The sequence is `[image time, text time, text-latent tokens, (conditioning tokens), image patches]`: the text
latent's tokens take the place the plain U-ViT gives to conditioning tokens (with their learned positions),
and every token attends to every other, so each stream is denoised in the light of the other at whatever
noise level the other is. The network predicts both streams at once: `model(xs, ts, cond) -> {"image", "text"}`
(the multi-stream form of `kit.diffusion.streams`). With the text at its maximal time (pure noise) the image
prediction is the image marginal's, with the text at time 0 it is the text-conditional one: one network for
every distribution UniDiffuser samples (`kit.joint.task`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kit.backbones.uvit import UViT
from kit.layers import init_linear_trunc_normal, zero_
from kit.types import Conditioning

IMAGE, TEXT, IMAGE_EMBED = "image", "text", "image_embed"
"""The streams: the image (pixels or latents), the caption's text latent, the image's VLM embedding."""

MODALITY = {IMAGE: IMAGE, IMAGE_EMBED: IMAGE, TEXT: TEXT}
"""The modality each stream belongs to: the streams of one modality share its time."""


class JointUViT(UViT):
    """A U-ViT that predicts an image stream and a text-latent stream under independent times.

    Args:
        in_channels: channels of the image stream (pixels, or the autoencoder's latent channels).
        input_size: side of the square image stream.
        text_tokens: L, tokens of the text latent.
        text_dim: d, channels of each text-latent token.
        embed_tokens: M, tokens of an optional second part of the image stream, `"image_embed"` `(B, M, embed_dim)`
            (UniDiffuser's CLIP image embedding; here the frozen VLM's reading of the image): it is diffused
            under the image's time, and the network predicts it too. 0: none.
        embed_dim: channels of each image-embedding token.
        text_vocab: V > 0 makes the text stream discrete (`kit.joint.masked`): token ids `(B, L)` in [0, V + 2)
            (the vocabulary, then the mask and the null token) in, logits `(B, L, V)` out; `text_dim` must be V.
            0: the text stream is a continuous latent `(B, L, text_dim)`.
        max_cond_tokens: learned positions for the text tokens, the image-embedding tokens and any extra
            conditioning tokens (`text_tokens + embed_tokens` when None: nothing else).
        kwargs: the U-ViT's settings (`UViT`: width, depth, heads, patch size, post-norm, positions...).
    """

    time_tokens = (IMAGE, TEXT)

    def __init__(
        self,
        in_channels: int,
        input_size: int,
        text_tokens: int,
        text_dim: int,
        *,
        embed_tokens: int = 0,
        embed_dim: int = 0,
        text_vocab: int = 0,
        max_cond_tokens: int | None = None,
        **kwargs,
    ) -> None:
        if text_tokens < 1 or text_dim < 1:
            raise ValueError(f"the text latent needs at least one token of one channel, got {text_tokens} x {text_dim}")
        if embed_tokens < 0 or (embed_tokens > 0) != (embed_dim > 0):
            raise ValueError(f"an image embedding needs both tokens and channels (or neither), got {embed_tokens} x {embed_dim}")
        if text_vocab and text_dim != text_vocab:
            raise ValueError(f"a discrete text stream predicts logits over its vocabulary: text_dim must be text_vocab ({text_vocab}), got {text_dim}")
        own = text_tokens + embed_tokens
        max_cond_tokens = own if max_cond_tokens is None else max_cond_tokens
        if max_cond_tokens < own:
            raise ValueError(f"max_cond_tokens={max_cond_tokens} leaves no room for the {text_tokens} text and {embed_tokens} image-embedding tokens")
        super().__init__(in_channels, input_size, max_cond_tokens=max_cond_tokens, **kwargs)
        self.text_tokens, self.text_dim = text_tokens, text_dim
        self.embed_tokens, self.embed_dim, self.text_vocab = embed_tokens, embed_dim, text_vocab
        self.text_in = nn.Embedding(text_vocab + 2, self.width) if text_vocab else nn.Linear(text_dim, self.width)
        self.text_norm = nn.LayerNorm(self.width)
        self.text_out = nn.Linear(self.width, text_dim)
        if embed_tokens:
            self.embed_in = nn.Linear(embed_dim, self.width)
            self.embed_norm = nn.LayerNorm(self.width)
            self.embed_out = nn.Linear(self.width, embed_dim)
        self.initialize_text_weights()

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams this network predicts."""
        return (IMAGE, TEXT, IMAGE_EMBED) if self.embed_tokens else (IMAGE, TEXT)

    def initialize_text_weights(self) -> None:
        """The text (and image-embedding) inputs trunc-normal(0.02) like every U-ViT linear (a token embedding:
        normal(0.02)); their outputs at zero like the image's (a discrete stream starts from uniform logits)."""
        if self.text_vocab:
            nn.init.normal_(self.text_in.weight, std=0.02)
        else:
            init_linear_trunc_normal(self.text_in)
        zero_(self.text_out)
        if self.embed_tokens:
            init_linear_trunc_normal(self.embed_in)
            zero_(self.embed_out)

    def forward(self, xs: dict[str, Tensor], ts: dict[str, Tensor], cond: Conditioning | None = None) -> dict[str, Tensor]:
        """xs: image `(B, C, H, W)`, text `(B, L, d)` (ids `(B, L)` with `text_vocab`) and, with `embed_tokens`, image_embed `(B, M_e, d_e)` (it shares the
        image's time); ts: a time `(B,)` for image and text; cond: optional extra tokens `(B, M, W)` -> predictions
        `{"image": (B, C_out, H, W), "text": (B, L, d)}` (logits `(B, L, V)` with `text_vocab`) (and `"image_embed": (B, M_e, d_e)`)."""
        x, y = xs[IMAGE], xs[TEXT]
        b, _, h, w = x.shape
        if self.text_vocab and (y.shape[1:] != (self.text_tokens,) or y.is_floating_point()):
            raise ValueError(f"the text stream is {tuple(y.shape[1:])} {y.dtype} per sample; this network takes {self.text_tokens} token ids")
        if not self.text_vocab and y.shape[1:] != (self.text_tokens, self.text_dim):
            raise ValueError(f"the text stream is {tuple(y.shape[1:])} per sample; this network takes {self.text_tokens} tokens x {self.text_dim}")
        text = self.text_in(y)  # (B, L, W)
        if self.embed_tokens:
            e = xs.get(IMAGE_EMBED)
            if e is None or e.shape[1:] != (self.embed_tokens, self.embed_dim):
                got = "none" if e is None else tuple(e.shape[1:])
                raise ValueError(f"this network takes an image_embed stream of {self.embed_tokens} tokens x {self.embed_dim} per sample; got {got}")
            text = torch.cat([text, self.embed_in(e)], dim=1)  # (B, L + M_e, W)
        real = torch.ones(b, text.shape[1], dtype=torch.bool, device=x.device)
        if cond is not None and cond.tokens is not None:
            text, real = torch.cat([text, cond.tokens], dim=1), torch.cat([real, cond.mask], dim=1)  # (B, L + M, W)
        seq, mask, start = self.tokens(x, {IMAGE: ts[IMAGE], TEXT: ts[TEXT]}, Conditioning(tokens=text, mask=real))  # (B, S, W)
        seq = self.run_blocks(seq, mask, start)  # (B, S, W)
        n = len(self.time_tokens)
        text_out = self.text_out(self.text_norm(seq[:, n : n + self.text_tokens]))  # (B, L, d)
        image_out = self.unpatchify(self.final(self.norm(seq[:, start:])), h, w)  # (B, C_out, H, W)
        if not self.embed_tokens:
            return {IMAGE: image_out, TEXT: text_out}
        m = n + self.text_tokens
        embed_out = self.embed_out(self.embed_norm(seq[:, m : m + self.embed_tokens]))  # (B, M_e, d_e)
        return {IMAGE: image_out, TEXT: text_out, IMAGE_EMBED: embed_out}
