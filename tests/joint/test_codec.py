"""Text latents (UniDiffuser's text stream): the caption tokenizer round-trips and refuses what it cannot encode,
the prefix decoder is causal over the caption and reads its prefix, and the codec can learn to reconstruct."""

from __future__ import annotations

import pytest
import torch

from kit.joint.codec import TextDecoder, TextLatentCodec
from kit.types import TokenKind

CAPTIONS = ["a large red circle in the top left", "two blue squares", "a small green triangle on the right", "a purple diamond above a red circle"]


def test_captions_round_trip_and_bad_captions_are_named(encoder):
    codec = TextLatentCodec(encoder, max_tokens=16)
    ids = codec.captions.encode(CAPTIONS)
    assert (ids[:, 0] == codec.captions.bos).all()
    assert codec.captions.decode(ids[:, 1:]) == CAPTIONS
    assert codec.captions.decode(codec.captions.encode(["a red circle ✿"])[:, 1:]) == ["a red circle ✿"], "byte-level: any text encodes"
    with pytest.raises(ValueError, match=r"tokens with start and end; the text decoder takes 16"):
        codec.captions.encode([" and ".join(CAPTIONS)])


def test_a_caption_a_word_level_tokenizer_cannot_encode_is_named():
    from kit.joint.codec import CaptionTokenizer

    captions = CaptionTokenizer(_word_tokenizer(), max_tokens=8)
    assert captions.encode(["a red circle"]).tolist() == [[2, 4, 5, 6, 3]]
    with pytest.raises(ValueError, match=r"the caption 'a red triangle' has text the tokenizer cannot encode"):
        captions.encode(["a red triangle"])


def test_the_decoder_is_causal_over_the_caption_and_reads_the_whole_prefix():
    torch.manual_seed(0)
    decoder = TextDecoder(latent_dim=8, num_latents=3, vocab_size=50, max_tokens=12, width=32, depth=2, num_heads=2)
    z, ids = torch.randn(2, 3, 8), torch.randint(0, 50, (2, 10))
    logits = decoder(z, ids)
    later = ids.clone()
    later[:, 6:] = (later[:, 6:] + 7) % 50
    assert torch.allclose(decoder(z, later)[:, :6], logits[:, :6], atol=1e-6), "a position saw a later token"
    assert not torch.allclose(decoder(z, later)[:, 6:], logits[:, 6:]), "later positions read their tokens"
    z2 = z.clone()
    z2[:, 2] += 1.0  # the last prefix token: every caption position must see it
    assert (decoder(z2, ids) - logits)[:, 0].abs().max() > 1e-4


def test_the_token_reducer_gives_one_unit_scale_latent_per_caption_token_and_zeros_after(encoder):
    codec = TextLatentCodec(encoder, num_latents=10, latent_dim=8, width=32, decoder_depth=1, max_tokens=16)
    with torch.no_grad():
        enc = encoder(CAPTIONS)
        z = codec.encode(enc)
    lengths = enc.select((TokenKind.PROMPT,)).mask.sum(dim=1)  # the captions' own tokens
    assert z.shape == (4, 10, 8) and lengths.min() < lengths.max() <= 10
    real = torch.arange(10)[None] < lengths[:, None]  # (B, L)
    assert torch.allclose(z[real].mean(-1), torch.zeros(int(real.sum())), atol=1e-5) and torch.allclose(
        z[real].var(-1, unbiased=False), torch.ones(int(real.sum())), atol=1e-3
    )
    assert z[~real].abs().max() == 0, "zero tokens after the caption"
    with pytest.raises(ValueError, match=r"a caption of \d+ encoder tokens does not fit the text latent's 3 tokens; raise num_latents"):
        TextLatentCodec(encoder, num_latents=3, latent_dim=8, width=32, decoder_depth=1, max_tokens=16).encode(enc)
    with pytest.raises(ValueError, match="unknown reducer 'mean'; known: tokens, resampler"):
        TextLatentCodec(encoder, reducer="mean")


@pytest.mark.slow
@pytest.mark.parametrize(("reducer", "num_latents"), [("tokens", 10), ("resampler", 4)])
def test_the_codec_learns_to_reconstruct_a_few_captions(encoder, reducer, num_latents):
    torch.manual_seed(0)
    codec = TextLatentCodec(encoder, num_latents=num_latents, latent_dim=16, width=64, reducer_depth=1, decoder_depth=2, max_tokens=16, reducer=reducer)
    with torch.no_grad():
        enc = encoder(CAPTIONS)
    z = codec.encode(enc)
    assert z.shape == (4, num_latents, 16)
    optimizer = torch.optim.AdamW(codec.parameters(), lr=3e-3)
    for _ in range(200):
        loss = codec.loss(codec.encode(enc), CAPTIONS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    codec.eval()
    assert codec.decode(codec.encode(enc)) == CAPTIONS, f"loss {float(loss):.4f}"


@pytest.mark.slow
def test_the_text_latent_recipe_fits_and_reports_exact_match(repo, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kit.cli import run_cli

    args = [
        "fit",
        "-c",
        str(repo / "recipes/joint/text_latent.yaml"),
        "--trainer.max_steps=3",
        "--trainer.val_check_interval=3",
        "--trainer.log_every_n_steps=1",
    ]
    args += ["--trainer.limit_val_batches=1", "--data.init_args.batch_size=4", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    args += ["--model.init_args.encoder.init_args.model=kit:shapes-vlm-random"]
    run_cli(args)
    events = EventAccumulator(str(next(tmp_path.glob("*/version_0"))))
    events.Reload()
    assert {"train/loss", "val/loss", "val/exact"} <= set(events.Tags()["scalars"])
    assert 0.0 <= events.Scalars("val/exact")[-1].value <= 1.0


def _word_tokenizer(pad_is_eos: bool = False):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3, "a": 4, "red": 5, "circle": 6, "and": 7, "blue": 8, "square": 9}
    words = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=words, unk_token="[UNK]", pad_token="[EOS]" if pad_is_eos else "[PAD]", bos_token="[BOS]", eos_token="[EOS]"
    )


def test_padding_after_the_end_token_is_not_a_target(encoder):
    """A batch's loss is the token-weighted mean of each caption's own loss: the short caption's padding adds nothing,
    also with a tokenizer whose padding token is its end token (GPT-2's habit)."""
    from kit.joint.codec import CaptionTokenizer

    torch.manual_seed(0)
    codec = TextLatentCodec(encoder, num_latents=2, latent_dim=8, width=32, reducer_depth=1, decoder_depth=1, max_tokens=24, reducer="resampler")
    codec.captions = CaptionTokenizer(_word_tokenizer(pad_is_eos=True), max_tokens=24)
    assert codec.captions.pad == codec.captions.eos
    z = torch.randn(2, 2, 8)
    short, long = "a red circle", "a red circle and a blue square"
    counts = [len(codec.captions.encode([c])[0]) - 1 for c in (short, long)]  # targets per caption
    each = [codec.loss(z[i : i + 1], [c]) for i, c in enumerate((short, long))]
    expected = (counts[0] * each[0] + counts[1] * each[1]) / sum(counts)
    assert torch.allclose(codec.loss(z, [short, long]), expected, atol=1e-5)
