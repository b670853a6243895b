"""Streaming data over litdata chunks: exact round trip, training from chunks (with stored features equal to
encoding on the fly), and clear errors for what is not a streaming dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("litdata")

from kit.data.streaming import StreamingImageTextData, read_meta, write_streaming  # noqa: E402
from tests.parts_for_tests import fit_losses  # noqa: E402


def test_items_round_trip_exactly_and_features_in_bfloat16(tmp_path, encoder):
    rng = np.random.default_rng(0)
    prompts = ["a red circle", "two blue squares", "a small green triangle on the left"]
    images = [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in prompts]
    out = encoder(prompts)
    items = [
        {"image": im, "prompt": p, "hidden": out.hidden_states[i][:, out.mask[i]], "kinds": out.kinds[i][out.mask[i]]}
        for i, (im, p) in enumerate(zip(images, prompts))
    ]
    assert write_streaming(items, tmp_path / "s", fingerprint=encoder.fingerprint(), chunk_bytes="4KB") == 3
    assert len(list((tmp_path / "s").glob("chunk-*.bin"))) > 1, "several chunks, so reading crosses chunk boundaries"
    data = StreamingImageTextData(str(tmp_path / "s"), val_items=3, shuffle=False)
    assert data.image_size == 12 and data.feature_cache.fingerprint == encoder.fingerprint()
    batch = data.collate([data.train_set[i] for i in range(3)])
    assert batch.prompts == prompts
    assert torch.equal(((batch.images + 1) * 127.5).round().byte().permute(0, 2, 3, 1), torch.from_numpy(np.stack(images)))
    fresh = encoder(prompts)
    got, want = batch.encoded.hidden_states.transpose(1, 2)[batch.encoded.mask], fresh.hidden_states.transpose(1, 2)[fresh.mask]
    assert torch.equal(batch.encoded.mask, fresh.mask) and torch.allclose(got, want.bfloat16().float())
    assert data.preview_prompts(2) == prompts[:2]


@pytest.mark.slow
def test_training_from_chunks_with_stored_features_matches_encoding_on_the_fly(repo, tmp_path):
    from kit.cli import main

    base = ["-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), "--train-items=16"]
    assert main(["shard", *base, "--out", str(tmp_path / "plain")]) == 0
    assert main(["cache", *base, "--format=litdata", "--dtype=float32", "--out", str(tmp_path / "feat")]) == 0

    def fit(folder):
        return fit_losses(repo, tmp_path, "--data=kit.data.StreamingImageTextData", f"--data.input_dir={folder}/train", f"--data.val_dir={folder}/val")

    plain, plain_head = fit(tmp_path / "plain")
    stored, stored_head = fit(tmp_path / "feat")
    assert len(plain) == 4 and stored == pytest.approx(plain, rel=1e-5, abs=1e-6)
    assert torch.allclose(stored_head, plain_head, rtol=1e-4, atol=1e-6)
    # the stored features are what training reads: pairing each image with another item's features moves the head elsewhere
    from litdata import StreamingDataset

    source = StreamingDataset(str(tmp_path / "feat" / "train"))
    meta = read_meta(tmp_path / "feat" / "train")
    originals = [source[i] for i in range(len(source))]
    items = [{**it, "hidden": nxt["hidden"], "kinds": nxt["kinds"]} for it, nxt in zip(originals, originals[1:] + originals[:1])]
    write_streaming(items, tmp_path / "swapped" / "train", fingerprint=meta["fingerprint"], storage_dtype="float32")
    source_val = StreamingDataset(str(tmp_path / "feat" / "val"))
    write_streaming([source_val[i] for i in range(len(source_val))], tmp_path / "swapped" / "val", fingerprint=meta["fingerprint"], storage_dtype="float32")
    _, swapped_head = fit(tmp_path / "swapped")
    assert (swapped_head - plain_head).abs().max() > 100 * (stored_head - plain_head).abs().max() + 1e-4, "training did not read the stored features"


def test_what_is_not_a_streaming_dataset_is_refused_clearly(tmp_path, repo):
    from kit.cli import main

    with pytest.raises(ValueError, match=r"a remote streaming dataset \(s3://bucket/data\) needs its image side"):
        StreamingImageTextData("s3://bucket/data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"is not a streaming dataset written by the kit \(no kit.json\); write one with `python -m kit shard`"):
        StreamingImageTextData(str(tmp_path / "empty"))
    write_streaming([{"image": np.zeros((4, 4, 3), np.uint8), "prompt": "x"}], tmp_path / "one")
    with pytest.raises(FileExistsError, match="already holds a streaming dataset"):
        write_streaming([{"image": np.zeros((4, 4, 3), np.uint8), "prompt": "x"}], tmp_path / "one")
    with pytest.raises(ValueError, match=r"item 0: expected an \(H, W, 3\) uint8 image, got shape \(4, 4\)"):
        write_streaming([{"image": np.zeros((4, 4), np.uint8), "prompt": "x"}], tmp_path / "two")
    (tmp_path / "out" / "train").mkdir(parents=True)
    assert main(["shard", "-c", str(repo / "recipes/lap.yaml"), "--out", str(tmp_path / "out")]) == 2
