"""Text latents for the joint image-text model (UniDiffuser): a caption as a short, low-width sequence, and back.

UniDiffuser diffuses a text stream next to the image: CLIP's text features of the caption, linearly reduced to
64 channels a token, and a GPT-2 prefix decoder trained to turn such a latent back into the caption. Here the
frozen encoder (the shapes VLM by default) reads the caption and a trained reducer turns its states into
`num_latents` tokens of `latent_dim` channels, normalised per token (unit scale: what a diffusion stream expects):

- `reducer="tokens"` (UniDiffuser's design, the default): one latent per caption token, a linear map of one tapped
  layer's normalised state at that token; captions shorter than `num_latents` are padded with zero tokens;
- `reducer="resampler"`: learned queries cross-attending to every tapped layer (`kit.fusion.ResamplerHead`), a
  fixed number of tokens whatever the caption's length.

A small prefix decoder reads the latent tokens and writes the caption in the encoder's own tokenizer, greedily at
inference.

`kit.pretrain.TextLatentPretraining` trains the reducer and the decoder (`python -m kit fit -c recipes/joint/text_latent.yaml`).
"""

from __future__ import annotations

from enum import nonmember

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kit.checkpoint import read_checkpoint
from kit.fusion.resampler import ResamplerHead
from kit.layers import TransformerBlock, init_linear_trunc_normal
from kit.types import Choice, EncoderOutput, EncoderSpec, TokenKind


