"""Multiple-choice prompts of the log-likelihood protocol, in lm-evaluation-harness's own formats
(tasks medqa_4options, medmcqa, pubmedqa, mmlu_<subject>), with seeded few-shot examples.

A prompt is `description + shot_1 + "\\n\\n" + ... + shot_k + "\\n\\n" + query`, each shot being
`query(shot) + " " + target(shot)`; every choice is scored as the continuation `" " + target`.
Few-shot examples come from a pool disjoint from the scored items (data.fewshot_pool): MMLU's dev
set (same subject, 5 each), PubMedQA's non-test PQA-L items, and a fixed held-out part of MedQA and
MedMCQA (never scored); drawn per item with `random.Random(f"{seed}:{item_id}")` so a subset or a
resumed run sees the same shots."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd

from medsafe_utils.data import fewshot_pool
from medsafe_utils.data.medical import PUBMEDQA_LABELS

LETTERS = "ABCDEFGHIJ"
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
PROMPT_VERSION = 1  # bump when a format changes: it is part of every cached prediction's key


@dataclass(frozen=True)
class McRequest:
    """One item under one few-shot setting: the prompt and the continuations to score."""

    benchmark: str
    item_id: str
    subject: str
    num_fewshot: int
    seed: int
    context: str
    continuations: tuple[str, ...]
    answer: int  # 0-based index of the correct continuation
    shot_ids: tuple[str, ...] = ()


def request_columns(request) -> dict:
    """What names a request (McRequest or GenRequest) in its prediction record."""
    names = ("benchmark", "subject", "item_id", "num_fewshot", "seed")
    return {k: getattr(request, k) for k in names} | {"shot_ids": list(request.shot_ids)}


def letter(index: int) -> str:
    """0 -> 'A', 1 -> 'B', ... (raises on an index outside A..J)."""
    if not 0 <= index < len(LETTERS):
        raise ValueError(f"choice index {index} outside 0..{len(LETTERS) - 1}")
    return LETTERS[index]


def letter_index(text: str) -> int:
    """'A' / ' b' -> 0 / 1: the inverse of `letter`."""
    key = text.strip().upper()
    if len(key) != 1 or key not in LETTERS:
        raise ValueError(f"{text!r} is not a choice letter A..J")
    return LETTERS.index(key)


def choice_targets(benchmark: str, n_choices: int) -> list[str]:
    """What the model must say for each choice: letters, or yes/no/maybe for PubMedQA."""
    if benchmark == "pubmedqa":
        if n_choices != len(PUBMEDQA_LABELS):
            raise ValueError(f"PubMedQA has {len(PUBMEDQA_LABELS)} labels, got {n_choices} choices")
        return list(PUBMEDQA_LABELS)
    return [letter(i) for i in range(n_choices)]


def cut_context(context: str, max_chars: int = 0) -> str:
    """A PubMedQA abstract cut to max_chars characters (marked " ..."); 0 keeps all of it."""
    if max_chars and len(context) > max_chars:
        return context[:max_chars].rstrip() + " ..."
    return context


def _options(choices) -> str:
    return "".join(f"{letter(i)}. {c}\n" for i, c in enumerate(choices))


def query_text(row, max_context_chars: int = 0) -> str:
    """The question as lm-eval's task for this benchmark writes it, ending in 'Answer:'."""
    if row["benchmark"] == "medqa":
        return f"Question: {row['question']}\n{_options(row['choices'])}Answer:"
    if row["benchmark"] == "medmcqa":
        return f"Question: {row['question']}\nChoices:\n{_options(row['choices'])}Answer:"
    if row["benchmark"] == "pubmedqa":
        context = cut_context(row["context"], max_context_chars)
        return f"Abstract: {context}\nQuestion: {row['question']}\nAnswer:"
    if row["benchmark"] == "mmlu_medical":
        return f"{row['question'].strip()}\n{_options(row['choices'])}Answer:"
    raise ValueError(f"unknown benchmark {row['benchmark']!r}")


def description(row) -> str:
    """MMLU's per-subject header; empty for the other benchmarks."""
    if row["benchmark"] != "mmlu_medical":
        return ""
    subject = row["subject"].replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


def shot_pools(
    benchmarks: list[str], mmlu_subjects: list[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Where few-shot examples come from: each benchmark's pool, disjoint from its scored items."""
    return {b: fewshot_pool(b, mmlu_subjects) for b in benchmarks}


def select_shots(row, pool: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """k examples for one item, drawn with the seed; never the item itself. MMLU: examples of
    the item's subject first; a subject with fewer than k left (its dev questions that are also
    scored test questions are out of the pool) is topped up from the other subjects."""
    if k == 0:
        return pool.iloc[:0]
    candidates = pool[pool["id"] != row["id"]]
    if len(candidates) < k:
        raise ValueError(f"{row['id']}: {k} shots asked, {len(candidates)} available")
    rng = random.Random(f"{seed}:{row['id']}")
    if row["benchmark"] == "mmlu_medical":
        same = candidates[candidates["subject"] == row["subject"]]
        if len(same) >= k:
            return same.iloc[rng.sample(range(len(same)), k)]
        others = candidates[candidates["subject"] != row["subject"]]
        extra = others.iloc[rng.sample(range(len(others)), k - len(same))]
        return pd.concat([same.iloc[rng.sample(range(len(same)), len(same))], extra])
    return candidates.iloc[rng.sample(range(len(candidates)), k)]


def build_request(row, shots: pd.DataFrame, seed: int, max_context_chars: int = 0) -> McRequest:
    """The full prompt (description, shots, query) and the continuations for one item."""
    n_choices = len(row["choices"])
    parts = []
    for _, shot in shots.iterrows():
        target = choice_targets(shot["benchmark"], len(shot["choices"]))[shot["answer"]]
        parts.append(query_text(shot, max_context_chars) + TARGET_DELIMITER + target)
    parts.append(query_text(row, max_context_chars))
    return McRequest(
        benchmark=row["benchmark"],
        item_id=row["id"],
        subject=row["subject"],
        num_fewshot=len(shots),
        seed=seed,
        context=description(row) + FEWSHOT_DELIMITER.join(parts),
        continuations=tuple(
            TARGET_DELIMITER + t for t in choice_targets(row["benchmark"], n_choices)
        ),
        answer=int(row["answer"]),
        shot_ids=tuple(shots["id"]),
    )


def build_requests(
    items: pd.DataFrame,
    settings: list[tuple[int, int]],
    pools: dict[str, pd.DataFrame] | None = None,
    max_context_chars: int = 0,
) -> list[McRequest]:
    """One request per item and (num_fewshot, seed) setting."""
    if pools is None:
        subjects = items.loc[items["benchmark"] == "mmlu_medical", "subject"]
        pools = shot_pools(sorted(set(items["benchmark"])), list(dict.fromkeys(subjects)) or None)
    requests = []
    for _, row in items.iterrows():
        for k, seed in settings:
            shots = select_shots(row, pools[row["benchmark"]], k, seed)
            requests.append(build_request(row, shots, seed, max_context_chars))
    return requests


def fewshot_settings(num_fewshot: list[int], seeds: list[int]) -> list[tuple[int, int]]:
    """(k, seed) runs: zero-shot once (recorded as seed 0), every k > 0 once per seed."""
    if any(k < 0 for k in num_fewshot) or not seeds:
        raise ValueError(f"num_fewshot must be >= 0 and seeds non-empty: {num_fewshot}, {seeds}")
    runs = [(0, 0)] if 0 in num_fewshot else []
    return runs + [(k, s) for k in sorted(set(num_fewshot)) if k > 0 for s in seeds]
