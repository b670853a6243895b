"""The README's commands and code are the ones that work.

Its figures, links and length are checked with the rest of the manual in `tests/test_docs.py`.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def test_readme_opens_with_the_two_commands():
    head = README.read_text().split("---")[0]
    assert "python -m kit fit --config recipes/lap.yaml" in head
    assert ".venv/bin/python -m pytest -q" in head
    ci = (REPO / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in ci, ".ci/run runs exactly the README's test command"


def test_readme_names_the_fast_loop():
    assert '.venv/bin/python -m pytest -q -m "not slow"' in README.read_text()


def test_the_quickstart_benchmark_times_the_readmes_own_command():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kit_benchmark_quickstart", REPO / "benchmarks" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    command = quickstart.readme_first_command(README)
    assert command == 'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/python -m kit fit --config recipes/lap.yaml'
    install, run = quickstart.split_install(command)
    assert "pip install" in install
    assert run.endswith("python -m kit fit --config recipes/lap.yaml")
    assert f"{install} && {run}" == command


def test_the_readme_python_block_uses_the_loading_api():
    """The README's Python example loads a checkpoint with `kit.loading.load_checkpoint` and calls `generate`;
    it compiles, and the names it uses exist once the package imports."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README shows one Python example"
    (block,) = blocks
    compile(block, str(README), "exec")
    assert "from kit.loading import load_checkpoint" in block and ".generate([" in block


def test_the_readme_swap_commands_name_real_recipes():
    """Every recipe file the README's commands name exists."""
    text = README.read_text()
    named = set(re.findall(r"recipes/[\w/.-]+\.yaml", text))
    assert named, "the README names recipes"
    missing = sorted(p for p in named if not (REPO / p).is_file())
    assert not missing, missing
