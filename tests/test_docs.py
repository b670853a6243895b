"""The manual (README.md, docs/*.md) states only figures its results files hold, links only what exists.

How a page ties a measured figure to its results file
-----------------------------------------------------
Every figure presented as a measurement is tied to ONE key of ONE results file (JSON, JSON lines or CSV),
in one of two ways:

1. **Tables.** A table whose last column is headed `source` holds, in that column, the file and, after
   `: `, the key paths of the row's figures in the order they are written:

       | run | overall | DPG facts | source |
       |---|---|---|---|
       | `lap.yaml`, seed 0 | 0.543 | 0.979 | results/quickstart_eval.json: overall, dpg.score |

   Several files are separated by `; ` (`results/a.json: overall; results/b.json: overall`). The row's
   figures are the numbers of every cell but the first (the row's label) and the source cell, in reading
   order; code spans are not figures, and a cell of `-` has none. Figures and keys pair one to one.

2. **Prose.** A figure is written as a link to the file whose title is the key:
   `[0.543](../results/quickstart_eval.json "overall")` (the target is relative to the page, like any link).

Key paths are dot-separated; list indices and JSON-lines line numbers (from 0) are numbers; a key that
itself holds dots (`gain_t0.95`, `0.3`) is matched whole. In a CSV file the first part names the row by its
first column and the rest names the column (`lap.eval/overall final`).

A figure equals its value at its written precision: `0.543` is `f"{value:.3f}"`, `1,040` is
`f"{value:.0f}"`, `-0.278` keeps its sign; a trailing `x` (a ratio) is not part of the figure.

Outside those two forms (and outside code), a page holds no number with two or more decimals: such a figure
would be unsourced. Integers outside them (steps, seeds, prompt counts) are settings, not measurements.
"""

import csv
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
CHANGELOG = REPO / "CHANGELOG.md"

NUMBER = re.compile(r"(?<![\w.])(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?!\.?\d)")
FIGURE_LINK = re.compile(r"\[(-?[\d,]+(?:\.\d+)?)x?\]\(([^)\s]+) \"([^\"]+)\"\)")
VERSION = re.compile(r"\b(?:Python|PyTorch|torch|Triton|CUDA|version)\s+\d+(?:\.\d+)+|\b\d+\.\d+\.\d+\b")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?: \"[^\"]*\")?\)")


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


# ---------------------------------------------------------------- reading results files


def _load(path: Path):
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], rows[1:]
        return {row[0]: dict(zip(header[1:], row[1:])) for row in body}
    raise AssertionError(f"{path}: a results file is .json, .jsonl or .csv")


_CACHE: dict[Path, object] = {}


def _value(path: Path, key: str):
    """The value at a dot-separated key path; a key holding dots is matched whole (longest first)."""
    if path not in _CACHE:
        _CACHE[path] = _load(path)
    node, parts = _CACHE[path], key.split(".")
    while parts:
        if isinstance(node, list):
            head = parts.pop(0)
            if not head.isdigit() or int(head) >= len(node):
                raise KeyError(f"{key!r}: no item {head!r} in a list of {len(node)}")
            node = node[int(head)]
            continue
        if not isinstance(node, dict):
            raise KeyError(f"{key!r}: {'.'.join(parts)!r} goes below a leaf")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in node:
                node, parts = node[".".join(parts[:n])], parts[n:]
                break
        else:
            raise KeyError(f"{key!r}: no key {parts[0]!r} (there: {sorted(node)[:12]})")
    return node


def _equal(figure: str, value) -> bool:
    """`figure` as written (e.g. '0.543', '1,040', '-0.278') is `value` at the figure's precision."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    plain = figure.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    written = f"{float(value):.{decimals}f}"
    if written == f"-{0:.{decimals}f}":
        written = written[1:]
    return written == plain


# ---------------------------------------------------------------- reading pages


def _without_code(text: str) -> str:
    """The page with fenced blocks, indented code blocks and code spans blanked out (lines kept)."""
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out, in_code, previous_blank = [], False, True
    for line in text.split("\n"):
        if line.startswith("    ") and (in_code or previous_blank):
            in_code = True
            out.append("")
        else:
            in_code = in_code and not line.strip()
            out.append(line)
        previous_blank = not line.strip()
    return re.sub(r"`[^`\n]*`", "``", "\n".join(out))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _sourced_tables(text: str):
    """(first line number, header, rows) of each table whose last column is `source`; rows as (line number, cells)."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s|:-]+\|\s*$", lines[i + 1]):
            header, start, rows = _cells(lines[i]), i, []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append((i + 1, _cells(lines[i])))
                i += 1
            if header[-1].lower() == "source":
                yield start, i, header, rows
        else:
            i += 1


