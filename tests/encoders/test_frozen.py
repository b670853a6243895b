import pytest
import torch

from kit.encoders import FrozenEncoder, parse_taps, resolve_model_path
from kit.encoders.verifi import Rewriter
from kit.types import TokenKind


def test_parse_taps():
    assert parse_taps("all", 8) == tuple(range(1, 9))
    assert parse_taps("last", 8) == (8,)
    assert parse_taps("every:3", 8) == (2, 5, 8)
    assert parse_taps([0, -1, 4], 8) == (0, 8, 4)
    with pytest.raises(ValueError, match=r"taps \[9, -10\] do not exist: the encoder has 8 layers"):
        parse_taps([1, 9, -10], 8)
    with pytest.raises(ValueError, match="unknown taps"):
        parse_taps("most", 8)


def test_unknown_shipped_model_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="kit:shapes-vlm-random"):
        resolve_model_path("kit:no-such-model")


def test_taps_beyond_depth_fail_at_build():
    with pytest.raises(ValueError, match="has 8 layers"):
        FrozenEncoder("kit:shapes-vlm-random", taps=[4, 12])


def test_encoder_output_shapes_and_kinds(encoder):
    out = encoder(["a red circle", "two blue squares and a large green triangle on the left"])
    b, n, s, d = out.hidden_states.shape
    assert (b, n, d) == (2, 8, 128) and encoder.spec.taps == tuple(range(1, 9))
    assert out.mask.shape == out.kinds.shape == (2, s)
    prompt_tokens = (out.kinds == int(TokenKind.PROMPT)) & out.mask
    assert 0 < prompt_tokens[0].sum() < prompt_tokens[1].sum()
    assert ((out.kinds == int(TokenKind.SYSTEM)) & out.mask).any(), "chat-template scaffolding is marked SYSTEM"
    assert out.mask[0].sum() < out.mask[1].sum(), "the shorter prompt is padded"
    # padding must not change the real tokens' states (right padding under causal attention)
    alone = encoder(["a red circle"])
    k = int(alone.mask.sum())
    assert torch.allclose(alone.hidden_states[0, :, :k], out.hidden_states[0, :, :k], atol=1e-5)


def test_system_prompt_tokens_are_system_kind():
    def system_tokens(**kwargs) -> int:
        out = FrozenEncoder("kit:shapes-vlm-random", taps="last", **kwargs)(["a red circle"])
        return int(((out.kinds == int(TokenKind.SYSTEM)) & out.mask).sum())

    assert system_tokens(system_prompt="describe the scene") > system_tokens()


def test_frozen_means_frozen(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.model.training, "the wrapped model stays in eval mode"
    assert encoder.state_dict() == {}, "frozen weights never enter a state dict"
    encoder.load_state_dict({})  # loading a checkpoint without them keeps the weights
    out = encoder(["a red circle"])
    assert not out.hidden_states.requires_grad


def test_overlong_prompt_is_truncated_with_a_warning():
    enc = FrozenEncoder("kit:shapes-vlm-random", taps="last", max_length=16)
    with pytest.warns(UserWarning, match=r"truncated by \d+ tokens"):
        out = enc(["a large red circle in the top left and a small blue square in the center and a green triangle"])
    assert out.mask.shape[1] == 16


def test_echo_conditions_on_the_second_copy_which_has_read_the_whole_prompt(encoder):
    from kit.encoders.frozen import FrozenEncoder as Encoder

    echo = Encoder("kit:shapes-vlm-random", taps="all", max_length=64, echo=True)
    prompts = ["a large red circle in the top left", "two blue squares"]
    plain, echoed = encoder(prompts), echo(prompts)
    for i, prompt in enumerate(prompts):
        ids = encoder.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        first = encoder.tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]
        kept = echoed.select((TokenKind.PROMPT,))
        n = int(kept.mask[i].sum())
        assert n == len(ids), "only the second copy is PROMPT: as many tokens as the prompt alone"
        assert int((echoed.kinds[i] == int(TokenKind.ECHO)).sum()) == len(first), "the first copy and the separator are ECHO"
        plain_states = plain.select((TokenKind.PROMPT,)).hidden_states[i, -1, :n]
        assert not torch.allclose(kept.hidden_states[i, -1, :n], plain_states, atol=1e-3), "the second copy's states differ: they have read the prompt"
    assert echo.fingerprint() != encoder.fingerprint()
    empty = echo(["", "a red circle"])  # an empty prompt has nothing to echo (and conditions on the null token downstream)
    assert int((empty.kinds[0] == int(TokenKind.ECHO)).sum()) == 0 and int((empty.kinds[1] == int(TokenKind.ECHO)).sum()) > 0
    with pytest.raises(ValueError, match="merges the separator"):  # " a" is one token: the second copy would not tokenize alike
        Encoder("kit:shapes-vlm-random", taps="last", echo=True, echo_separator=" ")(["a red circle"])
    with pytest.raises(ValueError, match="echo and rewriter are exclusive"):
        from kit.encoders.verifi import Rewriter

        Encoder("kit:shapes-vlm-random", taps="last", echo=True, rewriter=Rewriter())


