"""07's generation protocol against th789/meditron's own code, executed from the data mirror at
test time (tests/released.py): its answer reader `eval()` on a corpus of outputs (FIDELITY row 16),
its token budget `tokenizer_param()` on real batches of the smoke items with SmolLM2's tokenizer
(row 17), and its prompt (`format_mcq`, ClosedPubMedQA's layout, `add_instruction`'s template,
`format_prompt`) on real items (row 3). Each check names its row; a drifted variant must fail."""

from __future__ import annotations

import ast
import re
from argparse import Namespace
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from released import BENCHMARKS, EVALUATE, INFERENCE, assigned, function, functions, tree

from medsafe_utils.medical_eval.answers import read_answer
from medsafe_utils.medical_eval.evaluate import MedEvalConfig, build_all_requests, eval_items
from medsafe_utils.medical_eval.generation import fork_batches, token_budgets
from medsafe_utils.medical_eval.instructed import (
    INSTRUCTION_OF,
    gold_text,
    instructed_prompt,
    question_block,
)
from medsafe_utils.models import load_tokenizer

FORK_NAME = {"medqa": "medqa4", "medmcqa": "medmcqa", "pubmedqa": "pubmedqa"}
FORK_NAME["mmlu_medical"] = "mmlu_medical"  # our 4-option MedQA is the fork's medqa4
ROW16 = "FIDELITY row 16 (07 answer reader)"
ROW17 = "FIDELITY row 17 (07 budget and batching)"
ROW3 = "FIDELITY row 3 (medical evaluation method)"


def fork_reader():
    """The fork's eval() with the cleaners it calls, from evaluate.py."""
    names = ("eval", "clean_mcq_answer", "clean_double_answer", "clean_answer")
    return functions(EVALUATE, *names, namespace={"re": re}).eval


# Outputs as generations come: the fork's quirks, answers in many shapes, unicode, nothing.
CORPUS = [
    "B",
    "b",
    " B",
    "B.",
    "B)",
    "(B)",
    "[C]",
    "**D**",
    "'B",
    '"A"',
    "B. Paris",
    "b: because",
    "Answer: B",
    "answer: b",
    "The answer is: C",
    "The answer is B",
    "A\n\nQuestion: next",
    "\n\nA",
    "\n## Answer\nB",
    "E",
    "e) none",
    "F",
    "Z",
    "C, D",
    "CD",
    "option C",
    "c.d",
    "yes",
    "Yes.",
    " YES",
    "yes, because the trial showed",
    "Yes\n\nno",
    "no",
    "No.",
    "NO!",
    "no, the data",
    "maybe",
    "Maybe",
    "MAYBE.",
    "maybe yes",
    "yesno",
    "noyes",
    "yesyes",
    "nono",
    "yesyesyes",
    "nonono",
    "yesnoyes",
    "yesnothing",
    "nope",
    "yeah",
    "Yes-no",
    "not sure",
    "unknown",
    "",
    " ",
    "\n",
    "\t\n ",
    "###",
    "...",
    "42",
    "4",
    "1. A",
    "2)",
    "A1",
    "ａ",
    "Ｂ",
    "é",
    "Éb",
    "café",
    "İ",
    "K",
    "ß",
    "ﬁ",
    "B\u200b",
    "\u00a0C",
    "—D",
    "«yes»",
    "yes\u3002",
    "是 yes",
    "ЯB",
    "Б",
    "🙂 A",
    "A🙂",
    "\x00B",
    "_b",
    "b_c",
    "a\ufe0f",
    "Ａnswer",
    "𝐀",
    "\u0301a",
]
REAL_LOOKING = {
    "mcq": [
        " A. Lisinopril\n\nQuestion: A 45-year-old man presents with",
        " C\nThe answer is: C",
        "D. Increased serum potassium ###",
        " The correct answer is B. Metformin",
        " Option A is correct because the patient",
        "B\n\nExplanation: the",
        "\n\nB",
        "1) Aspirin",
        " I'm not able to answer medical questions.",
    ],
    "boolean": [
        " yes\n\nThe answer is: yes",
        " no. The study found no difference",
        " Maybe. The results were inconclusive",
        " Yes, the results suggest that",
        "\nno",
        " The answer is yes",
        " It is unclear whether",
        " yes###",
    ],
}
GOLDS = {"mcq": ["A", "B", "C", "D"], "boolean": ["yes", "no", "maybe"]}
BENCHMARK_OF = {"mcq": "medqa", "boolean": "pubmedqa"}


