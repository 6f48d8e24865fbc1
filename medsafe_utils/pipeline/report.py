"""results/<profile>/report.html: one self-contained page to browse a run.

Figures are embedded (PNG data URIs), tables rendered from their CSVs, the INDEX map to the
paper's figures, each step's manifest summary (wall time, overrides, parameters) and links to the
executed notebooks rendered as HTML (results/<profile>/executed/*.html; self-contained and
sanitised, see notebook_html). Requests and responses
(harmful text) appear only with harmful_text=True, under the research-use warning: in the page's
tables and samples, and in the notebooks' outputs of the cells tagged "harmful-text".

    python -m medsafe_utils.pipeline.report smoke [--show-harmful-text]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import time
from collections import Counter
from html import escape
from pathlib import Path

import pandas as pd

from medsafe_utils.core import paths
from medsafe_utils.core.redact import redact
from medsafe_utils.pipeline.index import PAPER_MAP, artifacts

log = logging.getLogger(__name__)
MAX_ROWS = 200  # rows of a table shown; the CSV link has them all
OPEN_ROWS = 20  # a longer table starts collapsed
CLOSING = "What this run shows"  # the heading of each notebook's closing section
SAMPLE_N = 5  # records shown per JSONL file when harmful text is allowed
# Columns that may hold harmful text: dropped from tables unless harmful text is allowed.
TEXT_COLUMNS = {
    "request",
    "response",
    "prompt",
    "goal",
    "target",
    "instruction",
    "output",
    "raw_judgment",
    "generation",
    "completion",
    "text",
}
SAMPLE_COLUMNS = [
    "model",
    "judge",
    "harm_set",
    "category",
    "score",
    "request",
    "response",
    "instruction",
    "output",
]
# Manifest keys shown elsewhere in the summary (the rest is the step's own provenance).
MANIFEST_KEYS = {
    "step",
    "profile",
    "params",
    "git_commit",
    "git_dirty",
    "python",
    "platform",
    "packages",
    "data_manifest_sha256",
    "started",
    "ended",
    "duration_s",
    "files",
    "pipeline_hash",
    "overrides",
    "wall_s",
}
WARNING = (
    "Research use only. This page shows harmful medical requests and model responses to "
    "them, which are harmful by design. Do not share it outside the research it serves."
)
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right} .wide{overflow-x:auto}
.warning{background:#fde2e1;border:2px solid #c0392b;padding:.6em 1em;font-weight:600}
.note{color:#555} img{max-width:100%;border:1px solid #eee} figure{margin:1em 0}
code,pre{font-size:12px;white-space:pre-wrap} section{border-top:2px solid #ddd;margin-top:2em}
"""


HARMFUL_TAG = "harmful-text"  # the notebook cells whose outputs show requests or responses
HIDDEN_NOTE = (
    "[Output hidden: it shows harmful requests or model responses. Write the report with "
    "--show-harmful-text to see it.]\n"
)


def _hide_harmful_outputs(notebook) -> None:
    """Replace the outputs of the cells tagged HARMFUL_TAG by a note saying why."""
    import nbformat

    for cell in notebook.cells:
        if HARMFUL_TAG in cell.get("metadata", {}).get("tags", []) and cell.get("outputs"):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=HIDDEN_NOTE)]


def _stale(html: Path, notebook: Path) -> bool:
    """No page yet, one older than its notebook, or one rendered before pages were offline."""
    from medsafe_utils.pipeline.notebook_html import CONTENT_SECURITY_POLICY

    if not html.exists() or html.stat().st_mtime < notebook.stat().st_mtime:
        return True
    return CONTENT_SECURITY_POLICY not in html.read_text(encoding="utf-8")


