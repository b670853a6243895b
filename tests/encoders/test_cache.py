"""The feature cache: exact round trip, resuming, refusal of a mismatched cache, and training from
it giving the same losses as encoding on the fly."""

from __future__ import annotations

import pytest
import torch

from kit.encoders.cache import CacheMismatchError, FeatureCache, build_cache, cache_key
from tests.parts_for_tests import fit_losses

PROMPTS = ["a red circle", "two blue squares", "a red circle", "a small green triangle on the left"]


def test_round_trip_is_exact_in_float32(encoder, tmp_path):
    cache = build_cache(encoder, PROMPTS, tmp_path / "c", storage_dtype="float32", log=lambda _: None)
    assert len(cache) == 3, "duplicates are encoded once"
    fresh = encoder(PROMPTS)
    read = FeatureCache(tmp_path / "c", encoder.fingerprint()).batch(PROMPTS)
    assert torch.equal(read.mask, fresh.mask) and torch.equal(read.kinds[read.mask], fresh.kinds[fresh.mask])
    assert torch.equal(read.hidden_states.transpose(1, 2)[read.mask], fresh.hidden_states.transpose(1, 2)[fresh.mask])


def test_reading_an_entry_slices_its_shard_lazily_in_every_process(encoder, tmp_path, monkeypatch):
    """An entry is read through `get_slice` (memory-mapped), never by loading a whole shard's tensors; a pickled
    cache (a spawned worker or rank) opens its own handles and reads the same entries."""
    import pickle

    import kit.encoders.cache as cache_module

    build_cache(encoder, PROMPTS, tmp_path / "c", storage_dtype="float32", log=lambda _: None)
    real_open, read_whole = cache_module.safe_open, []

    class Spy:
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def get_tensor(self, name):
            read_whole.append(name)
            return self.inner.get_tensor(name)

        def get_slice(self, name):
            return self.inner.get_slice(name)

    monkeypatch.setattr(cache_module, "safe_open", Spy)
    cache = FeatureCache(tmp_path / "c")
    fresh = encoder(PROMPTS[3:])
    hidden, kinds = cache.get(PROMPTS[3])
    assert read_whole == [], f"whole tensors were loaded: {read_whole}"
    assert torch.equal(hidden, fresh.hidden_states[0][:, fresh.mask[0]]) and torch.equal(kinds.long(), fresh.kinds[0][fresh.mask[0]])
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._open == {} and torch.equal(clone.get(PROMPTS[3])[0], hidden)


def test_resume_encodes_only_what_is_missing(encoder, tmp_path):
    calls = []

    def counting(prompts):
        calls.append(len(prompts))
        return encoder(prompts)

    counting.fingerprint = encoder.fingerprint
    build_cache(counting, PROMPTS[:2], tmp_path / "c", shard_size=1, log=lambda _: None)
    assert sum(calls) == 2 and len(FeatureCache(tmp_path / "c")) == 2
    calls.clear()
    lines = []
    build_cache(counting, PROMPTS, tmp_path / "c", log=lines.append)
    assert sum(calls) == 1 and "resuming: 2 entries already cached, 1 to encode" in lines[0]
    assert len(FeatureCache(tmp_path / "c")) == 3


def test_a_cache_of_another_encoder_is_refused_with_both_fingerprints(encoder, tmp_path):
    build_cache(encoder, PROMPTS[:1], tmp_path / "c", log=lambda _: None)
    other = dict(encoder.fingerprint(), taps=[8])
    with pytest.raises(
        CacheMismatchError, match=r"taps: cache has \[1, 2, 3, 4, 5, 6, 7, 8\], recipe has \[8\][\s\S]*cache fingerprint:[\s\S]*recipe fingerprint:"
    ):
        FeatureCache(tmp_path / "c", other)
    with pytest.raises(FileNotFoundError, match="no feature cache"):
        FeatureCache(tmp_path / "nothing")
    with pytest.raises(KeyError, match="not in the feature cache"):
        FeatureCache(tmp_path / "c").get("a prompt never cached")


@pytest.mark.slow
def test_training_from_the_cache_matches_encoding_on_the_fly(repo, tmp_path):
    from kit.cli import main

    assert (
        main(["cache", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), "--out", str(tmp_path / "c"), "--dtype", "float32"]) == 0
    )
    manifest = FeatureCache(tmp_path / "c").manifest
    assert manifest["data"]["train_items"] == 3 * 4, "max_steps x batch size of the recipe"
    on_the_fly, head = fit_losses(repo, tmp_path, "--trainer.max_steps=3", "--data.init_args.train_size=12")  # the items the cache covers
    cached, cached_head = fit_losses(repo, tmp_path, "--trainer.max_steps=3", f"--data.init_args.feature_cache={tmp_path / 'c'}")
    assert len(on_the_fly) == len(cached) == 3
    assert cached == pytest.approx(on_the_fly, rel=1e-5, abs=1e-6)
    assert torch.allclose(cached_head, head, rtol=1e-4, atol=1e-6)
    # equal results alone would also hold if training ignored the cache: permute the stored features
    # (a different encoder as far as the head can tell; a rescale would not do, LAP normalises it away)
    from safetensors.torch import load_file, save_file

    for shard in manifest["shards"]:
        tensors = load_file(tmp_path / "c" / shard["file"])
        tensors["hidden"] = tensors["hidden"].flip(-1).contiguous()
        save_file(tensors, tmp_path / "c" / shard["file"])
    _, altered_head = fit_losses(repo, tmp_path, "--trainer.max_steps=3", f"--data.init_args.feature_cache={tmp_path / 'c'}")
    assert (altered_head - head).abs().max() > 100 * (cached_head - head).abs().max() + 1e-4, "training did not read the cache"