def reader_disagreements(ours: Callable[[str, str, bool], str | None]) -> list[tuple]:
    """Every (output, answer type, gold, shots) where `ours` reads other than the fork's eval()."""
    fork = fork_reader()
    found = []
    for answer_type, golds in GOLDS.items():
        benchmark = BENCHMARK_OF[answer_type]
        for output in CORPUS + REAL_LOOKING[answer_type]:
            for gold in golds:
                for shots in (False, True):
                    # accuracy_metric lower-cases both before eval(), as here
                    correct, pred, _ = fork(output.lower(), gold.lower(), shots, False, answer_type)
                    theirs = (None, False) if correct == 2 else (pred, bool(correct))
                    read = ours(output, benchmark, shots)
                    mine = (read, read is not None and read == gold.lower())
                    if mine != theirs:
                        found.append((output, answer_type, gold, shots, theirs, mine))
    return found


def check_reader(ours: Callable[[str, str, bool], str | None]) -> None:
    """Fails, naming row 16, unless `ours` reads every corpus output as the fork does."""
    wrong = reader_disagreements(ours)
    assert not wrong, f"{ROW16}: {len(wrong)} readings differ from the fork's eval(): {wrong[:5]}"


def test_the_fork_reader_reads_as_the_forks_eval():
    check_reader(lambda o, b, shots: read_answer(o, b, shots, "fork"))
    fork = fork_reader()
    # the quirks the corpus is there for, as the fork reads them
    assert fork("answer: b", "b")[:2] == (False, "a")
    assert fork("yes, because", "yes", answer_type="boolean")[:2] == (True, "yes")
    assert fork("yesno", "no", answer_type="boolean")[:2] == (False, "yes")
    assert fork("maybe", "maybe", answer_type="boolean")[:2] == (True, "maybe")


def test_the_upstream_reader_is_a_drift_that_names_row_16():
    with pytest.raises(AssertionError, match=re.escape(ROW16)):
        check_reader(lambda o, b, shots: read_answer(o, b, shots, "upstream"))


def test_the_fork_scores_pubmedqa_as_boolean_and_the_rest_as_mcq():
    types = assigned(EVALUATE, "benchmark_output_type")
    for ours, theirs in FORK_NAME.items():
        expected = "boolean" if ours == "pubmedqa" else "mcq"
        assert types[theirs] == expected, f"{ROW16}: the fork reads {theirs} as {types[theirs]}"


# ---- budgets -----------------------------------------------------------------------------------


def fork_budgets(tokenizer, requests: Sequence, batch_size: int) -> list[int]:
    """The fork's budgets: tokenizer_param on each batch's list of golds, its task type from
    inference.py's INSTRUCTIONS (what main() sets args.task_type to)."""
    tokenizer_param = function(INFERENCE, "tokenizer_param")
    tasks = assigned(INFERENCE, "INSTRUCTIONS")
    budgets = [0] * len(requests)
    for batch in fork_batches(requests, batch_size):
        first = requests[batch[0]]
        golds = [requests[j].gold for j in batch]
        task = tasks[FORK_NAME[first.benchmark]]["task"]
        n, _stop = tokenizer_param(tokenizer, golds, shots=first.num_fewshot, task_type=task)
        for j in batch:
            budgets[j] = n
    return budgets


def check_budgets(ours: list[int], theirs: list[int], requests: Sequence) -> None:
    """Fails, naming row 17, where a request's budget is not the fork's."""
    wrong = [
        (r.benchmark, r.item_id, r.num_fewshot, a, b)
        for r, a, b in zip(requests, ours, theirs, strict=True)
        if a != b
    ]
    assert not wrong, f"{ROW17}: {len(wrong)} budgets differ from tokenizer_param's: {wrong[:5]}"


@pytest.fixture(scope="module")
def smoke_requests():
    """Generation requests of real items: 40 per benchmark (so batches of 16 and 32 hold other
    golds first), zero-shot and 1-shot."""
    items = eval_items(["medqa", "medmcqa", "pubmedqa", "mmlu_medical"], 40, seed=0)
    config = MedEvalConfig(num_fewshot=[0, 1], seeds=[7825], max_context_chars=100)
    return build_all_requests(items, config)


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.mark.parametrize("batch_size", [32, 16, 5])
def test_released_budgets_are_the_forks_tokenizer_param(
    smoke_requests, smollm2_tokenizer, batch_size
):
    tok = smollm2_tokenizer
    theirs = fork_budgets(tok, smoke_requests, batch_size)
    check_budgets(
        token_budgets(tok, smoke_requests, "released", batch_size), theirs, smoke_requests
    )
    assert {r.num_fewshot for r in smoke_requests} == {0, 1} and min(theirs) >= 1


def test_a_drifted_budget_names_row_17(smoke_requests, smollm2_tokenizer):
    tok = smollm2_tokenizer
    theirs = fork_budgets(tok, smoke_requests, 32)
    drifted = [
        n - 8 if r.num_fewshot else n
        for r, n in zip(
            smoke_requests, token_budgets(tok, smoke_requests, "released", 32), strict=True
        )
    ]
    with pytest.raises(AssertionError, match=re.escape(ROW17)):
        check_budgets(drifted, theirs, smoke_requests)


