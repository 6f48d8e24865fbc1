"""Medical multiple-choice benchmarks in one schema:
id, benchmark, subject, question, context, choices (list of str), answer (0-based index).

Besides the scored items, each benchmark has a few-shot pool disjoint from them
(`fewshot_pool`): MMLU's dev set, PubMedQA's PQA-L items outside its test set, and for MedQA and
MedMCQA, which have no other split in the data, a fixed held-out part of the file that is never
scored (`scored_items` leaves it out)."""

from __future__ import annotations

import functools

import pandas as pd

from medsafe_utils.core.errors import DataError
from medsafe_utils.core.readers import (
    check_count,
    read_csv_rows,
    read_json,
    read_jsonl,
    require_fields,
)
from medsafe_utils.data.manifest import ensure_file

MMLU_MEDICAL = [
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
]
# meditron's MMLU-medical (evaluation/benchmarks.py, in its order, which sets its few-shot draws)
MMLU_MEDITRON = [
    "anatomy",
    "college_biology",
    "college_medicine",
    "professional_medicine",
    "medical_genetics",
    "virology",
    "clinical_knowledge",
    "high_school_biology",
    "high_school_chemistry",
    "nutrition",
    "college_chemistry",
]
MMLU_TEST_ROWS = {
    "anatomy": 135,
    "clinical_knowledge": 265,
    "college_biology": 144,
    "college_medicine": 173,
    "medical_genetics": 100,
    "professional_medicine": 272,
    "virology": 166,
    "high_school_biology": 310,
    "high_school_chemistry": 203,
    "nutrition": 306,
    "college_chemistry": 100,
}
MMLU_DEV_ROWS = 5  # per subject
BENCHMARKS = ["medqa", "medmcqa", "pubmedqa", "mmlu_medical"]
EXPECTED_ROWS = {"medqa": 1273, "medmcqa": 4183, "pubmedqa": 500, "mmlu_medical": 1089}
PUBMEDQA_POOL_ROWS = 500  # PQA-L items outside the test set
# MedQA and MedMCQA have no train split in the data: this many items of each, a fixed draw, are
# the few-shot pool and are never scored.
HELD_OUT_SHOTS = 50
HELD_OUT_SEED = 0
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


