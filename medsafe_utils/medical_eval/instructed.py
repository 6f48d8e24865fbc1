"""Instruction prompts for the generation protocol, laid out as meditron's evaluation lays them
out (evaluation/benchmarks.py and inference.py, the pipeline the paper ran):

    {instruction's system text}
    [shot_1 "\\n\\n" ... shot_k "\\n\\n"]{question block}
    {instruction's user cue, "The answer is:"}

with a trailing newline when zero-shot (few-shot prompts lose it). A question block is
"Question: {q}\\n\\nOptions:\\nA. ...\\nD. ..." ("?" added when the question ends in neither "?"
nor "."), or for PubMedQA the abstract and the question on two lines. A shot is its question
block + "\\nThe answer is: {gold}". The instruction texts are read from the data mirror's copy of
meditron's instructions.json (MMLU uses MedMCQA's, as meditron does).

Few-shot examples: one draw per benchmark and seed, shared by every item, the first k of the
pool shuffled by `numpy.random.default_rng(seed).permutation` (what `datasets.shuffle(seed)`
does in meditron); the pool is disjoint from the scored items (data.medical.fewshot_pool)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medsafe_utils.medical_eval.prompts import choice_targets, cut_context, letter

INSTRUCTION_OF = {"medqa": "medqa", "medmcqa": "medmcqa", "pubmedqa": "pubmedqa"}
INSTRUCTION_OF["mmlu_medical"] = "medmcqa"  # meditron's choice for MMLU-medical
ANSWER_CUE = "The answer is:"
PROMPT_VERSION = 1  # bump when a format changes: it is part of every cached generation's key


@dataclass(frozen=True)
class GenRequest:
    """One item under one few-shot setting: the prompt to complete and the gold answer text."""

    benchmark: str
    item_id: str
    subject: str
    num_fewshot: int
    seed: int
    prompt: str
    gold: str  # "A".."D", or "yes" / "no" / "maybe"
    answer: int  # 0-based index of the gold choice
    n_choices: int
    shot_ids: tuple[str, ...] = ()


def question_block(row, max_context_chars: int = 0) -> str:
    """An item as meditron writes it: MCQ question and lettered options, or abstract + question."""
    if row["benchmark"] == "pubmedqa":
        return f"{cut_context(row['context'], max_context_chars)}\n{row['question']}"
    if row["benchmark"] not in INSTRUCTION_OF:
        raise ValueError(f"unknown benchmark {row['benchmark']!r}")
    question = row["question"]
    if not question.endswith(("?", ".")):
        question += "?"
    options = "\n".join(f"{letter(i)}. {c}" for i, c in enumerate(row["choices"]))
    return f"Question: {question}\n\nOptions:\n{options}"


def gold_text(row) -> str:
    """The answer as the prompt's shots write it: a capital letter, or yes / no / maybe."""
    return choice_targets(row["benchmark"], len(row["choices"]))[int(row["answer"])]


def instructed_prompt(
    row, shots: pd.DataFrame, instruction: dict, max_context_chars: int = 0
) -> str:
    """The full prompt for one item: instruction, shots, question, answer cue."""
    blocks = [
        f"{question_block(s, max_context_chars)}\n{ANSWER_CUE} {gold_text(s)}"
        for _, s in shots.iterrows()
    ]
    body = "\n\n".join([*blocks, question_block(row, max_context_chars)])
    prompt = f"{instruction['system']}\n{body}\n{instruction['user']}\n"
    return prompt[:-1] if len(shots) else prompt


def draw_shots(pool: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """The first k examples of the pool shuffled with the seed (one draw for every item)."""
    if k > len(pool):
        raise ValueError(f"{k} shots asked, the pool has {len(pool)}")
    order = np.random.default_rng(seed).permutation(len(pool))
    return pool.iloc[order[:k]]


def build_gen_requests(
    items: pd.DataFrame,
    settings: list[tuple[int, int]],
    pools: dict[str, pd.DataFrame],
    instructions: dict[str, dict],
    max_context_chars: int = 0,
) -> list[GenRequest]:
    """One request per item and (num_fewshot, seed) setting; shots never include scored items."""
    scored = set(items["id"])
    requests = []
    for _, row in items.iterrows():
        instruction = instructions[INSTRUCTION_OF[row["benchmark"]]]
        for k, seed in settings:
            shots = draw_shots(pools[row["benchmark"]], k, seed)
            overlap = scored & set(shots["id"])
            if overlap:
                raise ValueError(f"{row['benchmark']}: few-shot pool holds scored items {overlap}")
            requests.append(
                GenRequest(
                    benchmark=row["benchmark"],
                    item_id=row["id"],
                    subject=row["subject"],
                    num_fewshot=k,
                    seed=seed,
                    prompt=instructed_prompt(row, shots, instruction, max_context_chars),
                    gold=gold_text(row),
                    answer=int(row["answer"]),
                    n_choices=len(row["choices"]),
                    shot_ids=tuple(shots["id"]),
                )
            )
    return requests
