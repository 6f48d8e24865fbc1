"""Human labels for what figures show: a model by its registry display name, a judge by its
model and mode, an evaluation set or benchmark by its published name. Tables keep the ids (they
are data); figure titles, ticks and stamps show these.

    figure_label("judge", "hf:smollm2-135m-instruct:score_only")
    # 'SmolLM2-135M-Instruct judge (score only)'"""

from __future__ import annotations

from medsafe_utils.models.registry import registry

SET_NAMES = {"medsafety_eval": "MedSafety-Eval", "advbench": "AdvBench", "hex-phi": "HEx-PHI"}
BENCHMARK_NAMES = {
    "medqa": "MedQA",
    "medmcqa": "MedMCQA",
    "pubmedqa": "PubMedQA",
    "mmlu_medical": "MMLU medical",
}
# judge_id's trailing parts (judge.config.JudgeConfig.judge_id) and what they mean
JUDGE_MODES = {"score_only": "score only", "delimited": "response delimited"}
KEYWORD_JUDGE = "keyword:refusal-prefix-baseline"


def model_label(model: str) -> str:
    """A registry model's display name (found by key, hub id or API model name), else `model`."""
    specs = registry()
    spec = specs.get(model) or next(
        (s for s in specs.values() if model in (s.hub_id, s.api_model)), None
    )
    return spec.display if spec is not None and spec.display else model


def judge_label(judge_id: str) -> str:
    """'hf:smollm2-135m-instruct:score_only' -> 'SmolLM2-135M-Instruct judge (score only)';
    the keyword judge -> 'keyword baseline (refusal prefixes)'; an unknown form as it is."""
    if judge_id == KEYWORD_JUDGE:
        return "keyword baseline (refusal prefixes)"
    backend, _, rest = judge_id.partition(":")
    parts = rest.split(":")
    modes = []
    while len(parts) > 1 and parts[-1] in JUDGE_MODES:
        modes.insert(0, JUDGE_MODES[parts.pop()])
    if backend not in ("hf", "openai") or not parts[0]:
        return judge_id
    return f"{model_label(':'.join(parts))} judge" + (f" ({', '.join(modes)})" if modes else "")


def set_label(name: str) -> str:
    """A harm or evaluation set by its published name ('advbench' -> 'AdvBench'); the evaluation
    sets judge.stats names already ('MedSafety-Eval (GPT-4)') stay as they are."""
    return SET_NAMES.get(name, name)


LABELS = {
    "judge": judge_label,
    "model": model_label,
    "base_model": model_label,
    "eval_set": set_label,
    "harm_set": set_label,
    "benchmark": lambda name: BENCHMARK_NAMES.get(name, name),
}


def figure_label(column: str, value) -> str:
    """What a figure shows for a table's `value` of `column` (judge, model, base_model, eval_set,
    harm_set, benchmark); other columns' values as they are."""
    label = LABELS.get(column)
    return label(str(value)) if label else str(value)
