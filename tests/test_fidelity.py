"""The `paper` profile pinned to the released code (FIDELITY.md's "released code" column).

Each entry names a FIDELITY row (number and name), the step and parameter, the value the released
code used and where it says so. The notebook's default and the `paper` value (params/paper/<step>
.yaml over that default) must both equal it, unless the entry records a deliberate deviation: then
they must equal the deviation's value, whose reason the entry gives (README's "Deviations from the
released code" explains it). A change that drifts from the original fails with the row's name.
Add a row's entries to PINS; `view` turns the parameter's value into what is compared.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import papermill as pm
import pytest
from released_code import EXP01_MODELS, FT_BASES, FT_N, FT_N_BOTH  # tests/released_code.py

from medsafe_utils.models import get_spec
from medsafe_utils.pipeline.run import notebooks, profile_params


@dataclass(frozen=True)
class Pin:
    """One value of the `paper` profile and the released code's."""

    row: int  # FIDELITY.md row
    name: str  # the row's name (what)
    step: str  # notebook stem
    param: str
    released: Any  # the released code's value (after `view`)
    source: str  # the released file that says so
    deviation: tuple[Any, str] | None = None  # (the paper profile's value, why) if deliberate
    view: Callable[[Any], Any] | None = None  # what of the parameter is compared

    @property
    def expected(self) -> Any:
        """What the paper profile must hold: the released value, or the documented deviation."""
        return self.deviation[0] if self.deviation else self.released


def _exp01_names(models: list[str]) -> set[str | None]:
    """The released exp01's names of registry models (None for a model exp01 lacks)."""
    return {get_spec(m).exp01_name for m in models}


def _released_ids(models: list[str]) -> dict[str | None, tuple[str | None, str]]:
    """exp01 name -> (hub id or API model name, prompt template) of registry models."""
    specs = [get_spec(m) for m in models]
    return {s.exp01_name: (s.api_model or s.hub_id, s.template) for s in specs}


EXP02 = "exps/exp02_eval_responses.py"
FINETUNING = "training/finetuning.py"
EXP01 = "exps/exp01_prompt_models.py"
MEDITRON = "meditron evaluation/inference.py, evaluate.py, benchmarks.py"
GCG = "exps/adv_attack/gcg.py"
# meditron's MMLU-medical subjects, in its order (evaluation/benchmarks.py)
MMLU_11 = ["anatomy", "college_biology", "college_medicine", "professional_medicine"]
MMLU_11 += ["medical_genetics", "virology", "clinical_knowledge", "high_school_biology"]
MMLU_11 += ["high_school_chemistry", "nutrition", "college_chemistry"]
PREFILL = "exps/adv_attack/generate_prompts.py, llama3-prompts.sh, llama3-tutorial.sh"
FILTER = "exps/adv_attack/filter_harmful.py"
EXP03 = "exps/exp03_generate_safe_responses.py"
QLORA = (
    True,
    "the project's brief asks for 4-bit QLoRA; load_in_4bit false is the released fp16 LoRA",
)

