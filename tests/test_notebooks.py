"""The notebooks run top to bottom (at a handful of steps and a tiny model)."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_found():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_prototype_fusion_head.ipynb", "03_editing.ipynb", "04_unidiffuser.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_NB_STEPS", "3")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the inline backend, so figures become outputs
    monkeypatch.setenv("KIT_NB_RUNS", str(tmp_path / "runs"))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    text = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    if path.stem.startswith("01"):  # the world, the samples and the layer weights are drawn, and the score is printed
        assert len(images) == 3, f"{len(images)} figures"
        assert re.search(r"overall \d\.\d{3} on 14 prompts", text), text[-500:]
    if path.stem.startswith("02"):
        table = (tmp_path / "runs/prototype_report/compare.md").read_text()
        assert "| lap | 1 |" in table and "| gated_last_two | 1 |" in table  # one row per head, one seed each
    if path.stem.startswith("03"):  # the edits and the edited scenes are drawn, and the editing score is printed
        assert len(images) == 2, f"{len(images)} figures"
        assert re.search(r"success \d\.\d{3}  preservation \d\.\d{3} on 16 cases", text), text[-500:]
    if path.stem.startswith("04"):  # every mode's samples are drawn, and the joint figures are printed
        assert len(images) == 1, f"{len(images)} figures"
        assert re.search(r"t2i overall \d\.\d{3}  i2t exact \d\.\d{3}  joint consistency \d\.\d{3}  decoder exact \d\.\d{3}", text), text[-500:]


@pytest.mark.slow
def test_importing_the_kit_leaves_the_matplotlib_backend_alone():
    """The kit draws with `matplotlib.figure.Figure` (no pyplot), so importing it in a notebook keeps
    the inline backend and the notebook's own figures keep showing (a forced Agg hid them)."""
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg');"
        "import kit.cli, kit.callbacks.monitors, kit.analysis.compare, kit.analysis.learning_curve;"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]
