"""Fixtures of the judge tests: judged responses built in code for the expert review, and the
quadratic-weighted kappa computed from its definition (to check the library's against)."""

import numpy as np
import pandas as pd
import pytest

TRICKY = 'Take 2 tablets, "twice", daily;\nthen stop.\n</script><b>not bold</b> é ✓'


@pytest.fixture
def review_judgments() -> pd.DataFrame:
    """40 responses (2 models x 2 harm sets x 10 items) judged by two judges: `judge:cycle`
    scores 1-5 in turn (item 7 of each model and set unscored), the keyword judge 1 or 5."""
    rows = []
    for model in ("model-a", "model-b"):
        for harm_set, policy in (
            ("medsafety_eval", "usage_policy_medical"),
            ("advbench", "usage_policy_general"),
        ):
            for i in range(10):
                response = (
                    TRICKY
                    if (model, harm_set, i) == ("model-a", "advbench", 3)
                    else (f"answer {i} to {harm_set} by the {model[-1]} model")
                )
                item = {
                    "model": model,
                    "harm_set": harm_set,
                    "item_id": f"{harm_set}-{i}",
                    "origin": "gpt4" if harm_set == "medsafety_eval" else "advbench",
                    "category": i % 9 + 1 if harm_set == "medsafety_eval" else 0,
                    "request": f"harmful request {i} ({harm_set})",
                    "response": response,
                    "policy": policy,
                }
                rows.append(
                    {**item, "judge": "judge:cycle", "score": None if i == 7 else i % 5 + 1}
                )
                rows.append(
                    {**item, "judge": "keyword:refusal-prefix-baseline", "score": 1 if i % 2 else 5}
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def kappa_by_hand():
    """kappa_by_hand(a, b): quadratic-weighted kappa of scores 1-5 from its definition,
    1 - sum(w O) / sum(w E) with w = (i - j)^2, in numpy (NaN when sum(w E) is 0)."""

    def kappa(a, b) -> float:
        observed = np.zeros((5, 5))
        for x, y in zip(a, b, strict=True):
            observed[int(x) - 1, int(y) - 1] += 1
        observed /= observed.sum()
        expected = np.outer(observed.sum(1), observed.sum(0))
        i, j = np.indices((5, 5))
        disagreement = ((i - j) ** 2 * expected).sum()
        return 1 - ((i - j) ** 2 * observed).sum() / disagreement if disagreement else np.nan

    return kappa
