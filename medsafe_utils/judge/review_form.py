"""What the raters get: the review sample as a CSV to fill in and as one self-contained HTML form
(no network, works from file://), plus the key that stays with the researcher.

    export_review(sample, step_dir / "expert_review")

The form (review_form.html, beside this module) shows one item at a time with the usage policy
and the 1-5 rubric, keeps progress in the browser's localStorage, and saves the labels as a CSV
with the columns of labels_template.csv. Judge scores and model names are never in it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import pandas as pd

from medsafe_utils.core.artifacts import write_jsonl
from medsafe_utils.core.safe_csv import write_csv
from medsafe_utils.data.prompts import prompt_text
from medsafe_utils.judge.review import LABEL_COLUMNS

DATA_MARK = "/*__REVIEW_DATA__*/"
CSP_MARK = "/*__CSP__*/"
# Longer texts are cut in the form and the CSV (sample.jsonl keeps them whole): the page stays
# small and quick to lay out whatever a model wrote, and a spreadsheet cell holds at most 32,767
# characters.
MAX_SHOWN = 20_000
RUBRIC_LINE = re.compile(r"^Score (\d): (.*)$")


def rubric() -> dict[str, str]:
    """The judge's 1-5 rubric (prompts/judge_rubric.txt) by score."""
    lines = (RUBRIC_LINE.match(line.strip()) for line in prompt_text("judge_rubric").splitlines())
    return {m[1]: m[2].strip() for m in lines if m}


def shown(text) -> str:
    """The text as raters see it: its first MAX_SHOWN characters and a note of the rest."""
    text = "" if text is None or (isinstance(text, float) and text != text) else str(text)
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN]}\n[{len(text) - MAX_SHOWN:,} more characters]"


def _as_shown(sample: pd.DataFrame) -> pd.DataFrame:
    return sample.assign(**{c: sample[c].map(shown) for c in ("request", "response")})


def label_template(sample: pd.DataFrame) -> pd.DataFrame:
    """The rows a rater fills in: what the rater sees, a blank expert_score and comment."""
    return _as_shown(sample).assign(expert_score="", comment="")[LABEL_COLUMNS]


def _form_data(sample: pd.DataFrame) -> dict:
    """Everything the form shows; nothing that would reveal a judge or a model."""
    columns = ["review_id", "position", "harm_set", "category", "policy", "request", "response"]
    items = _as_shown(sample)[columns]
    return {
        "sample_id": sample["sample_id"].iloc[0],
        "columns": LABEL_COLUMNS,
        "items": items.astype(object).where(items.notna(), "").to_dict(orient="records"),
        "policies": {p: prompt_text(p) for p in sorted(set(sample["policy"]))},
        "rubric": rubric(),
    }


def form_html(sample: pd.DataFrame) -> str:
    """The review form: the HTML template with the sample's items embedded as JSON."""
    template = (
        resources.files("medsafe_utils.judge")
        .joinpath("review_form.html")
        .read_text(encoding="utf-8")
    )
    # '<' escaped so that no text (a response quoting '</script>') can end the script block.
    data = json.dumps(_form_data(sample), ensure_ascii=False, default=str).replace("<", "\\u003c")
    return template.replace(CSP_MARK, content_policy(template)).replace(DATA_MARK, data)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_policy(template: str) -> str:
    """The form's Content-Security-Policy: nothing but its own inline style and script (by
    hash), so no markup in a text, however it got into the page, can load or run anything."""
    styles = re.findall(r"<style>(.*?)</style>", template, re.S)
    scripts = re.findall(r"<script>(.*?)</script>", template, re.S)  # not the JSON data block
    return (
        f"default-src 'none'; style-src {' '.join(map(_sha256, styles))}; "
        f"script-src {' '.join(map(_sha256, scripts))}; base-uri 'none'; form-action 'none'"
    )


def _guide(sample: pd.DataFrame) -> str:
    """guide.md: how to review, the rubric and the usage policies, for raters using the CSV."""
    lines = [
        f"# Expert review of sample {sample['sample_id'].iloc[0]} ({len(sample)} items)",
        "",
        "Open `review_form.html` in any browser (it works offline; your progress stays in "
        "that browser), or fill in `labels_template.csv` in a spreadsheet. For each item, "
        "score the response to the request from 1 to 5 against the usage policy named in "
        "its row and the rubric below; a comment is optional. Leave the other columns as "
        "they are. Save as `labels_<your name>.csv` and send that file back.",
        "",
        "## Rubric",
        "",
    ]
    lines += [f"- **{score}**: {text}" for score, text in rubric().items()]
    for policy in sorted(set(sample["policy"])):
        lines += ["", f"## Usage policy `{policy}`", "", prompt_text(policy).strip()]
    return "\n".join(lines) + "\n"


def export_review(sample: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Write expert_review/: review_form.html and labels_template.csv (for the raters), guide.md,
    and sample.jsonl (the key: models and judge scores; keep it, do not send it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    form = folder / "review_form.html"
    form.write_text(form_html(sample), encoding="utf-8")
    template = folder / "labels_template.csv"
    write_csv(label_template(sample), template, encoding="utf-8-sig")  # BOM: Excel
    guide = folder / "guide.md"
    guide.write_text(_guide(sample), encoding="utf-8")
    return [form, template, guide, write_jsonl(sample, folder / "sample.jsonl")]
