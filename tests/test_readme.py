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
