"""Real edit triplets from a folder: read like ImageFolderData, edits with an undecodable image skipped and counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from kit.data import EditFolderData


def _triplets(root, n: int = 6, broken: str | None = "source"):
    """`n` good edits (the second with two sources, one of another size and mode) and, if asked, one whose source or target is corrupt."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        Image.fromarray(np.full((40, 48, 3), 20 * i, np.uint8)).save(root / f"src{i}.png")
        Image.fromarray(np.full((48, 40, 4), 20 * i + 5, np.uint8), "RGBA").save(root / f"tgt{i}.png")
        source = [f"src{i}.png", "src0.png"] if i == 1 else f"src{i}.png"
        lines.append({"source": source, "instruction": f"edit number {i}", "target": f"tgt{i}.png"})
    if broken:
        (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        bad = {"source": "broken.png", "instruction": "a broken edit", "target": "tgt0.png"}
        if broken == "target":
            bad = {"source": "src0.png", "instruction": "a broken edit", "target": "broken.png"}
        lines.insert(2, bad)
    (root / "edits.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    return root


@pytest.mark.parametrize("broken", ["source", "target"])
def test_edits_with_an_undecodable_image_are_skipped_and_counted(tmp_path, broken):
    data = EditFolderData(str(_triplets(tmp_path / "d", broken=broken)), image_size=16, batch_size=8, val_fraction=0.2)
    assert len(data.train_set) == 6 and len(data.val_set) == 1
    with pytest.warns(UserWarning, match=r"cannot be decoded: .*broken.png"):
        batch = next(iter(data.train_dataloader()))
    assert batch.skipped == 1 and batch.images.shape == (5, 3, 16, 16)
    assert "a broken edit" not in batch.prompts
    refs = dict(zip(batch.prompts, batch.references))
    assert len(refs["edit number 1"]) == 2 and len(refs["edit number 0"]) == 1
    assert refs["edit number 1"][0].shape == (3, 16, 16)  # every source read at the training size, RGB
    target = batch.images[batch.prompts.index("edit number 3")]
    assert torch_close(target, (20 * 3 + 5) / 127.5 - 1)  # the target's pixels, alpha dropped
    assert [it["prompt"] for it in data.preview_items(4)] == ["edit number 5"] and data.preview_prompts(2) == ["edit number 5"]


def torch_close(image, value: float) -> bool:
    return bool((image - value).abs().max() < 1e-5)


def test_a_malformed_index_names_the_line(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="no edits.jsonl"):
        EditFolderData(str(root))
    (root / "edits.jsonl").write_text(
        json.dumps({"source": "a.png", "instruction": "x", "target": "b.png"}) + "\n" + json.dumps({"source": [], "instruction": "y", "target": "c.png"})
    )
    with pytest.raises(ValueError, match=r"edits.jsonl:2: expected 'source'"):
        EditFolderData(str(root))
    (root / "edits.jsonl").write_text(json.dumps({"sources": ["a.png"], "prompt": "x", "target": "b.png"}))
    assert EditFolderData(str(root)).train_set.pairs[0].instruction == "x"  # the accepted synonyms


def test_edit_fine_tuning_on_a_folder_runs_from_the_cli(tmp_path, repo):
    from kit.cli import run_cli

    root = _triplets(tmp_path / "d", n=7)
    args = ["fit", "-c", str(repo / "recipes/lap.yaml"), "-c", str(repo / "recipes/edit.yaml"), "-c", str(repo / "recipes/smoke.yaml")]
    args += [f"--trainer.logger.init_args.save_dir={tmp_path}", "--data=kit.data.EditFolderData", f"--data.root={root}", "--data.image_size=48"]
    args += ["--data.batch_size=8", "--data.val_fraction=0.2", "--trainer.max_steps=1", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"]
    args += ["--trainer.limit_val_batches=0"]
    with pytest.warns(UserWarning, match="cannot be decoded"):
        cli = run_cli(args)
    assert cli.model.skipped_images == 1 and cli.trainer.global_step == 1
