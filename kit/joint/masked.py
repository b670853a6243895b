"""A discrete text stream for the joint model: masked (absorbing-state) diffusion over the caption's tokens.

UniDiffuser diffuses a continuous text latent (`kit.joint.codec`); the models after it that caption well
(UniDisc, MMaDA, Lumina-DiMOO) diffuse the caption's tokens instead. Here the text stream is the caption's ids in
the encoder's own tokenizer, `[tokens..., end, pad...]` over `num_tokens` positions, and its time is the mask
ratio: at time t every position is, independently, the absorbing mask token with probability t (time 0 is the
caption, time 1 all masks, the text marginalised). The network predicts logits over the vocabulary at every
position and is trained with the cross-entropy at the masked ones. Nothing is pretrained: no text codec, no decoder.

Sampling (`Unmasker`) starts from all masks and, at each of the sampler's steps, draws a token at every masked
position from the (guided) prediction and keeps the most confident ones, so that the share still masked follows
the step's time; guidance combines log-probabilities, `log p_u + s (log p_c - log p_u)`, the discrete form of CFG
(for free: the unconditional branch is the image at time 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kit.joint.codec import caption_tokenizer


class MaskedTextCodec(nn.Module):
    """Captions <-> token ids `(B, L)` for the masked text stream (no weights).

    Args:
        encoder: the prompt encoder whose tokenizer writes the captions.
        max_tokens: the longest caption, in tokens, start and end included (the stream has `max_tokens - 1`
            positions: the start token is not diffused).
    """

    def __init__(self, encoder: nn.Module, *, max_tokens: int = 48) -> None:
        super().__init__()
        if max_tokens < 3:
            raise ValueError(f"max_tokens must leave room for one token between start and end, got {max_tokens}")
        self.captions = caption_tokenizer(encoder, max_tokens, "the masked text stream")
        self.vocab_size = self.captions.vocab_size
        self.mask_id, self.null_id = self.vocab_size, self.vocab_size + 1
        self.num_latents = max_tokens - 1  # positions of the stream

    @property
    def latent_dim(self) -> int:
        """The width of a prediction: logits over the vocabulary."""
        return self.vocab_size

    def ids(self, captions: list[str]) -> Tensor:
        """Captions -> ids `(B, L)`: the tokens, the end token, then padding (a caption too long is a `ValueError`)."""
        ids = self.captions.encode(captions)[:, 1:]  # (B, T - 1): without the start token
        return F.pad(ids, (0, self.num_latents - ids.shape[1]), value=self.captions.pad)

    def noise(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """The stream at time 1: every position masked `(n, L)` (nothing random: `generator` is not read)."""
        return torch.full((n, self.num_latents), self.mask_id, dtype=torch.long, device=device)

    def null(self, n: int, device: torch.device) -> Tensor:
        """The learned-null text `(n, L)`: every position the null token (given at time 0)."""
        return torch.full((n, self.num_latents), self.null_id, dtype=torch.long, device=device)

    def corrupt(self, ids: Tensor, t: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """ids `(B, L)`, times `(B,)` -> (the ids with each position masked with probability t `(B, L)`, the mask `(B, L)`)."""
        masked = torch.rand(ids.shape, device=ids.device, generator=generator) < t[:, None]
        return ids.masked_fill(masked, self.mask_id), masked

    def loss(self, logits: Tensor, ids: Tensor, masked: Tensor) -> Tensor:
        """Logits `(B, L, V)`, ids `(B, L)`, mask `(B, L)` -> the weighted mean cross-entropy over each sample's masked
        positions `(B,)` (0 where none is masked). The padding after a caption weighs one token in all: a short
        caption is mostly padding, trivially predicted, and counted whole it would drown the words."""
        ce = F.cross_entropy(logits.float().transpose(1, 2), ids, reduction="none")  # (B, L)
        pad = ids == self.captions.pad  # (B, L)
        weight = torch.where(pad, 1.0 / pad.sum(dim=1, keepdim=True).clamp(min=1), torch.ones_like(ce)) * masked  # (B, L)
        return (ce * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1e-8)

    def decode(self, ids: Tensor) -> list[str]:
        """Ids `(B, L)` -> captions, each cut at its first end token (a position still masked reads as padding)."""
        special = ids >= self.vocab_size
        return self.captions.decode(ids.masked_fill(special, self.captions.pad))


class Unmasker:
    """The discrete stream's state while sampling: all masks at time 1, the caption at time 0.

    `at(t)` reveals, from the last prediction, the most confident of the masked positions until the share still
    masked is the level of time t; `update(log_probs)` takes the (guided) prediction at that state; `finish()`
    fills what is still masked. The level of a time is `unshift(t)`: the samplers' grids are shifted towards
    noise for the image, and undoing the shift reveals the text evenly over the steps.

    Args:
        codec: the masked text codec.
        n: samples.
        device: where the state lives.
        shift: the sampler's time shift (1: none).
        temperature: of the draws (0: the most probable token).
        generator: the random source of the draws.
    """

    def __init__(
        self, codec: MaskedTextCodec, n: int, device: torch.device, shift: float = 1.0, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> None:
        self.codec, self.shift, self.temperature, self.generator = codec, shift, temperature, generator
        self.ids = codec.noise(n, device)  # (B, L)
        self.drawn: Tensor | None = None  # (B, L) tokens drawn from the last prediction
        self.confidence: Tensor | None = None  # (B, L) their log-probabilities

    def level(self, t: Tensor) -> Tensor:
        """Times `(B,)` (on the sampler's shifted grid) -> the share of positions masked at each `(B,)`."""
        t = t.double()
        return (t / (self.shift - (self.shift - 1) * t)).clamp(0, 1)

    def at(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Reveal down to the level of `t` `(B,)` -> (the ids `(B, L)`, the share of them masked `(B,)`: their time)."""
        length = self.ids.shape[1]
        keep_masked = torch.round(self.level(t) * length).long()  # (B,)
        masked = self.ids == self.codec.mask_id  # (B, L)
        reveal = (masked.sum(dim=1) - keep_masked).clamp(min=0)  # (B,)
        if self.drawn is not None and int(reveal.max()) > 0:
            confidence = self.confidence.masked_fill(~masked, float("-inf"))  # (B, L)
            order = confidence.argsort(dim=1, descending=True)  # (B, L)
            rank = order.argsort(dim=1)  # (B, L) each position's rank by confidence
            chosen = masked & (rank < reveal[:, None])
            self.ids = torch.where(chosen, self.drawn, self.ids)
        share = (self.ids == self.codec.mask_id).float().mean(dim=1)  # (B,)
        return self.ids, share

    def update(self, log_probs: Tensor) -> None:
        """The prediction `(B, L, V)` (log-probabilities, guided or not) at the current state: draw a token for every position."""
        if self.temperature == 0:
            drawn = log_probs.argmax(dim=-1)  # (B, L)
        else:
            probs = F.softmax(log_probs.float() / self.temperature, dim=-1)  # (B, L, V)
            drawn = torch.multinomial(probs.flatten(0, 1), 1, generator=self.generator).view(probs.shape[:2])
        self.drawn = drawn
        self.confidence = F.log_softmax(log_probs.float(), dim=-1).gather(-1, drawn[..., None])[..., 0]  # (B, L)

    def finish(self) -> Tensor:
        """The caption ids `(B, L)`: every position still masked takes its last draw."""
        masked = self.ids == self.codec.mask_id
        if masked.any():
            if self.drawn is None:
                raise RuntimeError("the masked text stream was never predicted: no sampling step ran")
            self.ids = torch.where(masked, self.drawn, self.ids)
        return self.ids
