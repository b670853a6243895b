"""Small conventions: usage lines that name `python -m kit`, `predict` that keeps its images, progress on long work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kit.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_verbs_usage_line_names_the_command_users_type():
    out = subprocess.run([sys.executable, "-m", "kit", "fit", "--help"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.startswith("usage: python -m kit [options] fit"), out[:80]
    assert "__main__.py" not in out


@pytest.mark.slow
def test_predict_writes_one_png_per_prompt_and_their_index(tmp_path, capsys):
    recipe = ["-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / "recipes/smoke.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    assert main(["fit", *recipe]) == 0
    ckpt = next(tmp_path.glob("**/last.ckpt"))
    assert main(["predict", *recipe, f"--ckpt_path={ckpt}", "--trainer.limit_predict_batches=2"]) == 0
    folder = next(tmp_path.glob("**/predictions"))
    index = [json.loads(line) for line in (folder / "prompts.jsonl").read_text().splitlines()]
    assert len(index) == 8, "two batches of the smoke recipe's 4"  # smoke: batch 4
    for row in index:
        image = np.asarray(Image.open(folder / row["file"]))
        assert image.shape == (48, 48, 3) and row["prompt"].strip()
    assert f"predict: 8 images -> {folder}" in capsys.readouterr().out


def test_caching_shows_its_progress(encoder, tmp_path, capsys):
    from kit.encoders.cache import build_cache

    build_cache(encoder, ["a red circle", "two blue squares", "a red circle"], tmp_path / "cache", batch_size=1, progress=True, log=lambda line: None)
    err = capsys.readouterr().err
    assert "encoding" in err and "2/2" in err, err[-200:]


@pytest.mark.slow
def test_the_verbs_do_not_import_the_dispatcher():
    """`kit.verbs` is registered by real imports and builds recipes through `kit.runner`: importing every
    verb leaves `kit.cli` (which imports the verbs) unimported, so there is no import loop."""
    code = "import sys, kit.verbs; assert 'kit.cli' not in sys.modules, 'a verb imports kit.cli'; print(sorted(kit.verbs.VERBS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "evaluate" in out and "sample" in out


def test_no_file_of_the_repository_cites_one_outside_it():
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    texts = [p for p in tracked if p.endswith((".py", ".md", ".yaml", ".toml", ".ipynb", ".sh")) and (REPO / p).is_file()]
    outside = ["/".join(("shared", name)) for name in ("research", "DESIGN", "ENVIRONMENT")]  # spelt apart: this file names them
    citing = [p for p in texts if any(ref in (REPO / p).read_text(errors="ignore") for ref in outside)]
    assert not citing, f"these files cite files outside the repository: {citing}"