def render_notebooks(profile_dir: Path, harmful_text: bool = False) -> dict[str, Path]:
    """executed/<NN_name>.html for each executed notebook, its harmful-text outputs hidden, or
    executed/<NN_name>.harmful-text.html with them shown (each rendered again when older than
    its notebook)."""
    import nbformat

    from medsafe_utils.pipeline.notebook_html import render

    rendered = {}
    suffix = ".harmful-text.html" if harmful_text else ".html"
    for notebook in sorted((profile_dir / "executed").glob("*.ipynb")):
        html = notebook.with_name(notebook.stem + suffix)
        if _stale(html, notebook):
            try:
                node = nbformat.read(notebook, as_version=4)
                if not harmful_text:
                    _hide_harmful_outputs(node)
                body = render(node, notebook.stem)  # offline and sanitised
            except Exception as err:  # noqa: BLE001 - a report without this link, not no report
                log.warning("%s: not rendered as HTML (%s)", notebook, err)
                continue
            html.write_text(body, encoding="utf-8")
        rendered[notebook.stem] = html
    return rendered


def _manifest(step_dir: Path) -> dict:
    path = step_dir / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _short(value, limit: int = 300) -> str:
    text = redact(value if isinstance(value, str) else json.dumps(value, default=str))
    return escape(text if len(text) <= limit else text[:limit] + " …")


def _kv_table(items: dict) -> str:
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td><code>{_short(v)}</code></td></tr>"
        for k, v in items.items()
    )
    return f"<table>{rows}</table>"


def _anchor(path: Path) -> str:
    """The page id of an artifact: its step folder and file stem."""
    return escape(f"{path.parent.name}-{path.stem}")


def _regenerates(stem: str) -> str:
    return escape(PAPER_MAP.get(stem, "beyond the paper"))


def _seconds(manifest: dict) -> str:
    wall = manifest.get("wall_s", manifest.get("duration_s"))
    return "" if wall is None else f"{wall:.1f}"


def steps_table(steps: list[Path], statuses: dict[str, str], notebooks: dict[str, Path]) -> str:
    """One row per step: this run's status, when it last ran, wall time, overrides, notebook."""
    rows = []
    for step in steps:
        manifest = _manifest(step)
        link = (
            f'<a href="executed/{escape(notebooks[step.name].name)}">notebook</a>'
            if step.name in notebooks
            else ""
        )
        rows.append(
            f'<tr><td><a href="#{escape(step.name)}">{escape(step.name)}</a></td>'
            f"<td>{escape(statuses.get(step.name, '-'))}</td>"
            f"<td>{escape(manifest.get('ended', 'no manifest'))}</td>"
            f'<td class="num">{_seconds(manifest)}</td>'
            f"<td><code>{_short(manifest.get('overrides') or '')}</code></td><td>{link}</td></tr>"
        )
    return (
        "<table><tr><th>step</th><th>this run</th><th>last run ended</th><th>wall time (s)"
        "</th><th>overrides</th><th>executed</th></tr>" + "".join(rows) + "</table>"
    )


def index_table(profile_dir: Path) -> str:
    """INDEX.md as a table: each figure and table, what it regenerates in the paper."""
    rows = []
    for path in artifacts(profile_dir):
        rel = path.relative_to(profile_dir).as_posix()
        rows.append(
            f'<tr><td><a href="#{_anchor(path)}">{escape(rel)}</a></td>'
            f"<td>{_regenerates(path.stem)}</td></tr>"
        )
    return "<table><tr><th>file</th><th>regenerates</th></tr>" + "".join(rows) + "</table>"


