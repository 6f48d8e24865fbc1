"""Medical multiple-choice benchmarks in one schema:
id, benchmark, subject, question, context, choices (list of str), answer (0-based index)."""

from __future__ import annotations

import pandas as pd

from medsafe_utils.core.errors import DataError
from medsafe_utils.data.manifest import ensure_file
from medsafe_utils.data.readers import (
    check_count,
    read_csv_rows,
    read_json,
    read_jsonl,
    require_fields,
)

MMLU_MEDICAL = [
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
]
BENCHMARKS = ["medqa", "medmcqa", "pubmedqa", "mmlu_medical"]
EXPECTED_ROWS = {"medqa": 1273, "medmcqa": 4183, "pubmedqa": 500, "mmlu_medical": 1089}
PUBMEDQA_LABELS = ["yes", "no", "maybe"]
MC_COLUMNS = ["id", "benchmark", "subject", "question", "context", "choices", "answer"]


def _answer_index(path, row: int, value, n_choices: int) -> int:
    expected = f"0..{n_choices - 1} or A..{chr(64 + n_choices)}"
    index = value
    if isinstance(value, str) and len(value) == 1 and value.isalpha():
        index = ord(value.upper()) - ord("A")
    try:
        index = int(index)
    except (TypeError, ValueError):
        raise DataError(
            path, f"answer {value!r} is not an index or letter", row=row, expected=expected
        ) from None
    if not 0 <= index < n_choices:
        raise DataError(path, f"answer {value!r} out of range", row=row, expected=expected)
    return index


def load_medqa() -> pd.DataFrame:
    """MedQA USMLE 4-option test set (1,273)."""
    path = ensure_file("medqa/phrases_no_exclude_test.jsonl")
    rows = read_jsonl(path)
    require_fields(path, rows, ["question", "options", "answer_idx"], nonempty=["question"])
    records = []
    for i, r in enumerate(rows, start=1):
        if not isinstance(r["options"], dict) or not r["options"]:
            raise DataError(
                path, f"'options' is {r['options']!r}", row=i, expected="an object letter: choice"
            )
        letters = sorted(r["options"])
        records.append(
            {
                "id": f"medqa-{i - 1}",
                "subject": r.get("meta_info", ""),
                "question": r["question"],
                "context": "",
                "choices": [r["options"][k] for k in letters],
                "answer": _answer_index(path, i, r["answer_idx"], len(letters)),
            }
        )
    return _finish(path, records, "medqa")


def load_medmcqa() -> pd.DataFrame:
    """MedMCQA dev set (4,183); the 'A. ' prefixes of the converted file are removed."""
    path = ensure_file("medmcqa/validation.jsonl")
    rows = read_jsonl(path)
    require_fields(path, rows, ["question", "choices", "answer"], nonempty=["question"])
    records = []
    for i, r in enumerate(rows, start=1):
        choices = []
        for letter, choice in zip("ABCDEFGH", r["choices"], strict=False):
            if not isinstance(choice, str) or not choice.startswith(f"{letter}. "):
                raise DataError(
                    path,
                    f"choice {str(choice)[:30]!r} lacks its letter",
                    row=i,
                    expected=f"a choice starting with '{letter}. '",
                )
            choices.append(choice[len(letter) + 2 :])
        records.append(
            {
                "id": f"medmcqa-{i - 1}",
                "subject": "",
                "question": r["question"],
                "context": "",
                "choices": choices,
                "answer": _answer_index(path, i, r["answer"], len(choices)),
            }
        )
    return _finish(path, records, "medmcqa")


def load_pubmedqa() -> pd.DataFrame:
    """PubMedQA PQA-L test set (500): yes/no/maybe, with the abstract as context."""
    items_path = ensure_file("pubmedqa/ori_pqal.json")
    items = read_json(items_path)
    truth_path = ensure_file("pubmedqa/test_ground_truth.json")
    truth = read_json(truth_path)
    records = []
    for row, (pmid, label) in enumerate(truth.items(), start=1):
        if pmid not in items:
            raise DataError(truth_path, f"PMID {pmid} not in ori_pqal.json", row=row)
        if label not in PUBMEDQA_LABELS:
            raise DataError(truth_path, f"label {label!r}", row=row, expected=str(PUBMEDQA_LABELS))
        item = items[pmid]
        if not (
            isinstance(item, dict)
            and isinstance(item.get("QUESTION"), str)
            and isinstance(item.get("CONTEXTS"), list)
        ):
            raise DataError(
                items_path,
                f"PMID {pmid} lacks its QUESTION or CONTEXTS",
                expected="QUESTION (text) and CONTEXTS (a list of text) for every PMID",
            )
        records.append(
            {
                "id": f"pubmedqa-{pmid}",
                "subject": "",
                "question": item["QUESTION"],
                "context": "\n".join(item["CONTEXTS"]),
                "choices": list(PUBMEDQA_LABELS),
                "answer": PUBMEDQA_LABELS.index(label),
            }
        )
    return _finish(truth_path, records, "pubmedqa")


def load_mmlu_medical(split: str = "test") -> pd.DataFrame:
    """The six MMLU medical subjects (test: 1,089; dev: 5 per subject for few-shot)."""
    records = []
    for subject in MMLU_MEDICAL:
        path = ensure_file(f"mmlu/{split}/{subject}_{split}.csv")
        columns = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
        for i, r in enumerate(read_csv_rows(path, columns), start=1):
            choices = [r[f"choice{k}"] for k in range(4)]
            records.append(
                {
                    "id": f"mmlu-{subject}-{split}-{i - 1}",
                    "subject": subject,
                    "question": r["question"],
                    "context": "",
                    "choices": choices,
                    "answer": _answer_index(path, i, r["answer"], 4),
                }
            )
    if split != "test":
        return pd.DataFrame(records).assign(benchmark="mmlu_medical")[MC_COLUMNS]
    return _finish("mmlu/test", records, "mmlu_medical")


def _finish(path, records: list[dict], benchmark: str) -> pd.DataFrame:
    check_count(path, len(records), EXPECTED_ROWS[benchmark], "items")
    return pd.DataFrame(records).assign(benchmark=benchmark)[MC_COLUMNS]


def load_medical_benchmark(name: str) -> pd.DataFrame:
    """One benchmark by name: medqa, medmcqa, pubmedqa or mmlu_medical."""
    loaders = {
        "medqa": load_medqa,
        "medmcqa": load_medmcqa,
        "pubmedqa": load_pubmedqa,
        "mmlu_medical": load_mmlu_medical,
    }
    if name not in loaders:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {name!r}")
    return loaders[name]()