class CaptionTokenizer:
    """The encoder's own tokenizer for captions: ids with a start token, an end token and right padding.

    Args:
        tokenizer: a Hugging Face tokenizer with `bos`/`eos` (or `pad`) tokens.
        max_tokens: the longest caption, in tokens, start and end included.
    """

    def __init__(self, tokenizer, max_tokens: int = 48) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else self.pad
        self.bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else self.eos
        self.unk = tokenizer.unk_token_id
        self.vocab_size = len(tokenizer)

    def encode(self, captions: list[str]) -> Tensor:
        """Captions -> ids `(B, T)` (see `encode_with_mask`)."""
        return self.encode_with_mask(captions)[0]

    def encode_with_mask(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """Captions -> ids `(B, T)`: `[bos, tokens..., eos, pad...]`, and the mask `(B, T)` of real positions; a caption the tokenizer cannot encode (an unknown
        token, or text that does not decode back to itself), or one too long, is a `ValueError` naming it. A
        byte-level tokenizer (the shapes VLM's) encodes any text."""
        rows = []
        for caption in captions:
            ids = self.tokenizer(caption, add_special_tokens=False)["input_ids"]
            if self.unk is not None and self.unk in ids:
                raise ValueError(f"the caption {caption!r} has text the tokenizer cannot encode (it maps to the unknown token)")
            if self.tokenizer.decode(ids).strip() != caption.strip():
                raise ValueError(f"the caption {caption!r} does not survive the tokenizer's round trip (it decodes as {self.tokenizer.decode(ids)!r})")
            if len(ids) + 2 > self.max_tokens:
                raise ValueError(f"the caption {caption!r} is {len(ids) + 2} tokens with start and end; the text decoder takes {self.max_tokens}")
            rows.append([self.bos, *ids, self.eos])
        out = torch.full((len(rows), max(map(len, rows))), self.pad, dtype=torch.long)
        mask = torch.zeros(out.shape, dtype=torch.bool)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return out, mask

    def decode(self, ids: Tensor) -> list[str]:
        """Generated ids `(B, T)` (no start token) -> captions, each cut at its first end token."""
        texts = []
        for row in ids.tolist():
            row = row[: row.index(self.eos)] if self.eos in row else row
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts


def caption_tokenizer(encoder: nn.Module, max_tokens: int, who: str) -> CaptionTokenizer:
    """The encoder's own tokenizer as a `CaptionTokenizer`; an encoder without one is a `ValueError` naming `who` needs it."""
    tokenizer = getattr(getattr(encoder, "processor", None), "tokenizer", None) or getattr(encoder, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"{who} needs an encoder with a tokenizer for its captions; {type(encoder).__name__} has none")
    return CaptionTokenizer(tokenizer, max_tokens)


class TextDecoder(nn.Module):
    """A prefix decoder (UniDiffuser's GPT-2 role, tiny): latent tokens first, then the caption, causally.

    Args:
        latent_dim: channels of each latent token.
        num_latents: latent tokens (the prefix).
        vocab_size: the tokenizer's vocabulary.
        max_tokens: caption tokens, start and end included.
        width: token width.
        depth: transformer blocks.
        num_heads: attention heads.
    """

    def __init__(self, latent_dim: int, num_latents: int, vocab_size: int, max_tokens: int, width: int = 128, depth: int = 3, num_heads: int = 4) -> None:
        super().__init__()
        self.num_latents, self.max_tokens = num_latents, max_tokens
        self.prefix = nn.Linear(latent_dim, width)
        self.embed = nn.Embedding(vocab_size, width)
        self.pos = nn.Parameter(torch.zeros(1, num_latents + max_tokens, width))
        self.blocks = nn.ModuleList(TransformerBlock(width, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        init_linear_trunc_normal(self)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, z: Tensor, ids: Tensor) -> Tensor:
        """z `(B, L, latent_dim)`, ids `(B, T)` -> next-token logits `(B, T, vocab)` (position i predicts ids[i + 1])."""
        x = torch.cat([self.prefix(z), self.embed(ids)], dim=1)  # (B, L + T, W)
        x = x + self.pos[:, : x.shape[1]]
        s, n = x.shape[1], self.num_latents
        allowed = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()  # causal ...
        allowed[:, :n] = True  # ... and every position sees the whole prefix
        mask = allowed.expand(x.shape[0], s, s)  # (B, S, S)
        for block in self.blocks:
            x = block(x, mask)  # (B, S, W)
        return self.head(self.norm(x[:, n:]))  # (B, T, vocab)

    @torch.no_grad()
    def generate(self, z: Tensor, bos: int, eos: int) -> Tensor:
        """Greedy captions from latents `(B, L, d)` -> ids `(B, T')` without the start token (stops when all ended)."""
        ids = torch.full((z.shape[0], 1), bos, dtype=torch.long, device=z.device)
        done = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
        for _ in range(self.max_tokens - 1):
            nxt = self(z, ids)[:, -1].argmax(dim=-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == eos
            if done.all():
                break
        return ids[:, 1:]


class TokenReducer(nn.Module):
    """One latent per caption token: a linear map of one tapped layer's state, zero tokens after the caption.

    Args:
        spec: the encoder's spec (hidden size, taps).
        latent_dim: channels per latent token.
        num_latents: latent tokens (the longest caption, in the encoder's tokens).
        layer: which tap to read (an index into the encoder's taps; -1 is the deepest).
    """

    def __init__(self, spec: EncoderSpec, latent_dim: int, num_latents: int, layer: int = -1) -> None:
        super().__init__()
        if not -len(spec.taps) <= layer < len(spec.taps):
            raise ValueError(f"layer {layer} is not one of the encoder's {len(spec.taps)} taps")
        self.num_latents, self.layer = num_latents, layer
        self.norm = nn.LayerNorm(spec.hidden_size, elementwise_affine=False)
        self.proj = nn.Linear(spec.hidden_size, latent_dim)
        init_linear_trunc_normal(self)

    def forward(self, enc: EncoderOutput) -> Tensor:
        """Hidden states `(B, N, S, D)` -> latents `(B, L, d)`: the prompt's tokens in order, zeros after."""
        enc = enc.select((TokenKind.PROMPT,))
        n = int(enc.mask.sum(dim=1).max())
        if n > self.num_latents:
            raise ValueError(f"a caption of {n} encoder tokens does not fit the text latent's {self.num_latents} tokens; raise num_latents")
        z = self.proj(self.norm(enc.hidden_states[:, self.layer]))  # (B, S, d)
        z = F.layer_norm(z, z.shape[-1:]) * enc.mask[..., None]  # unit scale per real token, zero elsewhere
        return F.pad(z, (0, 0, 0, self.num_latents - z.shape[1]))  # (B, L, d)


class Reducer(Choice):
    """How `TextLatentCodec` turns the encoder's states into latent tokens."""

    label = nonmember("reducer")
    tokens = "tokens"
    """one latent per caption token, a linear map of one tap's normalised state (UniDiffuser's design)"""
    resampler = "resampler"
    """learned queries cross-attending to every tapped layer: a fixed number of tokens"""


class TextLatentCodec(nn.Module):
    """Caption features -> latent tokens `(B, L, d)` (unit scale per token) -> caption.

    Args:
        encoder: the frozen prompt encoder (its spec sizes the reducer; its tokenizer is the decoder's).
        num_latents: L, latent tokens per caption (UniDiffuser keeps CLIP's 77; a short caption needs far fewer).
            With `reducer="tokens"` it is the longest caption the codec takes, in encoder tokens.
        latent_dim: d, channels per latent token (UniDiffuser: 64).
        width: width of the reducer's queries and of the decoder.
        reducer_depth: cross-attention blocks of the reducer.
        decoder_depth: blocks of the prefix decoder.
        max_tokens: the longest caption the decoder writes, in tokens.
        reducer: 'tokens' (one latent per caption token, UniDiffuser's) or 'resampler' (learned queries).
        layer: the tap the 'tokens' reducer reads (-1: the deepest).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        num_latents: int = 48,
        latent_dim: int = 16,
        reducer: Reducer = Reducer.tokens,
        layer: int = -1,
        width: int = 128,
        reducer_depth: int = 2,
        decoder_depth: int = 3,
        max_tokens: int = 48,
    ) -> None:
        super().__init__()
        self.captions = caption_tokenizer(encoder, max_tokens, "TextLatentCodec")
        if Reducer.of(reducer) == Reducer.tokens:
            self.reducer = TokenReducer(encoder.spec, latent_dim, num_latents, layer)
        else:
            self.reducer = ResamplerHead(encoder.spec, latent_dim, num_queries=num_latents, width=width, depth=reducer_depth, num_heads=4)
        self.num_latents, self.latent_dim = num_latents, latent_dim
        self.decoder = TextDecoder(latent_dim, num_latents, self.captions.vocab_size, max_tokens, width=width, depth=decoder_depth)

    def noise(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """The stream at time 1: Gaussian latents `(n, L, d)`."""
        return torch.randn(n, self.num_latents, self.latent_dim, device=device, generator=generator)

    def load_pretrained(self, path: str, settings: dict, encoder_name: str) -> None:
        """Copy the reducer and decoder of a `TextLatentPretraining` checkpoint at `path`, whose codec settings must be
        `settings` and whose encoder must be `encoder_name`; each mismatch is a `ValueError` naming it."""
        checkpoint = read_checkpoint(path)
        if "codec" not in (checkpoint.get("hyper_parameters") or {}):
            raise ValueError(
                f"text_codec {path} records no codec settings: pass a checkpoint of kit.pretrain.TextLatentPretraining written by `python -m kit fit`"
            )
        saved = checkpoint["hyper_parameters"]["codec"] or {}
        differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if differ:
            shown = ", ".join(f"{k}: {saved.get(k)!r} there, {settings.get(k)!r} here" for k in differ)
            raise ValueError(f"text_codec {path}: its codec settings differ from this task's codec ({shown}); copy them into model.init_args.codec")
        state = {k[len("codec.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("codec.")}
        if not state:
            raise ValueError(f"text_codec {path} holds no text codec (no codec.* weights): pass a checkpoint of kit.pretrain.TextLatentPretraining")
        recorded = ((checkpoint["hyper_parameters"].get("encoder") or {}).get("init_args") or {}).get("model")
        if recorded is not None and recorded != encoder_name:
            raise ValueError(
                f"text_codec {path} was trained on the encoder {recorded!r}, this task reads {encoder_name!r}: its latents and tokenizer are another's"
            )
        own = self.state_dict()
        shapes = [f"{k}: {tuple(v.shape)} there, {tuple(own[k].shape)} here" for k, v in state.items() if k in own and v.shape != own[k].shape]
        if shapes or set(state) != set(own):
            shown = "; ".join(shapes[:2]) or "other weights"
            raise ValueError(f"text_codec {path} does not fit this task's codec ({shown}): a codec of another tokenizer or encoder")
        self.load_state_dict(state)

    def encode(self, enc: EncoderOutput) -> Tensor:
        """Encoder output `(B, N, S, D)` -> latents `(B, L, d)`, each real token with zero mean and unit variance."""
        if isinstance(self.reducer, TokenReducer):
            return self.reducer(enc)  # (B, L, d), zero after the caption
        z = self.reducer(enc).tokens  # (B, L, d)
        return F.layer_norm(z, z.shape[-1:])

    def loss(self, z: Tensor, captions: list[str]) -> Tensor:
        """Teacher-forced cross-entropy of the captions given latents `(B, L, d)`, over real tokens."""
        ids, real = (t.to(z.device) for t in self.captions.encode_with_mask(captions))  # (B, T) each
        logits = self.decoder(z, ids[:, :-1])  # (B, T-1, V)
        target = ids[:, 1:].masked_fill(~real[:, 1:], -100)  # padding after the end token is not a target
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)

    def decode(self, z: Tensor) -> list[str]:
        """Latents `(B, L, d)` -> greedy captions."""
        return self.captions.decode(self.decoder.generate(z, self.captions.bos, self.captions.eos))
