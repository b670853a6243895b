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
    import sys

    sys.path.insert(0, str(README.parent / "benchmarks"))
    from quickstart import readme_first_command, split_install

    command = readme_first_command(README)
    assert "python -m kit fit --config recipes/lap.yaml" in command
    install, run = split_install(command)
    assert "pip install" in install and "kit" not in install.split("pip install")[0]
    assert run.endswith("python -m kit fit --config recipes/lap.yaml")
    assert f"{install} && {run}" == command
