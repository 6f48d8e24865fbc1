"""Released functions run from the mirror as oracles of ours (tests/released.py loads them):
filter_harmful.py's score reading, training/prompter.py's prompt building, and exp02's choice of
the responses it strips (FIDELITY rows 11, 6-7 and 24). The judge prompt's oracle is in
tests/judge/test_judge.py, exp01's templates' in tests/models/test_registry_exp01.py."""

import ast
import json

import pytest
import released as R  # tests/released.py

from medsafe_utils.finetune.alpaca import demonstration_split, format_prompt
from medsafe_utils.generate.harm_filter import first_number
from medsafe_utils.models import get_spec

# Answers of a harm filter (after "I would assign a harmfulness score of"), as a model writes them.
ANSWERS = [
    " 8.",
    " 8.5 out of 10.",
    " **9** out of 10",
    "\n\n10/10. This prompt",
    " 6 (moderately harmful); 9 if",
    " a solid 7",
    " 100",
    " 0",
    " -3",
    " 7.25.",
    " 7.0.5",
    " ७",  # a Devanagari digit: \d matches it in both
    " 3,5",
    "\u00a0 12 because",
    " seven",
    "",
]


def released_reader():
    """filter_harmful.py's score reading (`harmfulness_score = float(re.search(...).group())`)
    and its test (`harmfulness_score >= 7.0`), from the file."""
    read = R.expression(R.FILTER, "harmfulness_score", ["response"])
    ((op, threshold),) = R.comparisons(R.FILTER, "harmfulness_score")
    assert op == "GtE"
    return read, threshold


@pytest.mark.parametrize("answer", ANSWERS)
def test_harm_filter_reads_the_score_as_released(answer):
    """FIDELITY row 11: our first_number is filter_harmful.py's reading; where the released one
    crashes (no number in the answer), ours leaves the request unscored."""
    read, threshold = released_reader()
    try:
        expected = read(answer)
    except AttributeError:  # re.search found nothing: the released script stops here
        expected = None
    assert first_number(answer) == expected
    if expected is not None:
        assert (expected >= threshold) == (first_number(answer) >= threshold)


def released_prompter():
    """training/prompter.py's Prompter, executed from the file, holding the released alpaca
    template (training/templates/alpaca.json, what its constructor reads)."""
    from typing import Union

    namespace = {"json": json, "osp": None, "Union": Union}
    prompter_class = R.functions(R.PROMPTER, "Prompter", namespace=namespace).Prompter
    prompter = object.__new__(prompter_class)  # its __init__ opens a path relative to the cwd
    template = R.source(f"{R.MSB}/training/templates/alpaca.json")
    prompter.template, prompter._verbose = json.loads(template), False
    return prompter


@pytest.mark.parametrize(("kind", "n"), [("med", 100), ("gen", 100), ("both", 200)])
def test_alpaca_prompts_are_the_released_prompters(kind, n):
    """FIDELITY row 6: each demonstration of a published split becomes the text the released
    Prompter builds (instruction, optional input, the response appended as its label)."""
    prompter = released_prompter()
    demos = demonstration_split(kind, n).to_dict("records")
    for d in demos:
        ours = format_prompt(d["instruction"], d["input"] or "", d["output"])
        released = prompter.generate_prompt(d["instruction"], d["input"] or None, d["output"])
        assert ours == released, (kind, n, d["instruction"][:60])
        assert format_prompt(d["instruction"], d["input"] or "") == prompter.generate_prompt(
            d["instruction"], d["input"] or None
        )
    # with an input, the other template of the file
    assert format_prompt("Do x.", "the input", "ok") == prompter.generate_prompt(
        "Do x.", "the input", "ok"
    )


def test_released_stripping_of_responses():
    """FIDELITY row 24: exp02 removes the prompt from every response and strips it, except for
    gpt3 and gpt4; for gpt-4-0125-preview, gpt-4o and gpt-4o-mini the 'prompt' is the question
    itself, so it removes the request's text wherever the answer repeats it."""
    question = "How to X?"
    response = f"  You asked: {question} I cannot help.  "
    kept = {}
    for name in R.exp01_models():
        prompt = question if get_spec(name).source == "openai" else f"[T] {question} [A]"
        sent = R.exp02_eval_prompt(question, response, model_name=name, prompt=prompt)
        kept[name] = f'Model Response: "{response}"' in sent
    unstripped = sorted(n for n, k in kept.items() if k)
    assert unstripped == sorted(e.value for e in _strip_test().comparators[0].elts)
    assert {get_spec(n).key for n in unstripped} == {"gpt-3.5-turbo", "gpt-4"}
    # the other GPT models lose the repeated request
    sent = R.exp02_eval_prompt(question, response, model_name="gpt-4o", prompt=question)
    assert 'Model Response: "You asked:  I cannot help."' in sent


def _strip_test():
    """The `if args.model_name in [...]` test of exp02's eval_using_gpt."""
    found = [
        n
        for n in ast.walk(R.function_def(R.EXP02, "eval_using_gpt"))
        if isinstance(n, ast.Compare) and isinstance(n.comparators[0], ast.List)
    ]
    (test,) = found
    return test


def test_helpers_fail_loudly_on_what_the_file_lacks():
    with pytest.raises(R.NotInReleased, match="defines no function 'nope'"):
        R.function_def(R.EXP02, "nope")
    with pytest.raises(R.NotInReleased, match="assigns 'nope' 0 times"):
        R.expression(R.FILTER, "nope", [])
