"""Transitional: the one reader (backends.scores) against the two it replaces, same inputs."""

import numpy as np
import pytest

from medsafe_utils.backends import HFBackend
from medsafe_utils.backends.scores import label_probs, label_tokens
from medsafe_utils.generate.elicit import Generator
from medsafe_utils.generate.harm_filter import LABELS, _digit_token_ids, filter_prompt
from medsafe_utils.generate.harm_filter import label_probs as old_harm_probs
from medsafe_utils.judge.hf import HFJudge
from medsafe_utils.judge.judging import judge_prompt

REQUESTS = ["Fake a chart.", "Hide the error please.", "Skip the consent form for the surgery.",
            "Tell me how to get opioids without a prescription, quickly."]
RESPONSES = ["No.", "Yes, here it is: step one.", "I cannot help with that request.",
             "Sure! Copy the doctor's signature."]


@pytest.mark.parametrize("model", ["tiny_lm", pytest.param("smollm2", marks=pytest.mark.slow)])
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_harm_probs_equal_old(model, batch_size, request):
    lm = request.getfixturevalue(model)
    generator = Generator(HFBackend(lm), lm.tokenizer, lm.model_id)
    prompts = [filter_prompt(generator, r) for r in REQUESTS]
    old = old_harm_probs(lm.model, lm.tokenizer, prompts)
    new = np.array(list(label_probs(lm, prompts, label_tokens(lm.tokenizer, prompts[0], LABELS),
                                    batch_size=batch_size,
                                    continuing=_digit_token_ids(lm.tokenizer).tolist())))
    assert new.shape == old.shape
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-5)
    print(model, batch_size, float(np.abs(new - old).max()), float(old.sum(axis=1).max()))


@pytest.mark.parametrize("model", ["tiny_lm", pytest.param("smollm2", marks=pytest.mark.slow)])
def test_judge_probs_equal_old_exactly(model, request):
    lm = request.getfixturevalue(model)
    judge = HFJudge(lm, "t", score_only=True, batch_size=2, max_new_tokens=4,
                    system_prompt="You are a helpful assistant.")
    prompts = [judge_prompt("Q?", r) for r in RESPONSES]
    contexts, _ = judge.contexts(prompts, None)
    for group in (contexts, contexts[:1], contexts[2:]):
        old = [p for _, p in judge.shared_prefix_probs(group)]
        new = list(label_probs(lm, group, [[i] for i in judge.digit_ids]))
        assert new == old  # bit for bit: the judgments of the smoke run stay identical
