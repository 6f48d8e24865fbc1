"""Every notebook: one `parameters` cell of typed literals that papermill reads in full, no
outputs committed, and the teaching shape (title, Reads:/Writes:, a sentence before each cell)."""

import ast
import html
import json
import re

import nbformat
import papermill as pm
import pytest

from medsafe_utils.pipeline.run import notebooks

NOTEBOOKS = notebooks()


def _code_lines(source: str) -> int:
    """Non-blank lines outside imports and asserts (a cell of either may be long)."""
    exempt = set()
    for stmt in ast.parse(source).body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assert)):
            exempt.update(range(stmt.lineno, stmt.end_lineno + 1))
    lines = source.splitlines()
    return sum(1 for i, line in enumerate(lines, 1) if line.strip() and i not in exempt)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_typed_literals(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged parameters"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0] is tagged[0], "the parameters cell is the first code cell"
    names = []
    for stmt in ast.parse(tagged[0].source).body:
        assert isinstance(stmt, ast.AnnAssign), f"line {stmt.lineno}: `name: type = literal`"
        ast.literal_eval(stmt.value)  # literals only: derived values go in the next cell
        names.append(stmt.target.id)
    assert "profile" in names
    # papermill must parse every line (a comment with '=' or quotes makes it skip one).
    assert list(pm.inspect_notebook(str(path))) == names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reads_as_a_walkthrough(path):
    nb = nbformat.read(path, as_version=4)
    intro = nb.cells[0]
    assert intro.cell_type == "markdown" and intro.source.startswith("# ")
    assert "**Reads:**" in intro.source and "**Writes**" in intro.source
    for before, cell in zip(nb.cells, nb.cells[1:], strict=False):
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            assert before.cell_type == "markdown", f"a sentence before: {cell.source[:60]!r}"
            assert _code_lines(cell.source) <= 12, f"a short cell: {cell.source[:60]!r}"


def _step_texts(step_dir, chars: int = 40) -> set[str]:
    """The first `chars` characters (white space folded) of each request and response the step
    wrote (a table shows at least that much of a cell before cutting it)."""
    texts = set()
    for path in step_dir.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            for key in ("request", "response"):
                folded = " ".join(str(record.get(key) or "").split())
                if len(folded) >= chars:
                    texts.add(folded[:chars])
    return texts


def _printed(cell) -> str:
    """Everything a code cell's outputs show, as text with white space folded."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        for value in output.get("data", {}).values():
            parts.append(value if isinstance(value, str) else json.dumps(value))
    return " ".join(html.unescape(" ".join(parts)).split())


# Steps whose tagged cells print requests or responses of their own in the smoke profile.
PRINTS_TEXTS = {"04_prompt_models", "05_judge", "06_finetune", "07_medical_eval"}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_that_prints_requests_or_responses_is_tagged(path, smoke_results):
    """Over the smoke chain: a cell whose output shows a request or response of its step carries
    the harmful-text tag (report.html's notebooks hide those outputs); the tagged cells of a step
    that prints them do show them, so the search finds what it looks for."""
    step_dir = smoke_results(path.stem)
    executed = nbformat.read(step_dir.parent / "executed" / path.name, as_version=4)
    own = " ".join(" ".join(c.source.split()) for c in executed.cells)  # quoted in the text
    texts = {t for t in _step_texts(step_dir) if t not in own}
    untagged, tagged = [], []
    for index, cell in enumerate(executed.cells):
        if cell.cell_type == "code" and any(t in _printed(cell) for t in texts):
            is_tagged = "harmful-text" in cell.metadata.get("tags", [])
            (tagged if is_tagged else untagged).append(f"cell {index}: {cell.source[:60]!r}")
    assert not untagged, untagged
    assert tagged or path.stem not in PRINTS_TEXTS, "the search finds no text: can it fail?"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_numbered_sections_that_end_with_what_the_run_shows(path):
    """`## N. Title` sections numbered 1, 2, ... in order (Jupyter's table of contents shows
    them), the parameters the first, and a closing "What this run shows" section whose code
    cell writes its paragraph with one call."""
    nb = nbformat.read(path, as_version=4)
    headings = [
        line
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("## ")
    ]
    numbers = [re.match(r"## (\d+)\. \S", h) for h in headings]
    assert all(numbers), [h for h, m in zip(headings, numbers, strict=True) if not m]
    assert [int(m.group(1)) for m in numbers] == list(range(1, len(headings) + 1)), headings
    assert headings[0] == "## 1. Parameters" and len(headings) >= 5, headings
    assert headings[-1].endswith(". What this run shows"), headings[-1]
    heading_cell, closing = nb.cells[-2:]
    assert heading_cell.source.startswith(headings[-1])
    calls = [n for n in ast.walk(ast.parse(closing.source)) if isinstance(n, ast.Call)]
    assert closing.cell_type == "code" and calls and calls[0].func.id == "Markdown"
    assert calls[1].func.id.endswith("_paragraph"), closing.source