def _figures(cell: str) -> list[str]:
    cell = re.sub(r"`[^`]*`", "", cell)
    if cell.strip() in ("", "-"):
        return []
    return NUMBER.findall(cell)


def _source_keys(cell: str) -> list[tuple[str, str]]:
    """`results/a.json: k1, k2; results/b.json: k3` -> [(file, k1), (file, k2), (file b, k3)]."""
    pairs = []
    for part in cell.split("; "):
        file, sep, keys = part.partition(": ")
        assert sep, f"a source cell names a file and its keys after ': ', got {part!r}"
        pairs += [(file.strip().strip("`"), key.strip()) for key in keys.split(", ")]
    return pairs


def _check_figure(page: Path, where: str, figure: str, file: str, key: str, relative_to: Path) -> str | None:
    path = (relative_to / file).resolve()
    if REPO not in path.parents or not path.is_file():
        return f"{_page_id(page)}:{where}: {file} is not a file of the repository"
    try:
        value = _value(path, key)
    except KeyError as e:
        return f"{_page_id(page)}:{where}: {file}: {e}"
    if not _equal(figure, value):
        return f"{_page_id(page)}:{where}: {figure} is not {file} {key!r} ({value!r})"
    return None


def _table_problems(page: Path) -> tuple[list[str], int]:
    problems, count = [], 0
    for _, _, header, rows in _sourced_tables(_without_code_keep_tables(page.read_text())):
        for line_no, cells in rows:
            if len(cells) != len(header):
                problems.append(f"{_page_id(page)}:{line_no}: {len(cells)} cells under a header of {len(header)}")
                continue
            figures = [f for cell in cells[1:-1] for f in _figures(cell)]
            keys = _source_keys(cells[-1])
            if len(figures) != len(keys):
                problems.append(f"{_page_id(page)}:{line_no}: {len(figures)} figures {figures} but {len(keys)} keys")
                continue
            for figure, (file, key) in zip(figures, keys, strict=True):
                problem = _check_figure(page, str(line_no), figure, file, key, REPO)
                if problem:
                    problems.append(problem)
            count += len(figures)
    return problems, count


def _without_code_keep_tables(text: str) -> str:
    """Fenced and indented code blanked; code spans kept (table cells strip them themselves)."""
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return text


def _link_problems(page: Path) -> tuple[list[str], int]:
    problems, count = [], 0
    text = _without_code(page.read_text())
    for line_no, line in enumerate(text.split("\n"), 1):
        for figure, target, key in FIGURE_LINK.findall(line):
            problem = _check_figure(page, str(line_no), figure, target, key, page.parent)
            if problem:
                problems.append(problem)
            count += 1
    return problems, count


# ---------------------------------------------------------------- the checks


def test_the_figure_reader_reads_what_pages_write():
    assert _figures("0.543 / 0.979, 684 s; 1.04x (0.42-0.92) [-0.278, 0.203] 1,040") == [
        "0.543", "0.979", "684", "1.04", "0.42", "0.92", "-0.278", "0.203", "1,040"
    ]  # fmt: skip
    assert _figures("`recipes/lap.yaml` -") == [] and _figures("-") == []
    assert _equal("0.543", 0.5428571) and _equal("0.312", 0.3125) and _equal("1,040", 1040.3) and _equal("-0.278", -0.27839)
    assert _equal("0.000", 0.0) and _equal("0.000", -0.0001) and _equal("684", "684.0")
    assert not _equal("0.544", 0.5428571) and not _equal("16", 160) and not _equal("0.54", "n/a")
    assert _source_keys("results/a.json: x.y, z; results/b.jsonl: 0.gain_t0.95") == [
        ("results/a.json", "x.y"), ("results/a.json", "z"), ("results/b.jsonl", "0.gain_t0.95")
    ]  # fmt: skip
    assert FIGURE_LINK.findall('is [0.543](../results/q.json "overall") and [1.04x](r.json "speedup")') == [
        ("0.543", "../results/q.json", "overall"), ("1.04", "r.json", "speedup")
    ]  # fmt: skip


