"""Alpaca-format safety demonstrations: the prompt template, tokenizing with the prompt mask, and
the demonstration splits (published, or freshly written by 03_safe_responses).

    from medsafe_utils.finetune.alpaca import demonstration_split, tokenize_demonstration
    demos = demonstration_split("med", 100)            # the published ft_safety_med_n100.json
    rec = tokenize_demonstration(tokenizer, demos.iloc[0], cutoff_len=256)
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from medsafe_utils.core import steps
from medsafe_utils.data import (
    alpaca_template,
    load_bianchi_safety,
    load_ft_split,
    load_medsafetybench,
)
from medsafe_utils.safe_responses.demonstrations import FIELDS, load_demonstrations

IGNORE_INDEX = -100  # label of a token that carries no loss
FT_KINDS = ("med", "gen", "both")


def format_prompt(instruction: str, input: str = "", output: str = "") -> str:
    """The alpaca prompt (with the response appended when given), as the original Prompter."""
    template = alpaca_template()
    if input:
        prompt = template["prompt_input"].format(instruction=instruction, input=input)
    else:
        prompt = template["prompt_no_input"].format(instruction=instruction)
    return prompt + output


def tokenize_demonstration(
    tokenizer,
    record,
    cutoff_len: int = 256,
    train_on_inputs: bool = True,
    add_eos_token: bool = True,
) -> dict[str, list[int]]:
    """input_ids, attention_mask, labels of one demonstration (alpaca-lora's tokenize).

    The full text is cut at `cutoff_len` tokens; EOS is appended when there is room. With
    train_on_inputs=False the prompt's tokens get label -100, so only the response carries loss."""
    instruction, input_, output = (record["instruction"], record["input"] or "", record["output"])

    def encode(text: str) -> list[int]:
        return tokenizer(text, truncation=True, max_length=cutoff_len)["input_ids"]

    ids = encode(format_prompt(instruction, input_, output))
    eos = tokenizer.eos_token_id
    if add_eos_token and len(ids) < cutoff_len and (not ids or ids[-1] != eos):
        ids = [*ids, eos]
    labels = list(ids)
    if not train_on_inputs:
        n_prompt = len(encode(format_prompt(instruction, input_)))
        labels = [IGNORE_INDEX] * n_prompt + labels[n_prompt:]
    return {"input_ids": list(ids), "attention_mask": [1] * len(ids), "labels": labels}


def tokenized_dataset(
    tokenizer,
    demonstrations: pd.DataFrame,
    cutoff_len: int = 256,
    train_on_inputs: bool = True,
    add_eos_token: bool = True,
):
    """A datasets.Dataset of tokenized demonstrations with a `length` column."""
    from datasets import Dataset

    rows = [
        tokenize_demonstration(tokenizer, r, cutoff_len, train_on_inputs, add_eos_token)
        for r in demonstrations.to_dict("records")
    ]
    for row in rows:
        row["length"] = len(row["input_ids"])
    return Dataset.from_list(rows)


def demonstrations_sha256(demonstrations: pd.DataFrame) -> str:
    """sha256 of the demonstrations' records, so an adapter is reused only for the same data."""
    records = demonstrations[["instruction", "input", "output"]].to_dict("records")
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode("utf-8")).hexdigest()


def demonstration_split(
    kind: str, n: int, source: str = "published", profile: str = "paper", take: int = 0
) -> pd.DataFrame:
    """The n-demonstration split of a kind (med | gen | both), published or fresh (03's).

    take > 0 keeps the first `take` demonstrations of the split (small profiles: n=16 is the
    first 16 of the n100 split)."""
    if kind not in FT_KINDS:
        raise ValueError(f"kind must be one of {FT_KINDS}, got {kind!r}")
    if source == "published":
        frame = load_ft_split(kind, n)
    elif source == "fresh":
        frame = load_demonstrations(steps.split_path(profile, kind, n), n)
    else:
        raise ValueError(f"source must be 'published' or 'fresh', got {source!r}")
    if take:
        if take > len(frame):
            raise ValueError(f"take={take} but the {kind} n{n} split has {len(frame)} rows")
        frame = frame.head(take)
    return frame.reset_index(drop=True)


def held_out_demonstrations(trained: pd.DataFrame, k: int = 4, seed: int = 0) -> pd.DataFrame:
    """k safety demonstrations not trained on (MedSafety-Improve and Bianchi et al.), seeded."""
    improve = load_medsafetybench("train")
    pool = pd.concat(
        [
            pd.DataFrame(
                {"instruction": improve["request"], "input": "", "output": improve["safe_response"]}
            ),
            load_bianchi_safety(),
        ],
        ignore_index=True,
    )
    pool = pool[~pool["instruction"].isin(set(trained["instruction"]))]
    if len(pool) < k:
        raise ValueError(f"only {len(pool)} held-out demonstrations left, {k} asked for")
    return pool.sample(k, random_state=seed).reset_index(drop=True)[FIELDS]


def alpaca_prompts(demonstrations: pd.DataFrame) -> list[str]:
    """The alpaca prompts (no response) of demonstrations: probes for check_adapter."""
    return [
        format_prompt(r["instruction"], r["input"] or "") for r in demonstrations.to_dict("records")
    ]