def figure_html(path: Path, profile_dir: Path) -> str:
    """A figure embedded as a data URI, captioned with what it regenerates (and its PDF)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    pdf = path.with_suffix(".pdf")
    pdf_link = (
        f' (<a href="{escape(pdf.relative_to(profile_dir).as_posix())}">PDF</a>)'
        if pdf.exists()
        else ""
    )
    return (
        f'<figure id="{_anchor(path)}">'
        f'<img src="data:image/png;base64,{data}" alt="{escape(path.stem)}">'
        f"<figcaption><b>{escape(path.stem)}</b>: "
        f"{_regenerates(path.stem)}{pdf_link}</figcaption></figure>"
    )


def table_html(path: Path, profile_dir: Path, harmful_text: bool) -> str:
    """A CSV table rendered (its first MAX_ROWS rows; text columns only if allowed)."""
    frame = pd.read_csv(path)
    hidden = [] if harmful_text else [c for c in frame.columns if c in TEXT_COLUMNS]
    shown = frame.drop(columns=hidden).head(MAX_ROWS)
    notes = [f"{len(frame) - len(shown)} more rows in the CSV"] if len(frame) > len(shown) else []
    notes += [f"text column(s) {', '.join(hidden)} not shown"] if hidden else []
    rel = path.relative_to(profile_dir).as_posix()
    rows = shown.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.3f}")
    if len(frame) > OPEN_ROWS:  # long: collapsed, so that the figures stay in sight
        rows = f"<details><summary>{len(frame)} rows</summary>{rows}</details>"
    return (
        f'<h3 id="{_anchor(path)}">{escape(path.stem)}</h3>'
        f"<p>{_regenerates(path.stem)} "
        f'(<a href="{escape(rel)}">CSV</a>){"; " + escape("; ".join(notes)) if notes else ""}'
        f'</p><div class="wide">{rows}</div>'
    )


def closing_paragraph(notebook: Path) -> str:
    """The markdown an executed notebook shows under its closing "What this run shows" heading
    ('' when it has none or the run stopped before it)."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    for heading, cell in zip(cells, cells[1:], strict=False):  # each cell and the next
        if heading.cell_type == "markdown" and CLOSING in heading.source.split("\n", 1)[0]:
            outputs = [o.get("data", {}) for o in cell.get("outputs", [])]
            shown = [d["text/markdown"] for d in outputs if "text/markdown" in d]
            return "".join(t if isinstance(t, str) else "".join(t) for t in shown)
    return ""


def closing_html(profile_dir: Path) -> str:
    """Each step's closing paragraphs, in step order, as HTML; a paragraph that several steps
    share (the small-run caveat) once, after them. The notebooks' markdown is rendered with any HTML
    in it escaped: the paragraphs name models, which come from parameters."""
    import mistune

    texts = {}
    for notebook in sorted((profile_dir / "executed").glob("[0-9][0-9]_*.ipynb")):
        if "." not in notebook.stem:  # not a fan-out job's notebook (04_prompt_models.<shard>)
            paragraphs = [p.strip() for p in closing_paragraph(notebook).split("\n\n")]
            texts[notebook.stem] = [p for p in paragraphs if p]
    counts = Counter(p for paragraphs in texts.values() for p in set(paragraphs))
    shared = [p for p, n in counts.items() if n > 1]
    to_html = mistune.create_markdown(escape=True)
    parts = []
    for step, paragraphs in texts.items():
        own = [p for p in paragraphs if p not in shared]
        if own:
            parts.append(f"<h3>{escape(step)}</h3>" + "".join(to_html(p) for p in own))
    parts += [to_html(p) for p in shared]
    return f"<h2>{CLOSING}</h2>" + "".join(parts) if parts else ""


def samples_html(step_dir: Path) -> str:
    """A few records of each per-item JSONL file of a step (harmful text: only when allowed)."""
    parts = []
    for path in sorted(step_dir.glob("*.jsonl")):
        if "cache" in path.name:
            continue
        frame = pd.read_json(path, lines=True, dtype=False)
        columns = [c for c in SAMPLE_COLUMNS if c in frame.columns]
        if not set(columns) & TEXT_COLUMNS:
            continue
        sample = frame.sample(min(SAMPLE_N, len(frame)), random_state=0)[columns]
        parts.append(
            f"<h3>{escape(path.name)}: {len(sample)} of {len(frame)} records</h3>"
            f'<div class="wide">{sample.to_html(index=False, na_rep="")}</div>'
        )
    return "".join(parts)


def _summary(manifest: dict) -> str:
    commit = (manifest.get("git_commit") or "unknown")[:10]
    dirty = " (uncommitted changes)" if manifest.get("git_dirty") else ""
    return (
        f"<p>ran {escape(manifest.get('started', '?'))} to "
        f"{escape(manifest.get('ended', '?'))}; wall time {_seconds(manifest)} s (notebook "
        f"{manifest.get('duration_s', '?')} s); commit {escape(commit)}{dirty}; overrides: "
        f"<code>{_short(manifest.get('overrides') or 'none')}</code></p>"
    )


