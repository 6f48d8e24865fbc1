"""The score reader: label probabilities equal a plain full forward pass (shared prefix, batching
and padding change nothing), labels of several tokens are exact, and a label that begins another
counts only when the number ends there."""

import numpy as np
import pytest
import torch

from medsafe_utils.backends.scores import label_probs, label_tokens
from medsafe_utils.models.prompting import render_chat

QUESTIONS = [
    "Is it safe?",
    "Fake a chart for the audit, please.",
    "Hide the error.",
    "Skip the consent form for the surgery tomorrow morning.",
]
NUMBERS = [f" {k}" for k in range(11)]


def contexts(lm, prefill=" I would rate it"):
    system = "Rate the request from 0 to 10. " * 3  # a long prefix that every context shares
    return [
        render_chat(
            lm.tokenizer,
            [{"role": "system", "content": system}, {"role": "user", "content": q}],
            prefill=prefill,
        )
        for q in QUESTIONS
    ]


def full_forward(lm, context: str, continuation: list[int]) -> list[torch.Tensor]:
    """P(next token) at each position of `continuation` after `context`, one plain forward."""
    tok = lm.tokenizer
    ids = tok(context, add_special_tokens=not context.startswith(tok.bos_token or "\0")).input_ids
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids + continuation])).logits[0].float()
    return [logits[len(ids) - 1 + j].softmax(-1) for j in range(len(continuation) + 1)]


def digit_ids(tokenizer) -> list[int]:
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [i for i, t in enumerate(vocab) if t and t[0].isdigit()]


@pytest.mark.parametrize("model", ["tiny_lm", pytest.param("smollm2", marks=pytest.mark.slow)])
def test_single_token_labels_equal_full_forward(model, request):
    lm = request.getfixturevalue(model)
    texts = contexts(lm, prefill="#score:")
    labels = label_tokens(lm.tokenizer, texts[0], [" 1", " 2", " 3"])
    ids = [lab[-1] for lab in labels]
    for batch_size in (1, 3):
        read = list(label_probs(lm, texts, [[i] for i in ids], batch_size=batch_size))
        for context, probs in zip(texts, read, strict=True):
            full = full_forward(lm, context, [])[0][ids].tolist()
            assert probs == pytest.approx(full, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("model", ["tiny_lm", pytest.param("smollm2", marks=pytest.mark.slow)])
def test_multi_token_labels_are_exact(model, request):
    lm = request.getfixturevalue(model)
    texts = contexts(lm)
    labels = label_tokens(lm.tokenizer, texts[0], NUMBERS)
    assert any(len(lab) > 1 for lab in labels)  # both models write ' 7' as ' ' + '7'
    ten, one = labels[10], labels[1]
    assert ten[: len(one)] == one  # ' 1' begins ' 10': counted only when no digit follows
    digits = digit_ids(lm.tokenizer)
    by_batch = [
        np.array(list(label_probs(lm, texts, labels, batch_size=b, continuing=digits)))
        for b in (1, 4)
    ]
    np.testing.assert_allclose(by_batch[0], by_batch[1], rtol=1e-4, atol=1e-9)
    for row, context in enumerate(texts):
        for k in (7, 10, 1):
            steps = full_forward(lm, context, labels[k])
            p = np.prod([steps[j][t].item() for j, t in enumerate(labels[k])])
            if k == 1:
                p *= 1 - steps[-1][digits].sum().item()
            assert by_batch[1][row, k] == pytest.approx(p, rel=1e-3, abs=1e-9)


def test_label_that_begins_another_needs_continuing(tiny_lm):
    texts = contexts(tiny_lm)
    with pytest.raises(ValueError, match="begin other labels"):
        list(label_probs(tiny_lm, texts, label_tokens(tiny_lm.tokenizer, texts[0], NUMBERS)))
    assert list(label_probs(tiny_lm, [], [[5]])) == []
