"""Tables and metrics of the medical evaluation (07) from its per-item predictions: one row per
protocol x model x benchmark x shot count, so every number says which protocol produced it, and
how many generated answers could not be read (counted as wrong).

Each accuracy carries a 95% interval and the benchmark's chance level, so that a reader sees
what a small run can and cannot show: with one run (one seed) the Wilson interval of the share of
items right; with correctness averaged over several few-shot seeds a t interval from the per-item
standard error (clipped to [0, 1]). Chance is what guessing uniformly among an item's options
scores, averaged over the benchmark's items (1/4 for four options, 1/3 for yes/no/maybe)."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from medsafe_utils.core.stats import mean_ci, paired_test, proportion_ci, standard_error

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
    "ci_low",
    "ci_high",
    "ci_method",
    "chance",
    "chance_in_ci",
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


def chance_levels(items: pd.DataFrame) -> pd.Series:
    """Per benchmark: the accuracy of a uniform guess, the mean of 1 / options over its items."""
    return (1 / items["choices"].map(len)).groupby(items["benchmark"]).mean().rename("chance")


def accuracy_ci(per_item: pd.Series, n_seeds: int) -> tuple[float, float, str]:
    """95% interval of an accuracy from per-item correctness: Wilson for one run (0/1 values),
    a t interval from the per-item standard error when averaged over seeds (clipped to [0, 1])."""
    if n_seeds == 1:
        low, high = proportion_ci(int(per_item.sum()), len(per_item))
        return low, high, "wilson"
    low, high = mean_ci(per_item)
    return max(low, 0.0), min(high, 1.0), "t"


def _row(keys: tuple, group: pd.DataFrame, base: pd.Series | None, chance: float) -> dict:
    per_item = item_correctness(group)
    per_seed = group.groupby("seed")["correct"].mean()
    low, high, method = accuracy_ci(per_item, len(per_seed))
    row = dict(zip(GROUP, keys, strict=True))
    row.update(
        n_items=len(per_item),
        n_seeds=len(per_seed),
        accuracy=per_item.mean(),
        se=standard_error(per_item),
        ci_low=low,
        ci_high=high,
        ci_method=method,
        chance=chance,
        chance_in_ci=bool(low <= chance <= high),
        seed_sd=per_seed.std(ddof=1),  # NaN for one seed
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
        row.update(base_accuracy=base.mean(), **asdict(test))
    return row


def accuracy_table(predictions: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Accuracy ± SE and its 95% interval per protocol × model × benchmark × shots, with the
    benchmark's chance level from `items` (the scored items); adapters also: change from base
    (same protocol, same items), paired test."""
    chance = chance_levels(items)
    missing = set(predictions["benchmark"]) - set(chance.index)
    if missing:
        raise ValueError(f"no items of {sorted(missing)} to compute their chance level from")
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
        rows.append(_row(keys, group, base, float(chance[key["benchmark"]])))
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
    for benchmark, chance in table.groupby("benchmark")["chance"].first().items():
        metrics[f"chance/{benchmark}"] = chance
    metrics["chance_in_ci_share"] = float(table["chance_in_ci"].mean())
    for _, r in table.iterrows():
        cell = f"{r['protocol']}/{r['model']}/{r['benchmark']}/k{r['num_fewshot']}"
        metrics[f"acc/{cell}"] = r["accuracy"]
        metrics[f"se/{cell}"] = r["se"]
        metrics[f"ci_low/{cell}"] = r["ci_low"]
        metrics[f"ci_high/{cell}"] = r["ci_high"]
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