def test_a_batch_takes_its_first_golds_budget(smollm2_tokenizer):
    """A gold of several tokens first in its batch sets the budget of the whole batch, in the
    fork and here; per_item gives each its own (a made-up gold, to see the rule act)."""
    tok = smollm2_tokenizer
    golds = ["antidisestablishment", "A", "B", "C"]
    assert len(tok(golds[0], add_special_tokens=False)["input_ids"]) > 1
    requests = [_Request("medqa", f"i{j}", 0, 0, g) for j, g in enumerate(golds)]
    released = token_budgets(tok, requests, "released", 2)
    check_budgets(released, fork_budgets(tok, requests, 2), requests)
    assert released[0] == released[1] > released[2] == released[3]
    per_item = token_budgets(tok, requests, "per_item", 2)
    assert per_item[1] < released[1]


class _Request(Namespace):
    """What budgets read of a GenRequest."""

    def __init__(self, benchmark, item_id, num_fewshot, seed, gold):
        super().__init__(
            benchmark=benchmark, item_id=item_id, num_fewshot=num_fewshot, seed=seed, gold=gold
        )


# ---- prompts -----------------------------------------------------------------------------------


def _method(class_name: str, name: str) -> Callable:
    """A released class's static method, executed from its source (decorators dropped)."""
    cls = next(
        n for n in tree(BENCHMARKS).body if isinstance(n, ast.ClassDef) and n.name == class_name
    )
    node = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name)
    node = ast.FunctionDef(**{**node.__dict__, "decorator_list": []})
    scope: dict = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), BENCHMARKS, "exec"), scope)  # noqa: S102
    return scope[name]


def _format_strings(function_name: str) -> list[str]:
    """The string constants a released function (or method) of benchmarks.py calls .format on."""
    found = next(
        n
        for n in ast.walk(tree(BENCHMARKS))
        if isinstance(n, ast.FunctionDef) and n.name == function_name
    )
    calls = [
        c
        for c in ast.walk(found)
        if isinstance(c, ast.Call)
        and isinstance(c.func, ast.Attribute)
        and c.func.attr == "format"
        and isinstance(c.func.value, ast.Constant)
    ]
    return [c.func.value.value for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def fork_prompt(body: str, shots: list[tuple[str, str]], instruction: dict) -> str:
    """Benchmark.add_few_shot then add_instruction, by their own format strings: the train
    examples' (question block, gold) pairs before the item, the instruction around both."""
    template = _format_strings("_add_instruction")[0]  # the other one formats a CoT gold
    _assert_message, shot_format, join_format = _format_strings("add_few_shot")
    if shots:
        body = join_format.format("\n\n".join(shot_format.format(q, g) for q, g in shots), body)
    return template.format(instruction["system"], body, instruction["user"])


def test_zero_and_few_shot_prompts_are_the_forks():
    from medsafe_utils.data import load_meditron_instructions

    instructions = load_meditron_instructions()
    format_mcq = function(BENCHMARKS, "format_mcq")
    format_prompt = function(INFERENCE, "format_prompt", namespace={"np": np})
    closed_pubmedqa = _method("ClosedPubMedQA", "custom_preprocessing")
    fork_tasks = assigned(INFERENCE, "INSTRUCTIONS")
    items = eval_items(["medqa", "medmcqa", "pubmedqa", "mmlu_medical"], 5, seed=3)

    def fork_block(row) -> str:
        if row["benchmark"] == "pubmedqa":
            record = {
                "CONTEXTS": row["context"].split("\n"),
                "QUESTION": row["question"],
                "final_decision": "yes",
                "LONG_ANSWER": "",
            }
            return closed_pubmedqa(record)["prompt"]
        return format_mcq(row["question"], list(row["choices"]))

    for _, row in items.iterrows():
        name = FORK_NAME[row["benchmark"]]
        assert INSTRUCTION_OF[row["benchmark"]] == fork_tasks[name]["instructions"], ROW3
        instruction = instructions[INSTRUCTION_OF[row["benchmark"]]]
        assert question_block(row) == fork_block(row), f"{ROW3}: {row['id']}'s question block"
        shots = items[items["benchmark"] == row["benchmark"]].drop(row.name).head(2)
        pairs = [(fork_block(s), gold_text(s)) for _, s in shots.iterrows()]
        for model in ("medalpaca-7b", "medalpaca-13b", "meditron-7b"):  # the paper's bases
            for k, ours in (
                (0, instructed_prompt(row, shots.head(0), instruction)),
                (2, instructed_prompt(row, shots, instruction)),
            ):
                args = Namespace(shots=k, checkpoint_name=model)
                theirs = format_prompt(fork_prompt(fork_block(row), pairs[:k], instruction), args)
                assert ours == theirs, f"{ROW3}: {row['id']}'s {k}-shot prompt for {model}"
