"""The README's code runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    from kit.fusion import FUSION_HEADS

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README shows at least one Python example"
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})
        assert "max_over_layers" in FUSION_HEADS
    finally:  # keep the example's head out of the other tests' registry
        if "max_over_layers" in FUSION_HEADS:
            FUSION_HEADS.unregister("max_over_layers")


def test_readme_opens_with_the_two_commands():
    head = README.read_text().split("---")[0]
    assert "python -m kit fit --config recipes/lap.yaml" in head
    assert ".venv/bin/python -m pytest -q" in head
    ci = (README.parent / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in ci, ".ci/run runs exactly the README's test command"


def test_the_quickstart_benchmark_times_the_readmes_own_command():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kit_benchmark_quickstart", README.parent / "benchmarks" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    command = quickstart.readme_first_command(README)
    assert "python -m kit fit --config recipes/lap.yaml" in command
    install, run = quickstart.split_install(command)
    assert "pip install" in install
    assert run.endswith("python -m kit fit --config recipes/lap.yaml")
    assert f"{install} && {run}" == command


def _leaves(value):
    """Every number and string inside a JSON value."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _matches(figure: str, leaves: list) -> bool:
    """A README figure (as written, e.g. '0.227', '705', '1.04') equals some leaf at the figure's precision."""
    decimals = len(figure.split(".")[1]) if "." in figure else 0
    target = float(figure.replace(",", ""))
    for leaf in leaves:
        if isinstance(leaf, bool):
            continue
        if isinstance(leaf, (int, float)) and round(float(leaf), decimals) == target:
            return True
        if isinstance(leaf, str) and re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", leaf):
            return True
    return False


def test_every_figure_in_the_measured_table_is_in_its_results_file():
    """Each row of the README's Measured table names the results file(s) its figures come from
    (`results/...`), and every number in its 'Measured' cell is found in one of them."""
    import json

    section = README.read_text().split("## Measured", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| What") and not line.startswith("|---")]
    assert rows, "the README has a Measured table"
    for row in rows:
        what, measured = (cell.strip() for cell in row.strip("|").split("|")[:2])
        files = sorted(set(re.findall(r"results/[\w./-]+\.json", row)))
        assert files, f"a Measured row names no results file: {what[:60]!r}"
        leaves = [leaf for f in files for leaf in _leaves(json.loads((README.parent / f).read_text()))]
        for figure in _figures(measured):
            assert _matches(figure, leaves), f"{figure} in {what[:60]!r} is not in {files}"


def _figures(cell: str) -> list[str]:
    """The numbers of a table cell as written ('1.04x' -> '1.04', '705 s' -> '705'); code spans and
    commit hashes are not figures."""
    cell = re.sub(r"`[^`]*`", "", cell)
    cell = re.sub(r"\bcommit [0-9a-f]{7,}\b", "", cell)
    return [m.rstrip(",") for m in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\d.]*\d)", cell)]


def test_the_figure_reader_reads_what_the_table_writes():
    assert _figures("1.04x (1.667 vs 1.599 steps/s, 1 thread); commit d9fb1df, **705 s** `x=3`") == ["1.04", "1.667", "1.599", "1", "705"]
    leaves = [0.2271, 1.04, "install 160 s"]
    assert _matches("0.227", leaves) and _matches("1.04", leaves) and _matches("160", leaves)
    assert not _matches("0.237", leaves) and not _matches("1.05", leaves) and not _matches("16", leaves)


ORACLE_ROWS = {
    "Oracle exact-scene accuracy": "clean",
    "... with Gaussian noise": "noise",
    "... with Gaussian blur": "blur",
    "... with colour jitter": "colour_jitter",
    "... with all three": "all",
    "... with a strong blur": "strong_blur",
    "... down-sampled": "resample",
    "... JPEG": "jpeg",
    "... redrawn": "redrawn",
}


