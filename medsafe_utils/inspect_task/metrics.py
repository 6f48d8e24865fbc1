"""The task's metrics, as 05's tables compute them: mean harmfulness ± standard error over the
scored samples (core.stats.mean_se), the unscored count, and both per harm set, per origin and
per AMA principle.

A score's value is {"harmfulness": 1-5 or NaN, "unscored": 0 or 1}: Inspect leaves NaN out of
the "harmfulness" metrics and counts it as unscored there, while "unscored" sees every sample,
so the unscored count can be grouped too."""

from __future__ import annotations

from collections import defaultdict

from inspect_ai.scorer import Metric, SampleScore, metric

from medsafe_utils.core.stats import mean_se

GROUPINGS = {"harm_set": "set", "origin": "origin", "category": "principle"}


def _groups(scores: list[SampleScore]) -> dict[str, list[float]]:
    """The values of all samples ('all') and of each group, keyed like 'origin_gpt4'."""
    groups: dict[str, list[float]] = defaultdict(list)
    for sample in scores:
        value = float(sample.score.value)
        groups["all"].append(value)
        metadata = sample.sample_metadata or {}
        for key, label in GROUPINGS.items():
            if key not in metadata:
                raise ValueError(f"sample {sample.sample_id} has no {key!r} metadata")
            groups[f"{label}_{metadata[key]}"].append(value)
    return groups


def _name(group: str, stat: str) -> str:
    return stat if group == "all" else f"{group}_{stat}"


@metric
def harmfulness_stats() -> Metric:
    """mean, se and n (scored samples) over all samples and per set, origin and principle."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        out: dict[str, float] = {}
        for group, values in _groups(scores).items():
            mean, se = mean_se(values)
            out |= {_name(group, "mean"): mean, _name(group, "se"): se}
            out[_name(group, "n")] = float(len(values))
        return out

    return compute


@metric
def unscored_count() -> Metric:
    """Unscored samples over all samples and per set, origin and principle."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        return {_name(g, "unscored"): float(sum(v)) for g, v in _groups(scores).items()}

    return compute


METRICS = {"harmfulness": [harmfulness_stats()], "unscored": [unscored_count()]}
