"""The generation protocol (meditron's evaluation): answer reading, instruction prompts from the
mirror's instructions.json, few-shot pools disjoint from the scored items, meditron's few-shot
draw, the frequency penalty against a hand-written greedy loop, and a resumable run on the tiny
random model."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from medeval_rows import item_row  # tests/medical_eval/medeval_rows.py

from medsafe_utils.backends import GenerationConfig, HFBackend
from medsafe_utils.backends.config import cut_at_stop
from medsafe_utils.backends.hf import MIN_SHARED_PREFIX, FrequencyPenalty, shared_prefix_length
from medsafe_utils.data import (
    BENCHMARKS,
    MMLU_MEDICAL,
    MMLU_MEDITRON,
    fewshot_pool,
    load_meditron_instructions,
    load_mmlu_medical,
    scored_items,
)
from medsafe_utils.data.medical import HELD_OUT_SHOTS
from medsafe_utils.medical_eval.answers import answer_index, read_answer
from medsafe_utils.medical_eval.evaluate import (
    MedEvalConfig,
    adapter_differences,
    build_all_requests,
    eval_items,
    evaluate_model,
)
from medsafe_utils.medical_eval.generation import max_new_tokens, reading
from medsafe_utils.medical_eval.instructed import (
    GenRequest,
    build_gen_requests,
    draw_shots,
    instructed_prompt,
)
from medsafe_utils.medical_eval.prompts import build_requests, select_shots
from medsafe_utils.medical_eval.report import accuracy_table

# ---- reading the answer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "shots", "expected"),
    [
        ("B", False, "b"),
        (" c) because", False, "c"),
        ("B. Paris", False, "b"),
        ("(D)", False, "d"),
        ("E", False, "e"),  # a readable fifth letter (wrong on four options)
        ("A\n\nQuestion: next one", True, "a"),
        ("\n\nA", True, None),  # with shots only the text before the first blank line counts
        ("The answer is B", False, None),  # first letter "t": unreadable
        ("", False, None),
        ("42", False, None),
        ("\n## Answer\nB", False, "a"),  # the line after "\n##": "answer"
    ],
)
def test_upstream_reader_multiple_choice_is_the_first_letter(output, shots, expected):
    assert read_answer(output, "medqa", shots, "upstream") == expected


@pytest.mark.parametrize(
    ("output", "shots", "expected"),
    [
        ("yes", False, "yes"),
        (" No.", False, "no"),
        ("no\n\nThe answer is: yes", True, "no"),
        ("no\n\nyes", False, None),  # zero-shot: the whole text must be the answer
        ("yes, because", False, None),
        ("yesyes", False, "yes"),
        ("noyes", False, "no"),
        ("maybe", False, None),  # the upstream reader never reads "maybe"
        ("A", False, "a"),  # readable (a letter), and wrong
    ],
)
def test_upstream_reader_pubmedqa_is_yes_or_no(output, shots, expected):
    assert read_answer(output, "pubmedqa", shots, "upstream") == expected


def test_the_fork_reads_maybe_and_the_first_word_and_unreadable_scores_wrong():
    assert read_answer("Maybe.", "pubmedqa", False) == "maybe"
    assert read_answer("yes, because", "pubmedqa", False) == "yes"
    assert read_answer("no\n\nyes", "pubmedqa", False) == "no"
    assert read_answer("Answer: B", "medqa", False) == "a"  # the fork's quirk: "answer"'s a
    request = GenRequest("pubmedqa", "p-1", "", 0, 0, "prompt", "maybe", 2, 3)
    assert reading(request, "maybe", "upstream") == {
        "output": "maybe",
        "parsed": None,
        "pred": -1,
        "unreadable": True,
        "correct": 0,
    }
    assert reading(request, "maybe", "fork")["correct"] == 1
    mcq = GenRequest("medqa", "m-1", "", 3, 1, "prompt", "C", 2, 4)
    for reader in ("fork", "upstream"):
        assert reading(mcq, " c\n\nQuestion", reader)["correct"] == 1
        assert reading(mcq, " c\n\nQuestion", reader)["pred"] == 2
        assert reading(mcq, "B", reader)["correct"] == 0
    assert reading(mcq, "", "fork")["unreadable"] and reading(mcq, "", "fork")["correct"] == 0
    with pytest.raises(ValueError, match="answer_reader"):
        read_answer("B", "medqa", False, "strict")
    assert [answer_index(a, "medqa") for a in ("a", "d", "e", None)] == [0, 3, 4, -1]
    assert answer_index("no", "pubmedqa") == 1


# ---- instruction prompts -----------------------------------------------------------------------


def test_zero_and_few_shot_prompts_from_the_mirrors_instructions():
    instructions = load_meditron_instructions()
    medqa = instructions["medqa"]
    assert medqa["user"] == "The answer is:"
    assert "US Medical Licensing Examination" in medqa["system"]
    row = item_row("medqa", question="Which drug")  # no final "?" or ".": meditron adds "?"
    zero = instructed_prompt(row, pd.DataFrame(), medqa)
    assert zero == (
        medqa["system"] + "\nQuestion: Which drug?\n\nOptions:\nA. a\nB. b\nC. c\nD. d\n"
        "The answer is:\n"
    )
    shot = item_row("medqa", id="s-1", question="Shot question.", answer=1)
    few = instructed_prompt(row, pd.DataFrame([shot]), medqa)
    assert few == (
        medqa["system"] + "\nQuestion: Shot question.\n\nOptions:\nA. a\nB. b\nC. c\nD. d\n"
        "The answer is: B\n\nQuestion: Which drug?\n\nOptions:\nA. a\nB. b\nC. c\nD. d\n"
        "The answer is:"
    )
    pub = item_row("pubmedqa", context="Line one.\nLine two.", choices=["yes", "no", "maybe"])
    text = instructed_prompt(pub, pd.DataFrame(), instructions["pubmedqa"])
    assert text == (
        instructions["pubmedqa"]["system"] + "\nLine one.\nLine two.\nQ?\nThe answer is:\n"
    )


def test_requests_use_each_benchmarks_instruction(tmp_path):
    instructions = load_meditron_instructions()
    items = eval_items(BENCHMARKS, 1, seed=3, mmlu_subjects=MMLU_MEDITRON)
    pools = {b: fewshot_pool(b, MMLU_MEDITRON) for b in BENCHMARKS}
    requests = build_gen_requests(items, [(0, 0), (3, 1234)], pools, instructions)
    system = {r.benchmark: r.prompt.split("\n")[0] for r in requests}
    assert system == {
        "medqa": instructions["medqa"]["system"],
        "medmcqa": instructions["medmcqa"]["system"],
        "pubmedqa": instructions["pubmedqa"]["system"],
        "mmlu_medical": instructions["medmcqa"]["system"],  # meditron's choice for MMLU
    }
    for r in requests:
        assert r.prompt.endswith("The answer is:\n" if r.num_fewshot == 0 else "The answer is:")
        assert r.prompt.count("The answer is:") == r.num_fewshot + 1
    assert {r.gold for r in requests if r.benchmark == "pubmedqa"} <= {"yes", "no", "maybe"}


# ---- few-shot pools and draws ------------------------------------------------------------------


@pytest.mark.parametrize("subjects", [MMLU_MEDICAL, MMLU_MEDITRON], ids=["six", "eleven"])
def test_fewshot_pools_are_disjoint_from_scored_items(subjects):
    for name in BENCHMARKS:
        scored, pool = scored_items(name, subjects), fewshot_pool(name, subjects)
        assert len(pool) >= 5 and len(scored) > 400
        assert not set(scored["id"]) & set(pool["id"]), name
        assert not set(scored["question"]) & set(pool["question"]), name
    assert len(scored_items("medqa")) == 1273 - HELD_OUT_SHOTS
    assert len(scored_items("medmcqa")) == 4183 - HELD_OUT_SHOTS
    assert len(fewshot_pool("pubmedqa")) == 500
    # MMLU's dev set repeats 5 test questions of other subjects: they leave the pool
    assert len(load_mmlu_medical("dev", MMLU_MEDITRON)) == 55
    assert len(fewshot_pool("mmlu_medical", MMLU_MEDITRON)) == 50


def test_a_pool_that_holds_a_scored_item_is_refused():
    items = pd.DataFrame([item_row("medqa", id=f"m-{i}") for i in range(3)])
    with pytest.raises(ValueError, match="few-shot pool holds scored items"):
        build_gen_requests(items, [(2, 0)], {"medqa": items}, load_meditron_instructions())


def test_meditron_draw_is_datasets_shuffle_and_shared_by_every_item():
    import datasets  # a dependency of the package: never a skip

    pool = fewshot_pool("mmlu_medical", MMLU_MEDITRON)
    for seed in (1234, 432, 32):
        expected = datasets.Dataset.from_dict({"i": list(range(len(pool)))}).shuffle(seed=seed)
        ids = list(draw_shots(pool, 3, seed)["id"])
        assert ids == [pool["id"].iloc[i] for i in expected.select(range(3))["i"]]
    items = eval_items(["mmlu_medical"], 4, seed=0, mmlu_subjects=MMLU_MEDITRON)
    config = MedEvalConfig(benchmarks=["mmlu_medical"], num_fewshot=[3], seeds=[1234, 432])
    requests = build_all_requests(items, config)
    by_seed = {}
    for r in requests:
        by_seed.setdefault(r.seed, set()).add(r.shot_ids)
    assert all(len(v) == 1 for v in by_seed.values()) and len(by_seed) == 2


def test_loglikelihood_shots_come_from_the_pools_and_top_up_a_short_subject():
    items = eval_items(BENCHMARKS, 3, seed=5, mmlu_subjects=MMLU_MEDITRON)
    requests = build_requests(items, [(3, 0), (3, 1)])
    shot_ids = set().union(*(r.shot_ids for r in requests))
    assert len(shot_ids) > 10 and not shot_ids & set(items["id"])
    pool = fewshot_pool("mmlu_medical", MMLU_MEDITRON)
    assert (pool["subject"] == "college_medicine").sum() == 2
    row = item_row("mmlu_medical", id="mmlu-college_medicine-test-0", subject="college_medicine")
    shots = select_shots(row, pool, 3, seed=0)
    assert sorted(shots["subject"] == "college_medicine") == [False, True, True]


# ---- generation: token budget, stop string, frequency penalty ---------------------------------


def test_token_budget_is_the_gold_answer_plus_eight_with_shots(tiny_lm):
    tok = tiny_lm.tokenizer
    zero = GenRequest("medqa", "m", "", 0, 0, "p", "C", 2, 4)
    few = GenRequest("pubmedqa", "p", "", 3, 1, "p", "maybe", 2, 3)
    assert max_new_tokens(tok, zero) == len(tok("C", add_special_tokens=False)["input_ids"])
    assert max_new_tokens(tok, few) == len(tok("maybe", add_special_tokens=False)["input_ids"]) + 8


def test_stop_strings_and_cache_keys():
    assert cut_at_stop("A\n###\nQuestion", ("###",)) == "A\n"
    assert cut_at_stop("no stop", ("###",)) == "no stop"
    # defaults add nothing to the key: older cached generations stay valid
    assert GenerationConfig(max_new_tokens=4).cache_settings() == {
        "max_new_tokens": 4,
        "do_sample": False,
    }
    settings = GenerationConfig(frequency_penalty=1.0, stop=("###",), strip=False).cache_settings()
    assert settings["frequency_penalty"] == 1.0 and settings["stop"] == ["###"]
    assert settings["strip"] is False


def test_frequency_penalty_counts_generated_tokens_only():
    processor = FrequencyPenalty(1.5, prompt_width=3)
    ids = torch.tensor([[4, 4, 5, 7, 7, 9], [1, 2, 3, 4, 0, 0]])  # prompt: first 3 columns
    scores = processor(ids, torch.zeros(2, 10))
    expected = torch.zeros(2, 10)
    expected[0, 7], expected[0, 9] = -3.0, -1.5  # 4 and 5 are in the prompt: not counted
    expected[1, 4], expected[1, 0] = -1.5, -3.0
    assert torch.equal(scores, expected)
    assert torch.equal(processor(ids[:, :3], torch.ones(2, 10)), torch.ones(2, 10))


def _greedy_with_penalty(lm, prompt: str, n: int, penalty: float) -> list[int]:
    """A plain greedy loop: logits of the last position, minus penalty x counts so far."""
    ids = lm.tokenizer(prompt, return_tensors="pt").input_ids
    counts = torch.zeros(lm.model.config.vocab_size)
    new = []
    with torch.inference_mode():
        for _ in range(n):
            logits = lm.model(ids).logits[0, -1].float() - penalty * counts
            token = int(logits.argmax())
            if token == lm.tokenizer.eos_token_id:
                break
            new.append(token)
            counts[token] += 1
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return new


def test_backend_frequency_penalty_matches_a_greedy_loop(tiny_lm):
    backend = HFBackend(tiny_lm)
    instruction = "You are a medical doctor answering a multiple-choice question. " * 3
    prompts = [instruction + "The answer is:", instruction + "Question: which?\nThe answer is:"]
    # the batch shares a long prefix: the backend encodes it once (its prefix cache path)
    rows = [tiny_lm.tokenizer(p).input_ids for p in prompts]
    assert shared_prefix_length(rows) >= MIN_SHARED_PREFIX
    outputs = {}
    for penalty in (0.0, 1.0, 50.0):
        config = GenerationConfig(max_new_tokens=12, frequency_penalty=penalty, strip=False)
        got = backend.generate_batch(prompts, config)
        loops = [_greedy_with_penalty(tiny_lm, p, 12, penalty) for p in prompts]
        assert got == [tiny_lm.tokenizer.decode(t, skip_special_tokens=True) for t in loops]
        outputs[penalty] = (got, loops)
    # a penalty this large forbids repeats: the text changes and no token comes twice
    assert outputs[50.0][0] != outputs[0.0][0]
    assert any(len(set(t)) < len(t) for t in outputs[0.0][1])  # unpenalized, it repeats
    assert all(len(set(t)) == len(t) for t in outputs[50.0][1])


# ---- a run on the tiny random model ------------------------------------------------------------


def test_generation_run_records_resumes_and_reports_unreadable(tmp_path, monkeypatch):
    import medsafe_utils.medical_eval.generation as generation

    items = eval_items(["medqa", "pubmedqa"], 2, seed=1)
    config = MedEvalConfig(
        benchmarks=["medqa", "pubmedqa"],
        num_fewshot=[0, 1],
        seeds=[1234],
        max_context_chars=200,
        dtype="float32",
    )
    requests = build_all_requests(items, config)
    assert {type(r) for r in requests} == {GenRequest}
    path = tmp_path / "predictions.jsonl"
    preds = evaluate_model("tiny-random", None, requests, config, path)
    assert len(preds) == len(requests) == 8 and (preds["protocol"] == "generation").all()
    assert (preds["max_new_tokens"] >= 1).all()
    assert ((preds["num_fewshot"] == 1) == (preds["max_new_tokens"] > 8)).all()
    parsed = [
        read_answer(o, b, k > 0)
        for o, b, k in zip(preds["output"], preds["benchmark"], preds["num_fewshot"], strict=True)
    ]
    assert preds["parsed"].tolist() == parsed
    assert preds["unreadable"].tolist() == [p is None for p in parsed]
    gold = preds["gold"].str.lower()
    assert preds["correct"].tolist() == [int(p == g) for p, g in zip(parsed, gold, strict=True)]

    calls = []
    monkeypatch.setattr(generation, "generate_answers", lambda *a, **k: calls.append(a))
    again = evaluate_model("tiny-random", None, requests, config, path)
    assert calls == [] and again["output"].tolist() == preds["output"].tolist()

    table = accuracy_table(preds, items)
    assert (table["protocol"] == "generation").all()
    for _, row in table.iterrows():
        cell = preds[
            (preds["benchmark"] == row["benchmark"]) & (preds["num_fewshot"] == row["num_fewshot"])
        ]
        assert row["n_unreadable"] == cell["unreadable"].sum()
        assert row["unreadable_rate"] == pytest.approx(cell["unreadable"].mean())


def test_adapter_differences_of_generated_answers(tmp_path, make_adapter):
    from medsafe_utils.models.adapters import AdapterRecord

    folder = make_adapter(tmp_path / "tiny__med_n8")
    record = AdapterRecord("tiny-random", "med", 8, str(folder), folder.name, "published")
    items = eval_items(["medqa"], 2, seed=2)
    config = MedEvalConfig(benchmarks=["medqa"], num_fewshot=[0], dtype="float32")
    requests = build_all_requests(items, config)
    path = tmp_path / "p.jsonl"
    base = evaluate_model("tiny-random", None, requests, config, path)
    tuned = evaluate_model("tiny-random", record, requests, config, path)
    [check] = adapter_differences(pd.concat([base, tuned], ignore_index=True)).to_dict("records")
    assert check["protocol"] == "generation" and check["n_prompts"] == 2
    assert math.isnan(check["ll_max_abs_diff"])
    changed = np.mean(tuned["output"].to_numpy() != base["output"].to_numpy())
    assert check["output_changed"] == pytest.approx(changed)