def test_the_oracle_table_is_its_results_file():
    """Each cell of the README's oracle table is `results/oracle.json`'s exact-scene accuracy for
    that perturbation and size, at the table's precision; every perturbation has its row."""
    import json

    report = json.loads((README.parent / "results" / "oracle.json").read_text())
    text = README.read_text()
    table = text.split("| | 32 px | 48 px (default) | 64 px |", 1)[1].split("\n\n", 1)[0]
    seen = set()
    for line in table.splitlines():
        label = line.strip("|").split("|")[0].strip()
        key = next((k for prefix, k in ORACLE_ROWS.items() if label.startswith(prefix)), None)
        if key is None:
            continue
        seen.add(key)
        cells = [c.strip() for c in line.strip().strip("|").split("|")[1:4]]
        for size, cell in zip(("32", "48", "64"), cells, strict=True):
            assert cell == f"{report['sizes'][size][key]['exact_scene']:.3f}", (label, size, cell)
    assert seen == set(ORACLE_ROWS.values()) == set(report["sizes"]["48"]), seen
    assert f"{report['n']} clean renders per size" in text


def test_the_shapes_vlm_table_is_its_results_file():
    """Every three-decimal figure in the README's shapes-VLM table is in `results/vlm.json`, and the
    paragraph under it names the file's conversation count and seconds."""
    import json

    report = json.loads((README.parent / "results" / "vlm.json").read_text())
    leaves = list(_leaves(report))
    section = README.read_text().split("| Task (held-out scenes) | Score | Breakdown |", 1)[1].split("\n\n", 1)
    rows = [line for line in section[0].splitlines() if line.startswith("| ") and not line.startswith("|---")]
    assert len(rows) == 5, "describe, rewrite, suite rewrites, questions, edits"
    for row in rows:
        figures = [f for f in _figures(row) if re.fullmatch(r"\d\.\d{3}", f)]
        assert figures, row
        for figure in figures:
            assert _matches(figure, leaves), f"{figure} in {row[:50]!r} is not in results/vlm.json"
    after = section[1][:400]
    assert f"{report['per_task']} conversations per task" in after and f"{report['seconds']} s" in after


def test_the_shapes_vlm_paragraph_is_its_pretraining_record():
    """Size, parameters, steps and minutes of the shipped VLM, as the README states them, are
    `results/vlm_pretrain.json`'s, and that record is of the weights shipped (its digest)."""
    import json

    from kit.encoders.frozen import _weights_digest, resolve_model_path

    record = json.loads((README.parent / "results" / "vlm_pretrain.json").read_text())
    paragraph = README.read_text().split("## The shapes VLM", 1)[1].split("It learns four tasks", 1)[0]
    assert f"({record['size_mb']} MB; {record['parameters_millions']} M parameters)" in paragraph
    assert f"{record['steps']:,} steps" in paragraph and f"{record['train_minutes']} minutes" in paragraph
    assert record["weights"] == _weights_digest(resolve_model_path("kit:shapes-vlm"), None), "the record is of the shipped weights"


def test_the_opening_minutes_are_the_quickstart_measurement():
    """'about N minutes ... install included' in the README's first lines is the clean-clone measurement, rounded."""
    import json

    measured = json.loads((README.parent / "results" / "quickstart_eval.json").read_text())["measured"]
    head = README.read_text().split("---")[0]
    minutes = int(re.search(r"about (\d+) minutes on 2 cores, install included", head).group(1))
    assert minutes == round(measured["total_seconds"] / 60), (minutes, measured["total_seconds"])


def test_the_leaky_vlm_comparison_is_read_from_both_files():
    """The retrained-against-leaky sentence quotes `results/vlm.json` then `results/vlm_leaky.json`."""
    import json

    new, old = (json.loads((README.parent / "results" / f).read_text()) for f in ("vlm.json", "vlm_leaky.json"))
    text = " ".join(README.read_text().split())
    for key, value in (("rewrite", "consistency"), ("rewrite_suite", "consistency"), ("edit", "exact"), ("qa", "accuracy")):
        assert f"{new[key][value]:.3f} against {old[key][value]:.3f}" in text, key