@pytest.mark.slow
def test_the_default_bf16_cache_trains_within_its_rounding(repo, tmp_path):
    from kit.cli import main

    assert main(["cache", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), "--out", str(tmp_path / "c")]) == 0
    assert FeatureCache(tmp_path / "c").manifest["storage_dtype"] == "bfloat16"
    on_the_fly, head = fit_losses(repo, tmp_path, "--trainer.max_steps=3", "--data.init_args.train_size=12")
    cached, cached_head = fit_losses(repo, tmp_path, "--trainer.max_steps=3", f"--data.init_args.feature_cache={tmp_path / 'c'}")
    assert cached == pytest.approx(on_the_fly, rel=1e-2)
    # bf16 keeps 8 mantissa bits (relative error <= 2^-9 a feature): after 3 Adam steps the head's
    # parameters agree to about lr x steps, and they are not bit-equal (the cache really is bf16)
    drift = (cached_head - head).abs().max()
    assert 0 < drift < 5e-3, f"bf16 cache moved the head by {drift:.2e}"


@pytest.mark.slow
def test_the_cache_is_sized_for_every_rank_and_a_short_one_warns(repo, tmp_path):
    """`kit cache` covers max_steps x batch x ranks items; a run that would draw more than a cache holds says so."""
    import json

    from kit.cli import main, run_cli

    base = ["-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml")]
    assert main(["cache", *base, "--out", str(tmp_path / "two"), "--set=--trainer.devices=2", "--set=--trainer.accelerator=cpu"]) == 0
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["data"]["train_items"] == 3 * 4 * 2, "smoke: 3 steps x batch 4 x 2 ranks"
    assert main(["cache", *base, "--out", str(tmp_path / "one"), "--train-items=4"]) == 0
    with pytest.warns(UserWarning, match=r"the feature cache covers 4 training items but this run draws 12"):
        run_cli(["fit", *base, f"--data.init_args.feature_cache={tmp_path / 'one'}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])


def test_a_key_covers_the_prompt_and_the_pixels_of_its_images():
    import numpy as np
    from PIL import Image

    from kit.images import image_to_tensor

    array = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    key = cache_key("make it blue", [array])
    assert key != "make it blue" and cache_key("make it blue") == "make it blue" and cache_key("make it blue", []) == "make it blue"
    assert cache_key("make it blue", [image_to_tensor(array)]) == key == cache_key("make it blue", [Image.fromarray(array)])  # one image, three forms
    changed = array.copy()
    changed[3, 4, 1] ^= 1
    assert cache_key("make it blue", [changed]) != key, "one changed pixel is another entry"
    assert cache_key("make it red", [array]) != key and cache_key("make it blue", [array, array]) != key


def test_prompts_with_images_round_trip_one_entry_per_image(tmp_path):
    """The same instruction about two different sources is two entries, each equal to encoding it on the fly."""
    import numpy as np

    from kit.encoders import FrozenEncoder
    from kit.world import render
    from kit.world.scene import sample_scene

    vlm = FrozenEncoder("kit:shapes-vlm", taps="all", max_length=64)
    rng = np.random.default_rng(0)
    a, b = render(sample_scene(rng), 48), render(sample_scene(rng), 48)
    items = [("make the circle red", [a]), ("make the circle red", [b]), ("make the circle red", [a]), "a red circle"]
    cache = build_cache(vlm, items, tmp_path / "c", storage_dtype="float32", log=lambda _: None)
    assert len(cache) == 3
    fresh = vlm(["make the circle red", "make the circle red"], [[a], [b]])
    read = cache.batch([cache_key("make the circle red", [a]), cache_key("make the circle red", [b])])
    assert torch.equal(read.mask, fresh.mask)
    assert torch.equal(read.hidden_states.transpose(1, 2)[read.mask], fresh.hidden_states.transpose(1, 2)[fresh.mask])
    assert not torch.equal(read.hidden_states[0], read.hidden_states[1]), "the two sources give two encodings"


@pytest.mark.slow
def test_editing_from_the_cache_matches_encoding_on_the_fly(repo, tmp_path):
    """`kit cache` on the editing recipe keys each instruction with its sources' pixels; training reads them."""
    from kit.cli import main

    edit = ("recipes/edit.yaml",)
    args = ["cache", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / edit[0]), "-c", str(repo / "recipes/smoke.yaml")]
    assert main([*args, "--out", str(tmp_path / "c"), "--dtype", "float32"]) == 0
    cache = FeatureCache(tmp_path / "c")
    assert any("\x1f" in key for key in cache.index), "the editing items' keys carry their images"
    on_the_fly, head = fit_losses(repo, tmp_path, "--trainer.max_steps=3", "--data.init_args.train_size=12", overlays=edit)
    cached, cached_head = fit_losses(repo, tmp_path, "--trainer.max_steps=3", f"--data.init_args.feature_cache={tmp_path / 'c'}", overlays=edit)
    assert cached == pytest.approx(on_the_fly, rel=1e-5, abs=1e-6)
    assert torch.allclose(cached_head, head, rtol=1e-4, atol=1e-6)
    from safetensors.torch import load_file, save_file

    for shard in cache.manifest["shards"]:  # a different encoder as far as the head can tell: training must notice
        tensors = load_file(tmp_path / "c" / shard["file"])
        tensors["hidden"] = tensors["hidden"].flip(-1).contiguous()
        save_file(tensors, tmp_path / "c" / shard["file"])
    _, altered_head = fit_losses(repo, tmp_path, "--trainer.max_steps=3", f"--data.init_args.feature_cache={tmp_path / 'c'}", overlays=edit)
    assert (altered_head - head).abs().max() > 100 * (cached_head - head).abs().max() + 1e-4, "training did not read the cache"