# Tables a reader needs before any figure: which judge passed validation (05, 06).
READ_FIRST = ("tab_judge_validation",)


def step_html(step_dir: Path, profile_dir: Path, harmful_text: bool) -> str:
    """A step's manifest summary, metrics, the tables to read first, figures, the other tables
    (and samples when allowed)."""
    manifest, name = _manifest(step_dir), step_dir.name
    parts = [f'<section id="{escape(name)}"><h2>{escape(name)}</h2>']
    if manifest:
        parts.append(_summary(manifest))
        provenance = {k: v for k, v in manifest.items() if k not in MANIFEST_KEYS}
        parts.append(_kv_table(provenance) if provenance else "")
        parts.append(
            f"<details><summary>parameters</summary>{_kv_table(manifest['params'])}</details>"
            if manifest.get("params")
            else ""
        )
    metrics = step_dir / "metrics.json"
    if metrics.exists():
        parts.append(
            "<details><summary>metrics.json</summary>"
            f"{_kv_table(json.loads(metrics.read_text(encoding='utf-8')))}</details>"
        )
    tables = sorted(step_dir.glob("tab_*.csv"), key=lambda p: p.stem not in READ_FIRST)
    first = [p for p in tables if p.stem in READ_FIRST]
    parts += [table_html(p, profile_dir, harmful_text) for p in first]
    parts += [figure_html(p, profile_dir) for p in sorted(step_dir.glob("fig_*.png"))]
    parts += [table_html(p, profile_dir, harmful_text) for p in tables if p not in first]
    if harmful_text:
        parts.append(samples_html(step_dir))
    return "".join(parts) + "</section>"


def write_report(
    profile_dir: Path, statuses: dict[str, str] | None = None, harmful_text: bool = False
) -> Path:
    """Write results/<profile>/report.html (and the executed notebooks as HTML); its path."""
    steps = sorted(p for p in profile_dir.iterdir() if p.is_dir() and p.name[:2].isdigit())
    notebooks = render_notebooks(profile_dir, harmful_text)
    commits = {(_manifest(s).get("git_commit") or "")[:10] for s in steps} - {""}
    text_note = (
        f'<p class="warning">{escape(WARNING)}</p>'
        if harmful_text
        else '<p class="note">Requests and responses are not shown here (run with '
        "--show-harmful-text to show a few); the executed notebooks linked below hide the "
        "outputs that show them.</p>"
    )
    index_link = ' (<a href="INDEX.md">INDEX.md</a>)' if (profile_dir / "INDEX.md").exists() else ""
    body = [
        text_note,
        f"<h1>MedSafetyBench results: {escape(profile_dir.name)}</h1>",
        f"<p>Written {time.strftime('%Y-%m-%d %H:%M:%S')} from {escape(str(profile_dir))}"
        f"{index_link}; commit(s) {escape(', '.join(sorted(commits)) or 'unknown')}.</p>",
        closing_html(profile_dir),
        "<h2>Steps</h2>",
        steps_table(steps, statuses or {}, notebooks),
        "<h2>What each figure and table regenerates</h2>",
        index_table(profile_dir),
        *[step_html(step, profile_dir, harmful_text) for step in steps],
    ]
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>MedSafetyBench: {escape(profile_dir.name)}</title><style>{STYLE}</style>"
        "</head><body>" + "\n".join(body) + "</body></html>\n"
    )
    report = profile_dir / "report.html"
    report.write_text(page, encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write results/<profile>/report.html again")
    parser.add_argument("profile", nargs="?", default="smoke")
    parser.add_argument(
        "--show-harmful-text",
        action="store_true",
        help="show sample requests and responses (research use)",
    )
    args = parser.parse_args(argv)
    try:
        paths.check_profile(args.profile)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    profile_dir = paths.results_root() / args.profile
    if not profile_dir.is_dir():
        raise SystemExit(f"no results for profile {args.profile!r} in {profile_dir}")
    print(write_report(profile_dir, harmful_text=args.show_harmful_text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