@pytest.mark.slow
def test_the_fingerprint_changes_with_each_thing_that_changes_the_features(tmp_path):
    """Model, revision, weights, dtype, taps and template each change exactly their key (the cache's refusal rests on it)."""
    import shutil

    base = FrozenEncoder("kit:shapes-vlm-random", taps="all")
    ref = base.fingerprint()
    variants = {
        "model": FrozenEncoder("kit:shapes-vlm", taps="all"),
        "revision": FrozenEncoder("kit:shapes-vlm-random", taps="all", revision="v2"),
        "dtype": FrozenEncoder("kit:shapes-vlm-random", taps="all", dtype="bfloat16"),
        "taps": FrozenEncoder("kit:shapes-vlm-random", taps="last"),
        "template": FrozenEncoder("kit:shapes-vlm-random", taps="all", system_prompt="draw it"),
        "template ": FrozenEncoder("kit:shapes-vlm-random", taps="all", echo=True),  # the echo is part of the rendering
        "rewrite": FrozenEncoder("kit:shapes-vlm-random", taps="all", rewriter=Rewriter()),
    }
    for key, encoder in variants.items():
        other = encoder.fingerprint()
        changed = {k for k in ref if other[k] != ref[k]}
        assert key.strip() in changed and changed <= {key.strip(), "weights"}, (key, changed)  # another model also has other weights
    # the weights alone: the same folder with one tensor altered
    folder = tmp_path / "m"
    shutil.copytree(resolve_model_path("kit:shapes-vlm-random"), folder)
    before = FrozenEncoder(str(folder), taps="all").fingerprint()
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    after = FrozenEncoder(str(folder), taps="all").fingerprint()
    assert {k for k in before if before[k] != after[k]} == {"weights"}
    # each rewrite setting that changes the generated tokens changes the rewrite key; a disabled rewriter is no rewriting
    rewriting = variants["rewrite"].fingerprint()["rewrite"]
    for other in (Rewriter(system_prompt="rewrite it"), Rewriter(max_new_tokens=12)):
        assert FrozenEncoder("kit:shapes-vlm-random", taps="all", rewriter=other).fingerprint()["rewrite"] != rewriting
    assert FrozenEncoder("kit:shapes-vlm-random", taps="all", rewriter=Rewriter(enabled=False)).fingerprint() == ref


def test_a_model_folder_with_remote_code_does_not_run_it_by_default(tmp_path):
    """trust_remote_code is off unless asked: a config whose auto_map names a local Python file
    never imports it (the stock class is used, or loading fails), and nothing it would do happens."""
    from tests.parts_for_tests import remote_code_model_folder

    folder, marker = remote_code_model_folder(tmp_path)
    encoder = FrozenEncoder(str(folder), taps="all")  # the stock class for its model_type, not the folder's code
    assert not marker.exists(), "the folder's Python file ran"
    assert type(encoder.model).__module__.startswith("transformers."), type(encoder.model)


def test_a_hub_models_fingerprint_is_not_a_constant(monkeypatch):
    """A hub name's weights digest names the model and revision when no snapshot is cached (never the
    bare constant 'hub', which let two hub models share a feature cache)."""
    from kit.encoders.frozen import weights_digest

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    a, b, c = weights_digest("someone/model-a"), weights_digest("someone/model-b"), weights_digest("someone/model-a", "v2")
    assert len({a, b, c}) == 3 and a == "hub:someone/model-a@unresolved" and c.endswith("@v2")
