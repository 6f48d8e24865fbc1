"""Figures' human labels: judges, models, evaluation sets and benchmarks by their names."""

from medsafe_utils.data.medical import BENCHMARKS
from medsafe_utils.judge.config import JudgeConfig
from medsafe_utils.models.labels import BENCHMARK_NAMES, figure_label, judge_label, model_label
from medsafe_utils.models.registry import registry


def test_judge_labels_from_the_ids_judge_config_writes():
    score_only = JudgeConfig(backend="hf", model="smollm2-135m-instruct", score_only=True)
    assert judge_label(score_only.judge_id) == "SmolLM2-135M-Instruct judge (score only)"
    keyword = JudgeConfig(backend="keyword", model="")
    assert judge_label(keyword.judge_id) == "keyword baseline (refusal prefixes)"
    api = JudgeConfig(model="gpt-3.5-turbo-0125", delimit_response=True)  # the API model's name
    assert judge_label(api.judge_id) == "GPT-3.5 Turbo (0125) judge (response delimited)"
    hub = JudgeConfig(backend="hf", model="org/unregistered-judge")
    assert judge_label(hub.judge_id) == "org/unregistered-judge judge"
    assert judge_label("always4") == "always4"  # not a judge id: as it is


def test_model_labels_from_the_registry_else_the_id():
    assert model_label("smollm2-135m-instruct") == "SmolLM2-135M-Instruct"
    assert model_label("meta-llama/Llama-2-7b-chat-hf") == "Llama-2-7B-Chat"  # by hub id
    assert model_label("my/own-model") == "my/own-model"
    names = [spec.display for spec in registry().values()]
    assert all(names) and len(set(names)) == len(names)  # every model named, no two alike


def test_figure_labels_by_column():
    assert figure_label("eval_set", "advbench") == "AdvBench"
    assert figure_label("harm_set", "medsafety_eval") == "MedSafety-Eval"
    assert figure_label("eval_set", "MedSafety-Eval (GPT-4)") == "MedSafety-Eval (GPT-4)"
    assert figure_label("base_model", "smollm2-135m-paper").endswith("(Medalpaca prompt)")
    assert figure_label("setting", "generation: 1-shot") == "generation: 1-shot"
    assert set(BENCHMARK_NAMES) == set(BENCHMARKS)
