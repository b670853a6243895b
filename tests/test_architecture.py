"""The layout's rules: no import cycle, no private name across modules, `kit/tasks/` holds only tasks, and the
one adapter of private API (`kit.compat`) still matches the installed Lightning."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

REPO = Path(__file__).resolve().parents[1]


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root`."""
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Which of the package's modules each module imports, at any depth of its code (imports inside functions
    count), with the packages whose `__init__` such an import runs."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                for k in range(2, len(parts) + 1):  # importing a.b.c runs a.b's __init__ first
                    ancestor = ".".join(parts[:k])
                    if ancestor in modules and ancestor != name and not name.startswith(ancestor + "."):
                        graph[name].add(ancestor)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text("from pkg import a\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_kit_has_no_import_cycle():
    assert cycles(import_graph(REPO / "kit")) == [], "import cycles in kit/ (imports inside functions count)"


def private_imports(path: Path) -> list[str]:
    """`from module import _name` of another module's private name, in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found += [
                f"{path.relative_to(REPO)}:{node.lineno} {node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")
            ]
    return found


def test_no_private_name_is_imported_across_modules():
    files = [p for folder in ("kit", "tests", "benchmarks", "kernels") for p in (REPO / folder).rglob("*.py")]
    found = [hit for path in files if path != REPO / "kit" / "compat.py" for hit in private_imports(path)]
    assert not found, f"private names imported from other modules (kit.compat owns the private API the kit needs): {found}"


def test_kit_tasks_holds_only_tasks():
    """Every class defined in `kit/tasks/` is a task, a task's part or a plain helper: no DataModule, callback
    or other LightningModule."""
    from kit.tasks import DiffusionTask

    for name in [m for m in module_names(REPO / "kit") if m == "kit.tasks" or m.startswith("kit.tasks.")]:
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and cls.__module__ == name:
                assert not issubclass(cls, L.LightningDataModule | L.Callback), f"{name}.{cls.__name__} belongs in kit.data or kit.callbacks"
                assert not issubclass(cls, L.LightningModule) or issubclass(cls, DiffusionTask), f"{name}.{cls.__name__} is a LightningModule but no task"


def test_an_old_class_path_names_its_new_home():
    import kit.tasks

    with pytest.raises(ImportError, match=r"kit\.tasks\.ShapesDataModule has moved: use kit\.data\.ShapesDataModule"):
        kit.tasks.ShapesDataModule  # noqa: B018
    with pytest.raises(AttributeError):
        kit.tasks.NoSuchThing  # noqa: B018
    run = subprocess.run(
        [sys.executable, "-m", "kit", "fit", "-c", "recipes/lap.yaml", "--data.class_path=kit.tasks.ShapesDataModule", "--print_config"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode != 0 and "error: kit.tasks.ShapesDataModule has moved: use kit.data.ShapesDataModule" in run.stderr, run.stderr[-400:]
    run = subprocess.run(
        [sys.executable, "-m", "kit", "fit", "-c", "recipes/lap.yaml", "--data.class_path=kit.tasks.data.ShapesDataModule", "--print_config"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert "error: kit.tasks.data.ShapesDataModule has moved: use kit.data.shapes.ShapesDataModule" in run.stderr, run.stderr[-400:]


def test_the_private_api_adapter_matches_the_installed_lightning():
    """`kit.compat` relies on Lightning internals: the CLI's merge step and the hyperparameter context."""
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.strategies import DDPStrategy

    from kit.compat import RecipeDecidesModel, attached_trainer, start_method, under_cli
    from kit.tasks import TextToImage

    assert "self._parse_ckpt_path()" in inspect.getsource(LightningCLI.__init__), "LightningCLI no longer merges --ckpt_path in _parse_ckpt_path"
    assert RecipeDecidesModel._parse_ckpt_path is not LightningCLI._parse_ckpt_path
    assert under_cli() is False
    assert start_method(DDPStrategy(start_method="spawn")) == "spawn" and start_method(object()) is None
    task = TextToImage.__new__(TextToImage)
    L.LightningModule.__init__(task)
    assert attached_trainer(task) is None


def test_under_cli_is_true_while_the_cli_builds_a_task():
    from kit.runner import run_cli

    cli = run_cli(["-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / "recipes/smoke.yaml")], run=False)
    assert cli.model.hparams["encoder"]["class_path"].endswith("FrozenEncoder"), "the CLI records the parsed recipe, parts included"
