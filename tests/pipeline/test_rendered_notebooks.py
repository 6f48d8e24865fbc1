"""The executed notebooks of the suite's smoke chain, rendered for report.html: no request,
response or generation of any step shows unless asked (test_report.py checks the report's own
page and the notebooks of the README commands' folder)."""

import html
import json
from pathlib import Path

import nbformat
import pytest

from medsafe_utils.core import paths
from medsafe_utils.pipeline.report import TEXT_COLUMNS, render_notebooks

pytestmark = pytest.mark.slow


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _texts(step_dir: Path, chars: int = 60) -> set[str]:
    """The first `chars` characters (whitespace folded) of each long text in a step's JSONL."""
    texts = set()
    for path in step_dir.glob("*.jsonl"):
        for record in _records(path):
            for key, value in record.items():
                if key in TEXT_COLUMNS | {"safe_response"} and isinstance(value, str):
                    folded = " ".join(value.split())
                    if len(folded) >= chars:
                        texts.add(folded[:chars])
    return texts


def _shown(page: Path) -> str:
    return " ".join(html.unescape(page.read_text(encoding="utf-8")).split())


def test_every_executed_notebook_hides_harmful_text(smoke_results):
    """Over the smoke chain of the suite, no rendered notebook shows a request, response or
    generation of any step, unless asked: then the tagged cells show them again."""
    steps = ["01_generate", "02_jailbreak", "03_safe_responses", "04_prompt_models", "05_judge"]
    steps += ["06_finetune"]
    folders = [smoke_results(step) for step in steps]
    profile_dir = folders[0].parent
    texts = set().union(*(_texts(folder) for folder in folders))
    hidden, shown = render_notebooks(profile_dir), render_notebooks(profile_dir, True)
    assert sorted(hidden) == sorted(shown) and set(steps) <= set(hidden)
    revealed = []
    for step in hidden:
        # what the notebook itself says (its teaching text quotes the GCG target) is not output
        notebook = nbformat.read(paths.NOTEBOOKS_DIR / f"{step}.ipynb", as_version=4)
        own = " ".join(" ".join(cell.source.split()) for cell in notebook.cells)
        printed = [t for t in texts if t not in own]
        page, asked = _shown(hidden[step]), _shown(shown[step])  # read once, not once a text
        assert not [t for t in printed if t in page], step
        revealed += [step] * any(t in asked for t in printed)
    # the comparison can fail: each step that prints texts of its own shows them when asked
    assert set(steps) - {"02_jailbreak"} <= set(revealed), revealed
