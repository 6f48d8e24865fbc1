"""One benchmark item as the loaders give it, for the medical-eval tests."""

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
