"""Tables and metrics of the medical evaluation (07) from its per-item predictions: one row per
protocol x model x benchmark x shot count, so every number says which protocol produced it, and
how many generated answers could not be read (counted as wrong)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medsafe_utils.core.stats import paired_test, standard_error

GROUP = [
    "protocol",
    "model",
    "base_model",
    "adapter",
    "adapter_type",
    "adapter_n",
    "benchmark",
    "num_fewshot",
]
COLUMNS = [
    *GROUP,
    "n_items",
    "n_seeds",
    "accuracy",
    "se",
    "seed_sd",
    "n_unreadable",
    "unreadable_rate",
    "base_accuracy",
    "delta",
    "delta_se",
    "test",
    "statistic",
    "p_value",
    "n_better",
    "n_worse",
]


def item_correctness(group: pd.DataFrame) -> pd.Series:
    """Per-item correctness, averaged over few-shot seeds (index: item_id)."""
    return group.groupby("item_id")["correct"].mean()


def _row(keys: tuple, group: pd.DataFrame, base: pd.Series | None) -> dict:
    per_item = item_correctness(group)
    per_seed = group.groupby("seed")["correct"].mean()
    row = dict(zip(GROUP, keys, strict=True))
    row.update(
        n_items=len(per_item),
        n_seeds=len(per_seed),
        accuracy=per_item.mean(),
        se=standard_error(per_item),
        seed_sd=per_seed.std(ddof=1) if len(per_seed) > 1 else np.nan,
        # answers (item x seed) that could not be read, all scored as wrong
        n_unreadable=int(group["unreadable"].astype(bool).sum()),
        unreadable_rate=float(group["unreadable"].astype(bool).mean()),
    )
    if base is not None:
        if set(base.index) != set(per_item.index):
            raise ValueError(
                f"{row['model']} / {row['benchmark']}: items differ from the base "
                f"model's ({len(per_item)} vs {len(base)}); a paired test needs both"
            )
        test = paired_test(
            base.loc[per_item.index].to_numpy(), per_item.to_numpy(), binary=len(per_seed) == 1
        )
        row.update(
            base_accuracy=base.mean(),
            delta=test.delta,
            delta_se=test.delta_se,
            test=test.test,
            statistic=test.statistic,
            p_value=test.p_value,
            n_better=test.n_better,
            n_worse=test.n_worse,
        )
    return row


def accuracy_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Accuracy ± SE per protocol × model × benchmark × shots; adapters also: change from base
    (same protocol, same items), paired test."""
    base_items = {
        keys: item_correctness(g)
        for keys, g in predictions[predictions["adapter"] == ""].groupby(
            ["protocol", "model", "benchmark", "num_fewshot"]
        )
    }
    rows = []
    for keys, group in predictions.groupby(GROUP, sort=False):
        key = dict(zip(GROUP, keys, strict=True))
        base = None
        if key["adapter"]:
            base = base_items.get(
                (key["protocol"], key["base_model"], key["benchmark"], key["num_fewshot"])
            )
            if base is None:
                raise ValueError(
                    f"{key['model']}: no base-model {key['protocol']} run of "
                    f"{key['benchmark']} with {key['num_fewshot']} shots to compare with"
                )
        rows.append(_row(keys, group, base))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["test"] = table["test"].fillna("")
    return table.sort_values(
        ["protocol", "base_model", "adapter", "benchmark", "num_fewshot"], ignore_index=True
    )


def medeval_metrics(table: pd.DataFrame, checks: pd.DataFrame, predictions: pd.DataFrame) -> dict:
    """Flat scalars per protocol/model/benchmark/shots: accuracy, SE, unreadable answers, change
    and p-value; adapter checks."""
    metrics = {
        "n_predictions": len(predictions),
        "n_models": int(predictions["model"].nunique()),
        "n_adapters": int(predictions.loc[predictions["adapter"] != "", "model"].nunique()),
        "truncated_share": float(predictions["truncated"].mean()),
        "unreadable_share": float(predictions["unreadable"].astype(bool).mean()),
    }
    for benchmark, group in predictions.groupby("benchmark"):
        metrics[f"n_items/{benchmark}"] = int(group["item_id"].nunique())
    for _, r in table.iterrows():
        cell = f"{r['protocol']}/{r['model']}/{r['benchmark']}/k{r['num_fewshot']}"
        metrics[f"acc/{cell}"] = r["accuracy"]
        metrics[f"se/{cell}"] = r["se"]
        metrics[f"unreadable/{cell}"] = r["unreadable_rate"]
        if r["adapter"]:
            metrics[f"delta/{cell}"] = r["delta"]
            metrics[f"p/{cell}"] = r["p_value"]
    for (protocol, model, k), group in table.groupby(["protocol", "model", "num_fewshot"]):
        metrics[f"acc_mean/{protocol}/{model}/k{k}"] = group["accuracy"].mean()
    for _, r in checks.iterrows():
        if r["protocol"] == "loglikelihood":
            metrics[f"adapter_ll_max_abs_diff/{r['model']}"] = r["ll_max_abs_diff"]
        else:
            metrics[f"adapter_output_changed/{r['model']}"] = r["output_changed"]
        metrics[f"adapter_pred_changed/{r['protocol']}/{r['model']}"] = r["pred_changed"]
    return metrics
