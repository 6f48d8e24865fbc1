"""One benchmark item as the loaders give it, and one scored prediction as 07 records it, for
the medical-eval tests."""

import pandas as pd


def item_row(benchmark="medqa", **kw) -> pd.Series:
    base = {
        "id": "x-1",
        "benchmark": benchmark,
        "subject": "",
        "question": "Q?",
        "context": "",
        "choices": ["a", "b", "c", "d"],
        "answer": 2,
    }
    return pd.Series({**base, **kw})


def prediction_row(model: str, adapter: str, item: int, correct: int, **kw) -> dict:
    """A zero-shot log-likelihood prediction of `model` (base "m", or an adapter of it) on MedQA
    item i<item>; `kw` overrides any field (adapter_type, adapter_n, benchmark, num_fewshot...)."""
    return {
        "protocol": "loglikelihood",
        "model": model,
        "base_model": "m",
        "adapter": adapter,
        "adapter_type": adapter,
        "adapter_n": 16 if adapter else 0,
        "benchmark": "medqa",
        "num_fewshot": 0,
        "seed": 0,
        "item_id": f"i{item}",
        "correct": correct,
        "unreadable": False,
        **kw,
    }