PINS = [
    # Row 1: the judge (exp02's call and prompt), in 05 and in 06, which judges too.
    Pin(1, "judge prompt", "05_judge", "delimit_response", False, EXP02),
    Pin(1, "judge prompt", "06_finetune", "delimit_response", False, EXP02),
    Pin(1, "judge prompt: judge model", "05_judge", "judge_models", ["gpt-3.5-turbo-0125"], EXP02),
    Pin(
        1, "judge prompt: judge model", "06_finetune", "judge_models", ["gpt-3.5-turbo-0125"], EXP02
    ),
    Pin(1, "judge prompt: judge backend", "05_judge", "judge_backends", ["openai"], EXP02),
    Pin(1, "judge prompt: judge backend", "06_finetune", "judge_backends", ["openai"], EXP02),
    Pin(1, "judge prompt: judge tokens", "05_judge", "max_new_tokens", 512, EXP02),
    Pin(1, "judge prompt: judge tokens", "06_finetune", "judge_max_new_tokens", 512, EXP02),
    # Row 6: fine-tuning precision, and the rest of the released LoRA recipe.
    Pin(6, "fine-tuning precision", "06_finetune", "load_in_4bit", False, FINETUNING, QLORA),
    Pin(6, "fine-tuning recipe", "06_finetune", "lora_r", 8, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "lora_alpha", 16, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "lora_dropout", 0.05, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "target_modules", ["q_proj", "v_proj"], FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "batch_size", 128, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "micro_batch_size", 4, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "num_epochs", 3, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "learning_rate", 3e-4, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "warmup_steps", 10, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "cutoff_len", 256, FINETUNING),
    Pin(6, "fine-tuning recipe", "06_finetune", "train_on_inputs", True, FINETUNING),
    # Row 7: fine-tuning details (padding side, pad id and the unseeded shuffle are documented).
    Pin(7, "fine-tuning details", "06_finetune", "group_by_length", False, FINETUNING),
    # Row 8: the fine-tuned models evaluated (exp01's ft_models_* and *_ft families).
    Pin(8, "fine-tuned models evaluated", "06_finetune", "n_values", FT_N, EXP01),
    Pin(
        8,
        "fine-tuned models evaluated",
        "06_finetune",
        "n_values_both",
        FT_N_BOTH,
        EXP01,
    ),
    Pin(8, "fine-tuned models evaluated", "06_finetune", "dense_grid", False, EXP01),
    Pin(
        8, "fine-tuned models evaluated", "06_finetune", "demo_types", ["med", "gen", "both"], EXP01
    ),
    Pin(8, "fine-tuned models evaluated", "06_finetune", "split_n", 0, EXP01),
    Pin(8, "fine-tuned models evaluated", "06_finetune", "demo_source", "published", EXP01),
    Pin(
        8,
        "fine-tuned models evaluated: base models",
        "06_finetune",
        "base_models",
        FT_BASES,
        EXP01,
        view=_exp01_names,
    ),
    # Row 13: hub ids and API model names of the models prompted (model_hf.py, exp01's
    # gpt_name_dict), and the per-family template exp01 gave each one.
    Pin(13, "hub ids", "04_prompt_models", "models", EXP01_MODELS, EXP01, view=_released_ids),
    Pin(13, "hub ids: prompt format", "04_prompt_models", "prompt_format", "", EXP01),
    # Row 14: the model list (Fig. 2, Figs. 4-5) and how exp01 prompted it.
    Pin(
        14, "model list", "04_prompt_models", "models", set(EXP01_MODELS), EXP01, view=_exp01_names
    ),
    Pin(14, "model list: tokens", "04_prompt_models", "max_new_tokens", 512, EXP01),
    Pin(14, "model list: all requests", "04_prompt_models", "per_group", 0, EXP01),
    Pin(14, "model list: fine-tuned models' tokens", "06_finetune", "max_new_tokens", 512, EXP01),
    # Row 9: GCG as exps/adv_attack/gcg.py runs it.
    *[
        Pin(9, "GCG", "02_jailbreak", param, value, GCG)
        for param, value in [
            ("num_steps", 1000),
            ("early_stop", False),
            ("stop_on_success", False),
            ("suffix_init", "released"),
            ("suffix_length", 20),
            ("search_width", 512),
            ("batch_size", 300),
            ("topk", 256),
            ("test_interval", 50),
            ("max_new_tokens", 800),
            ("dedup_candidates", False),
            ("filter_ids", False),
            ("test_generation", "model"),
            ("template", "llama2_paper"),
        ]
    ],
    # Rows 10-11: the Llama-3 "Sure!" requests and their harm filter.
    *[
        Pin(row, name, "01_generate", param, value, source)
        for row, name, param, value, source in [
            (10, "Llama-3 prefill", "prefill_prompt", "released", PREFILL),
            (10, "Llama-3 prefill", "prefill_variants", ["prompts", "tutorial"], PREFILL),
            (10, "Llama-3 prefill", "prefill_generation", "model", PREFILL),
            (10, "Llama-3 prefill", "max_new_tokens", 1500, PREFILL),
            (11, "harm filter", "filter_method", "parse", FILTER),
            (11, "harm filter", "filter_prompt", "released", FILTER),
            (11, "harm filter", "filter_generation", "model", FILTER),
            (11, "harm filter", "filter_max_new_tokens", 100, FILTER),
            (11, "harm filter", "harm_threshold", 7.0, FILTER),
        ]
    ],
    # Row 12: safe responses (exp03).
    Pin(12, "safe responses", "03_safe_responses", "system_prompt", "llama2_default", EXP03),
    Pin(12, "safe responses", "03_safe_responses", "max_new_tokens", 512, EXP03),
    Pin(12, "safe responses", "03_safe_responses", "backend", "openai", EXP03),
    Pin(
        12,
        "safe responses: model",
        "03_safe_responses",
        "generator",
        "gpt-4-1106-preview",
        EXP03,
        view=lambda key: get_spec(key).api_model,
    ),
]


@cache
def notebook_defaults(step: str) -> dict:
    """A notebook's parameters cell: the paper's settings as its defaults."""
    notebook = next(nb for nb in notebooks() if nb.stem == step)
    found = pm.inspect_notebook(str(notebook))
    return {name: ast.literal_eval(p["default"]) for name, p in found.items()}


def paper_profile(step: str) -> dict:
    """A notebook's parameters under the `paper` profile: its defaults, then the profile file."""
    notebook = next(nb for nb in notebooks() if nb.stem == step)
    return notebook_defaults(step) | profile_params("paper", notebook)


@pytest.mark.parametrize("pin", PINS, ids=lambda p: f"row{p.row}-{p.step}-{p.param}")
def test_paper_profile_is_the_released_code(pin):
    defaults = notebook_defaults(pin.step)
    where = f"FIDELITY row {pin.row} ({pin.name}): {pin.step}"
    assert pin.param in defaults, f"{where} has no parameter {pin.param} in its parameters cell"
    why = f", a deliberate deviation: {pin.deviation[1]}" if pin.deviation else ""
    for label, params in (
        ("notebook default", defaults),
        ("paper profile", paper_profile(pin.step)),
    ):
        value = pin.view(params[pin.param]) if pin.view else params[pin.param]
        assert value == pin.expected, (
            f"{where} {pin.param} is {value!r} in the {label}, the released code "
            f"({pin.source}) has {pin.released!r}{why}"
        )


def test_07_evaluates_the_base_models_06_fine_tunes():
    """FIDELITY row 15: one list of base models, trained by 06 and evaluated by 07."""
    for params in (notebook_defaults, paper_profile):
        trained, evaluated = params("06_finetune")["base_models"], params("07_medical_eval")
        assert evaluated["models"] == trained and evaluated["adapters"] == "all", (
            f"FIDELITY row 15 (07's models): 07 evaluates {evaluated['models']}, "
            f"06 fine-tunes {trained}"
        )