def _item(
    item_id: str,
    question: str,
    choices: list[str],
    answer: int,
    subject: str = "",
    context: str = "",
) -> dict:
    """One multiple-choice record of MC_COLUMNS (benchmark aside)."""
    return {
        "id": item_id,
        "subject": subject,
        "question": question,
        "context": context,
        "choices": choices,
        "answer": answer,
    }


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
        answer = _answer_index(path, i, r["answer_idx"], len(letters))
        choices = [r["options"][k] for k in letters]
        records.append(
            _item(f"medqa-{i - 1}", r["question"], choices, answer, r.get("meta_info", ""))
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
        answer = _answer_index(path, i, r["answer"], len(choices))
        records.append(_item(f"medmcqa-{i - 1}", r["question"], choices, answer))
    return _finish(path, records, "medmcqa")


def _pubmedqa_record(pmid: str, item: dict, label: str) -> dict:
    """One PQA-L item as a multiple-choice record: the abstract as context, yes/no/maybe."""
    return _item(
        f"pubmedqa-{pmid}",
        item["QUESTION"],
        list(PUBMEDQA_LABELS),
        PUBMEDQA_LABELS.index(label),
        context="\n".join(item["CONTEXTS"]),
    )


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
        records.append(_pubmedqa_record(pmid, item, label))
    return _finish(truth_path, records, "pubmedqa")


def load_mmlu_medical(split: str = "test", subjects: list[str] | None = None) -> pd.DataFrame:
    """MMLU medical subjects (default: the six usual ones, 1,089 test items; dev: 5 per subject).

    `subjects` picks others among MMLU_TEST_ROWS, e.g. MMLU_MEDITRON (meditron's eleven, 2,174)."""
    subjects = list(subjects or MMLU_MEDICAL)
    unknown = [s for s in subjects if s not in MMLU_TEST_ROWS]
    if unknown or not subjects:
        raise ValueError(f"MMLU subjects must be among {list(MMLU_TEST_ROWS)}, got {unknown}")
    if split not in ("test", "dev"):
        raise ValueError(f"MMLU split must be 'test' or 'dev', got {split!r}")
    records = []
    for subject in subjects:
        path = ensure_file(f"mmlu/{split}/{subject}_{split}.csv")
        columns = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
        rows = read_csv_rows(path, columns)
        expected = MMLU_TEST_ROWS[subject] if split == "test" else MMLU_DEV_ROWS
        check_count(path, len(rows), expected, "items")
        for i, r in enumerate(rows, start=1):
            choices = [r[f"choice{k}"] for k in range(4)]
            answer = _answer_index(path, i, r["answer"], 4)
            item_id = f"mmlu-{subject}-{split}-{i - 1}"
            records.append(_item(item_id, r["question"], choices, answer, subject))
    return pd.DataFrame(records).assign(benchmark="mmlu_medical")[MC_COLUMNS]


def load_pubmedqa_pool() -> pd.DataFrame:
    """The 500 PQA-L items outside PubMedQA's test set (few-shot examples, never scored)."""
    path = ensure_file("pubmedqa/ori_pqal.json")
    items = read_json(path)
    test = read_json(ensure_file("pubmedqa/test_ground_truth.json"))
    records = []
    for row, (pmid, item) in enumerate(items.items(), start=1):
        if pmid in test:
            continue
        label = item.get("final_decision")
        if label not in PUBMEDQA_LABELS:
            raise DataError(
                path, f"final_decision {label!r}", row=row, expected=str(PUBMEDQA_LABELS)
            )
        records.append(_pubmedqa_record(pmid, item, label))
    check_count(path, len(records), PUBMEDQA_POOL_ROWS, "non-test items")
    return pd.DataFrame(records).assign(benchmark="pubmedqa")[MC_COLUMNS]


@functools.cache
def held_out_ids(name: str) -> frozenset[str]:
    """Ids of the items of MedQA / MedMCQA kept out of scoring as their few-shot pool."""
    if name not in ("medqa", "medmcqa"):
        return frozenset()
    items = load_medical_benchmark(name)
    return frozenset(items["id"].sample(HELD_OUT_SHOTS, random_state=HELD_OUT_SEED))


def fewshot_pool(name: str, mmlu_subjects: list[str] | None = None) -> pd.DataFrame:
    """Few-shot examples for a benchmark, disjoint from `scored_items` by id and by content.

    MMLU's dev set repeats five test questions of other subjects (clinical_knowledge and
    college_medicine share some): an example that is also a scored question is left out."""
    if name == "mmlu_medical":
        pool = load_mmlu_medical("dev", mmlu_subjects)
    elif name == "pubmedqa":
        pool = load_pubmedqa_pool()
    else:
        items = load_medical_benchmark(name)
        pool = items[items["id"].isin(held_out_ids(name))]
    scored = scored_items(name, mmlu_subjects)
    seen = set(zip(scored["question"], scored["choices"].map(tuple), strict=True))
    repeated = [
        (q, tuple(c)) in seen for q, c in zip(pool["question"], pool["choices"], strict=True)
    ]
    return pool[[not r for r in repeated]].reset_index(drop=True)


def scored_items(name: str, mmlu_subjects: list[str] | None = None) -> pd.DataFrame:
    """The items a benchmark scores: its test (dev for MedMCQA) set less any held-out pool."""
    items = load_medical_benchmark(name, mmlu_subjects)
    held_out = held_out_ids(name)
    return items[~items["id"].isin(held_out)].reset_index(drop=True)


def load_meditron_instructions() -> dict[str, dict]:
    """meditron's evaluation instructions by name: {'system': ..., 'user': 'The answer is:'}."""
    path = ensure_file("meditron/instructions.json")
    instructions = read_json(path)
    if not isinstance(instructions, dict):
        raise DataError(path, "not an object", expected="{name: {system, user}}")
    for row, (name, entry) in enumerate(instructions.items(), start=1):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("system", "user")
        ):
            raise DataError(path, f"{name!r} lacks system/user text", row=row)
    return instructions


def _finish(path, records: list[dict], benchmark: str) -> pd.DataFrame:
    check_count(path, len(records), EXPECTED_ROWS[benchmark], "items")
    return pd.DataFrame(records).assign(benchmark=benchmark)[MC_COLUMNS]


def load_medical_benchmark(name: str, mmlu_subjects: list[str] | None = None) -> pd.DataFrame:
    """One benchmark by name: medqa, medmcqa, pubmedqa or mmlu_medical (of `mmlu_subjects`)."""
    loaders = {
        "medqa": load_medqa,
        "medmcqa": load_medmcqa,
        "pubmedqa": load_pubmedqa,
        "mmlu_medical": lambda: load_mmlu_medical("test", mmlu_subjects),
    }
    if name not in loaders:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {name!r}")
    return loaders[name]()
