"""Real-image folders: captions read from a JSON-lines index or sidecar files; an image that cannot
be decoded is skipped and counted, not a crash."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from kit.data.folder import ImageFolderData, collate_skipping


def _folder(root, n_good: int = 5, corrupt: bool = True):
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_good):
        Image.fromarray(np.full((40, 48, 3), 30 * i, np.uint8)).save(root / f"img{i}.png")
        lines.append({"file": f"img{i}.png", "caption": f"a picture number {i}"})
    if corrupt:
        (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        lines.insert(1, {"file": "broken.png", "caption": "a broken picture"})
    (root / "captions.jsonl").write_text("\n".join(json.dumps(entry) for entry in lines))
    return root


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    data = ImageFolderData(str(_folder(tmp_path / "d")), image_size=32, batch_size=8, val_fraction=0.2)
    with pytest.warns(UserWarning, match=r"skipping an image that cannot be decoded: .*broken.png"):
        batch = next(iter(data.train_dataloader()))
    assert batch.skipped == 1 and batch.images.shape == (4, 3, 32, 32) and len(batch.prompts) == 4
    assert "a broken picture" not in batch.prompts
    assert collate_skipping([None, None]).skipped == 2


def test_sidecar_captions_and_clear_errors(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "a.png")
    (root / "a.txt").write_text("a black square\n")
    data = ImageFolderData(str(root), image_size=8)
    assert data.train_set.pairs == [(root / "a.png", "a black square")] and len(data.val_set) == 0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderData(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no captioned images"):
        ImageFolderData(str(tmp_path / "empty"))


def test_fit_on_a_folder_logs_the_skipped_images(tmp_path, repo):
    from kit.cli import run_cli

    root = _folder(tmp_path / "d", n_good=7)
    args = ["fit", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    args += ["--data=kit.data.ImageFolderData", f"--data.root={root}", "--data.image_size=32", "--data.batch_size=8", "--data.val_fraction=0.2"]
    args += ["--trainer.max_steps=1", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0"]
    with pytest.warns(UserWarning, match="cannot be decoded"):
        cli = run_cli(args)
    assert cli.model.skipped_images == 1
    assert cli.trainer.callback_metrics["data/skipped_images"] == 1


@pytest.mark.slow
def test_a_batch_with_no_decodable_image_is_skipped_under_every_callback(tmp_path, repo):
    """batch_size 1 over a folder with a broken image: one step has nothing to train on. It is skipped
    and counted, and the recipe's callbacks (throughput, sample grids, layer weights) survive it."""
    from kit.cli import run_cli

    root = _folder(tmp_path / "d", n_good=5)
    args = ["fit", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/smoke.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    args += ["--data=kit.data.ImageFolderData", f"--data.root={root}", "--data.image_size=32", "--data.batch_size=1", "--data.val_fraction=0.2"]
    args += ["--trainer.max_steps=6", "--trainer.limit_val_batches=1"]
    with pytest.warns(UserWarning, match="cannot be decoded"):
        cli = run_cli(args)
    assert cli.model.skipped_images == 1, "the broken image's step was reached, skipped and counted"
    assert cli.trainer.global_step >= 5


def test_hugging_face_imagefolder_metadata_is_read(tmp_path):
    """`metadata.jsonl` with `file_name` (relative to its own folder, in split folders too) and a caption column."""
    root = tmp_path / "hf"
    (root / "train" / "images").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(root / "train" / "images" / f"{i}.png")
    rows = [{"file_name": f"images/{i}.png", "text": f"picture {i}", "other": i} for i in range(3)]
    (root / "train" / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = ImageFolderData(str(root), image_size=8, val_fraction=0.34)
    assert data.train_set.pairs == [(root / "train" / "images" / "0.png", "picture 0"), (root / "train" / "images" / "1.png", "picture 1")]
    assert data.val_set.pairs == [(root / "train" / "images" / "2.png", "picture 2")]
    assert next(iter(data.train_dataloader())).images.shape == (2, 3, 8, 8)
    named = ImageFolderData(str(root), image_size=8, caption_column="other")
    assert [c for _, c in named.train_set.pairs] == ["0", "1"]
    with pytest.raises(
        ValueError, match=r"metadata.jsonl:1: expected 'file_name' and a caption column \('missing'\), got the keys \['file_name', 'other', 'text'\]"
    ):
        ImageFolderData(str(root), caption_column="missing")
    (root / "train" / "metadata.jsonl").write_text(json.dumps(rows[0]) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r"metadata.jsonl:2: expected a JSON object, got list"):
        ImageFolderData(str(root))