def test_keys_with_dots_and_list_indices_resolve(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"by_time": {"0.3": {"ratio": 0.9}}, "rows": [{"gain_t0.95": 0.5}]}))
    assert _value(f, "by_time.0.3.ratio") == 0.9 and _value(f, "rows.0.gain_t0.95") == 0.5
    with pytest.raises(KeyError):
        _value(f, "rows.1.gain_t0.95")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_sourced_figure_is_its_key(page):
    """Each figure of a `source` table and each figure link equals its named key at its written precision."""
    table_problems, _ = _table_problems(page)
    link_problems, _ = _link_problems(page)
    assert not table_problems + link_problems, "\n".join(table_problems + link_problems)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_no_unsourced_figures(page):
    """Outside code, `source` tables and figure links, no number has two or more decimals."""
    text = _without_code(page.read_text())
    lines = text.split("\n")
    for start, end, _, _ in _sourced_tables(text):
        for i in range(start, end):
            lines[i] = ""
    loose = []
    for line_no, line in enumerate(lines, 1):
        line = FIGURE_LINK.sub("", line)
        line = LINK.sub(lambda m: m.group(0).split("](")[0], line)  # link targets are paths, not figures
        line = VERSION.sub("", line)
        loose += [f"{_page_id(page)}:{line_no}: {m}" for m in re.findall(r"(?<![\w.])\d+\.\d{2,}(?!\.?\d)", line)]
    assert not loose, "figures with no source (put them in a source table or a figure link):\n" + "\n".join(loose)


def test_the_manual_ties_its_figures():
    """The pages do cite their figures this way (the checks above are not vacuous)."""
    readme = _table_problems(README)[1] + _link_problems(README)[1]
    docs = sum(_table_problems(p)[1] + _link_problems(p)[1] for p in DOCS)
    assert readme >= 10 and docs >= 200, (readme, docs)


@pytest.mark.parametrize("page", [*PAGES, CHANGELOG], ids=_page_id)
def test_every_relative_link_exists(page):
    missing = []
    for line_no, line in enumerate(_without_code(page.read_text()).split("\n"), 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if REPO not in path.parents or not path.exists():
                missing.append(f"{_page_id(page)}:{line_no}: {target}")
    assert not missing, "links to nothing in the repository:\n" + "\n".join(missing)


HISTORY = [
    (r"\bissues?\s*#?\d+", "an issue number"),
    (r"(?<![\w&/])#\d+\b", "an issue reference"),
    (r"\bsessions?\b", "the word 'session'"),
    (r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", "a commit hash"),
]


@pytest.mark.parametrize("page", [*PAGES, CHANGELOG], ids=_page_id)
def test_pages_describe_the_kit_not_its_history(page):
    found = []
    for line_no, line in enumerate(page.read_text().split("\n"), 1):
        for pattern, what in HISTORY:
            found += [f"{_page_id(page)}:{line_no}: {what}: {m.group(0)!r}" for m in re.finditer(pattern, line, flags=re.I)]
    assert not found, "\n".join(found)


def test_the_readme_is_a_front_page():
    lines = README.read_text().split("\n")
    assert len(lines) - (lines[-1] == "") <= 150, f"README.md has {len(lines)} lines"


def test_the_docs_index_links_every_page():
    index = (REPO / "docs" / "README.md").read_text()
    linked = {Path(t).name for t in LINK.findall(index)}
    assert {p.name for p in DOCS} - {"README.md"} <= linked, sorted({p.name for p in DOCS} - linked - {"README.md"})


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_python_block_is_python(page):
    for block in _python_blocks(page):
        compile(block, str(page), "exec")


def test_the_fusion_head_example_runs():
    """docs/fusion-heads.md's example registers `max_over_layers` and passes the head contract."""
    from kit.fusion import FUSION_HEADS

    page = REPO / "docs" / "fusion-heads.md"
    blocks = _python_blocks(page)
    assert blocks, "docs/fusion-heads.md shows a Python example"
    try:
        for block in blocks:
            exec(compile(block, str(page), "exec"), {"__name__": "docs_example"})
        assert "max_over_layers" in FUSION_HEADS
    finally:  # keep the example's head out of the other tests' registry
        if "max_over_layers" in FUSION_HEADS:
            FUSION_HEADS.unregister("max_over_layers")


def test_the_shapes_vlm_record_is_of_the_shipped_weights():
    """docs/encoders-and-verifi.md quotes results/vlm.json and results/vlm_pretrain.json as the shipped VLM's."""
    from kit.encoders.frozen import resolve_model_path, weights_digest

    digest = weights_digest(resolve_model_path("kit:shapes-vlm"), None)
    for name in ("vlm.json", "vlm_pretrain.json"):
        assert json.loads((REPO / "results" / name).read_text())["weights"] == digest, name
