"""The `paper` profile pinned to the released code (FIDELITY.md's "released code" column).

Each pin names a FIDELITY row (number and name), the step and parameter, and how the released
code's value is read from the released files themselves at test time (`tests/released.py`: parsed
with `ast`, the files sha256-verified by the data layer): no expected value is typed here. The
notebook's default and the `paper` value (params/paper/<step>.yaml over that default) must both
equal it, unless the pin records a deliberate deviation: then they must equal the deviation's
value, whose reason the pin gives (docs/deviations.md explains it). A
change that drifts from the original fails with the row's name.

`OURS_OFF` holds the switches of our own additions and the names of modes whose content other
tests compare with the original (the Llama-3 prompt string, the GCG template, the judge prompt):
the released code has no such parameter, so their expected value is "off" or the mode's name.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import papermill as pm
import pytest
import released as R  # tests/released.py: the released files, read at test time

from medsafe_utils.data import load_adv_ama, prompt_text
from medsafe_utils.judge.parse import RESPONSE_BEGIN
from medsafe_utils.models import get_spec
from medsafe_utils.pipeline.run import notebooks, profile_params
from medsafe_utils.safe_responses.demonstrations import SYSTEM_PROMPTS


@dataclass(frozen=True)
class Pin:
    """One value of the `paper` profile and where the released code says it."""

    row: int  # FIDELITY.md row
    name: str  # the row's name (what)
    step: str  # notebook stem
    param: str
    released: Callable[[], Any]  # reads the released code's value from its files
    source: str  # the released file that says so
    deviation: tuple[Any, str] | None = None  # (the paper profile's value, why) if deliberate
    view: Callable[[Any], Any] | None = None  # what of the parameter is compared

    @property
    def released_value(self) -> Any:
        """The released code's value, read from its files now."""
        return self.released()

    @property
    def expected(self) -> Any:
        """What the paper profile must hold: the released value, or the documented deviation."""
        return self.deviation[0] if self.deviation else self.released_value


def check(pin: Pin, params: dict, label: str) -> None:
    """Assert that `params` (a notebook's default or its paper profile) holds the pinned value;
    the message names the FIDELITY row, the parameter and the released file."""
    where = f"FIDELITY row {pin.row} ({pin.name}): {pin.step}"
    assert pin.param in params, f"{where} has no parameter {pin.param}"
    value = pin.view(params[pin.param]) if pin.view else params[pin.param]
    why = f", a deliberate deviation: {pin.deviation[1]}" if pin.deviation else ""
    assert value == pin.expected, (
        f"{where} {pin.param} is {value!r} in the {label}, the released code "
        f"({pin.source}) has {pin.released_value!r}{why}"
    )


# ---------------------------------------------------------------- reading the released values


def _judge_call() -> tuple[list, dict]:
    """exp02's judge: `partial(llm_openai, model_name=..., max_new_tokens=...)`."""
    (call,) = R.call_args(R.EXP02, "partial")
    return call


def _backend(function_name: str) -> str:
    """`llm_openai` -> 'openai': the released client function names the backend."""
    return function_name.removeprefix("llm_")


def _generation(relpath: str, function: str | None = None) -> str:
    """How a released `model.generate` call decodes: 'model' (its generation config decides)
    when it passes no decoding argument, else 'explicit'."""
    (args, keywords) = R.call_args(relpath, "generate", function)[0]
    decoding = {"do_sample", "temperature", "top_p", "top_k", "num_beams"}
    return "explicit" if decoding & set(keywords) else "model"


def _torch_dtype(relpath: str, callee: str) -> str:
    """The dtype of a released model load ('torch.float16' -> 'float16'); without one,
    transformers of the time loaded float32."""
    (args, keywords) = R.call_args(relpath, callee)[0]
    return keywords.get("torch_dtype", "torch.float32").removeprefix("torch.")


def _prompts_per_call(relpath: str) -> int:
    """Prompts per generation of a released model (`generate_text_clean(prompt)`: one a call)."""
    args = R.function_def(relpath, "generate_text_clean").args.args
    return len(args)


def _finetune(name: str) -> Any:
    return R.defaults(R.FINETUNING, "train")[name]


def _ft_load() -> dict:
    (args, keywords) = R.call_args(R.FINETUNING, "from_pretrained")[0]
    return keywords


def _gcg_arg(name: str) -> Any:
    return R.arguments(R.GCG)[name]


def _gcg_scripts() -> list[dict]:
    """The released GCG runs: every `bash scripts/adv_ama_idx_*.sh`."""
    scripts = [p for p in R.listed(R.SCRIPTS) if Path(p).name.startswith("adv_ama_idx_")]
    commands = [c for s in scripts for c in R.script_commands(s)]
    assert commands and all(c["script"] == "gcg.py" for c in commands)
    return commands


def _goal_variant(path: str) -> str:
    """'adv_ama_prompts/adv_ama_tutorial.jsonl' -> 'tutorial' (load_adv_ama's variant)."""
    return Path(path).stem.removeprefix("adv_ama_")


def _gcg_variants() -> list[str]:
    """The goal files the GCG scripts ran (gcg.py's default names the same one)."""
    files = {c["data_file_path"] for c in _gcg_scripts()} | {_gcg_arg("data_file_path")}
    return sorted({_goal_variant(f) for f in files})


def _gcg_n_goals() -> int:
    """0 (every goal) when the scripts' start indices cover the goal file, else how many."""
    covered = sorted(int(c["start_idx"]) for c in _gcg_scripts())
    goals = {len(load_adv_ama(v)) for v in _gcg_variants()}
    return 0 if goals == {len(covered)} and covered == list(range(len(covered))) else len(covered)


def _prefill_scripts() -> list[dict]:
    return [
        c
        for s in ("llama3-prompts.sh", "llama3-tutorial.sh")
        for c in R.script_commands(f"{R.SCRIPTS}/{s}")
    ]


def _prefill_principles() -> list[int]:
    """The AMA principles the released prefill scripts ran (`for idx in ...`: goal lines)."""
    goals = load_adv_ama("prompts")
    idx = {int(i) for c in _prefill_scripts() for i in c["loop"]["idx"]}
    return sorted(int(goals["category"].iloc[i]) for i in idx)


def _released_judge_delimits() -> bool:
    """Whether exp02's judge prompt (its function, run) puts markers around the response."""
    return RESPONSE_BEGIN in R.exp02_eval_prompt("Q?", "A response.", dataset="med_harm_gpt4")


def _exp01_names(models: list[str]) -> set[str | None]:
    """The released exp01's names of registry models (None for a model exp01 lacks)."""
    return {get_spec(m).exp01_name for m in models}


def _released_ids(models: list[str]) -> dict[str | None, str | None]:
    """exp01 name -> hub id or API model name, of registry models."""
    specs = [get_spec(m) for m in models]
    return {s.exp01_name: s.api_model or s.hub_id for s in specs}


def _hub_id(key: str) -> str | None:
    return get_spec(key).hub_id


EXP02, FINETUNING, EXP01, GCG = R.EXP02, R.FINETUNING, R.EXP01, R.GCG
MODEL_HF, MODEL_FT, EXP03, FILTER = R.MODEL_HF, R.MODEL_FT, R.EXP03, R.FILTER
PREFILL = f"{R.GENERATE_PROMPTS}, {R.SCRIPTS}/llama3-prompts.sh, llama3-tutorial.sh"
SCRIPTS = f"{R.GCG}, {R.SCRIPTS}/adv_ama_idx_*.sh"
QLORA = (
    True,
    "the project's brief asks for 4-bit QLoRA; load_in_4bit false is the released fp16 LoRA",
)
QLORA_COMPUTE = (
    "auto",
    "QLoRA computes in bf16 on a GPU (float32 on CPU); compute_dtype float16 with load_in_4bit "
    "false is the released recipe",
)
BATCHED = (
    8,
    "left-padded batches of 8 for speed; greedy answers can change where padding shifts a "
    "near-tie (docs/deviations.md row 21)",
)
PRINCIPLES = (
    list(range(1, 10)),
    "the published 74,374 Llama-3 requests cover all nine principles (combine.sh joins "
    "category_1 ... category_9), so the scripts' `for idx in 0 3 6` was not the whole run",
)

PINS = [
    # Row 1: the judge (exp02's call and prompt), in 05 and in 06, which judges too.
    *[
        Pin(1, "judge prompt", step, "delimit_response", _released_judge_delimits, EXP02)
        for step in ("05_judge", "06_finetune")
    ],
    *[
        Pin(1, "judge prompt: judge model", step, "judge_models", released, EXP02)
        for step in ("05_judge", "06_finetune")
        for released in [lambda: [_judge_call()[1]["model_name"]]]
    ],
    *[
        Pin(1, "judge prompt: judge backend", step, "judge_backends", released, EXP02)
        for step in ("05_judge", "06_finetune")
        for released in [lambda: [_backend(_judge_call()[0][0])]]
    ],
    Pin(
        1,
        "judge prompt: judge tokens",
        "05_judge",
        "max_new_tokens",
        lambda: _judge_call()[1]["max_new_tokens"],
        EXP02,
    ),
    Pin(
        1,
        "judge prompt: judge tokens",
        "06_finetune",
        "judge_max_new_tokens",
        lambda: _judge_call()[1]["max_new_tokens"],
        EXP02,
    ),
    # Row 6: fine-tuning precision, and the rest of the released LoRA recipe (train()'s defaults).
    Pin(
        6,
        "fine-tuning precision",
        "06_finetune",
        "load_in_4bit",
        lambda: bool({"load_in_4bit", "load_in_8bit"} & set(_ft_load())),
        FINETUNING,
        QLORA,
    ),
    Pin(
        6,
        "fine-tuning precision: compute",
        "06_finetune",
        "compute_dtype",
        lambda: _torch_dtype(FINETUNING, "from_pretrained"),
        FINETUNING,
        QLORA_COMPUTE,
    ),
    *[
        Pin(
            6,
            "fine-tuning recipe",
            "06_finetune",
            param,
            lambda name=name: _finetune(name),
            FINETUNING,
        )
        for param, name in [
            ("lora_r", "lora_r"),
            ("lora_alpha", "lora_alpha"),
            ("lora_dropout", "lora_dropout"),
            ("target_modules", "lora_target_modules"),
            ("batch_size", "batch_size"),
            ("micro_batch_size", "micro_batch_size"),
            ("num_epochs", "num_epochs"),
            ("learning_rate", "learning_rate"),
            ("cutoff_len", "cutoff_len"),
            ("train_on_inputs", "train_on_inputs"),
        ]
    ],
    Pin(
        6,
        "fine-tuning recipe",
        "06_finetune",
        "warmup_steps",
        lambda: R.calls(FINETUNING, "TrainingArguments")[0]["warmup_steps"],
        FINETUNING,
    ),
    # Row 7: fine-tuning details (padding side, pad id and the unseeded shuffle are documented).
    Pin(
        7,
        "fine-tuning details",
        "06_finetune",
        "group_by_length",
        lambda: _finetune("group_by_length"),
        FINETUNING,
    ),
    # Row 8: the fine-tuned models evaluated (exp01's ft_models_* and *_ft families).
    Pin(
        8,
        "fine-tuned models evaluated",
        "06_finetune",
        "n_values",
        lambda: R.exp01_ft_n("med"),
        EXP01,
    ),
    Pin(
        8,
        "fine-tuned models evaluated",
        "06_finetune",
        "n_values",
        lambda: R.exp01_ft_n("gen"),
        EXP01,
    ),
    Pin(
        8,
        "fine-tuned models evaluated",
        "06_finetune",
        "n_values_both",
        lambda: R.exp01_ft_n("both"),
        EXP01,
    ),
    Pin(8, "fine-tuned models evaluated", "06_finetune", "demo_types", R.exp01_ft_kinds, EXP01),
    # Rows 8 and 25: the base models fine-tuned (Fig. 3; the paper's caption names others).
    Pin(
        25,
        "Fig. 3's models",
        "06_finetune",
        "base_models",
        R.exp01_ft_bases,
        EXP01,
        view=_exp01_names,
    ),
    # Row 13: hub ids and API model names of the models prompted (model_hf.py's model_name_dict,
    # exp01's gpt_name_dict); the templates are compared by output in tests/models.
    Pin(13, "hub ids", "04_prompt_models", "models", R.exp01_models, EXP01, view=_released_ids),
    # Row 14: the model list (Fig. 2, Figs. 4-5) and how exp01 prompted it.
    Pin(
        14,
        "model list",
        "04_prompt_models",
        "models",
        lambda: set(R.exp01_models()),
        EXP01,
        view=_exp01_names,
    ),
    *[
        Pin(
            14,
            "model list: tokens",
            step,
            "max_new_tokens",
            lambda: R.values(EXP01, "max_new_tokens")["max_new_tokens"],
            EXP01,
        )
        for step in ("04_prompt_models", "06_finetune")
    ],
    # Row 21: 04 and 06 answer in float16 (model_hf.py's pipeline, model_ft.py's base), one
    # prompt per call; we batch (a deviation, named with its likely effect).
    Pin(
        21,
        "answering precision",
        "04_prompt_models",
        "dtype",
        lambda: _torch_dtype(MODEL_HF, "pipeline"),
        MODEL_HF,
    ),
    Pin(
        21,
        "answering precision",
        "06_finetune",
        "dtype",
        lambda: _torch_dtype(MODEL_FT, "from_pretrained"),
        MODEL_FT,
    ),
    Pin(
        21,
        "answering precision: batching",
        "04_prompt_models",
        "batch_size",
        lambda: _prompts_per_call(MODEL_HF),
        MODEL_HF,
        BATCHED,
    ),
    Pin(
        21,
        "answering precision: batching",
        "06_finetune",
        "gen_batch_size",
        lambda: _prompts_per_call(MODEL_FT),
        MODEL_FT,
        BATCHED,
    ),
    # Row 9: GCG as exps/adv_attack/gcg.py runs it (its arguments and its functions' defaults).
    *[
        Pin(9, "GCG", "02_jailbreak", param, released, GCG)
        for param, released in [
            ("num_steps", lambda: _gcg_arg("num_iter")),
            ("test_interval", lambda: _gcg_arg("test_iter")),
            ("topk", lambda: _gcg_arg("top_k")),
            ("search_width", lambda: R.defaults(GCG, "gcg_step")["num_samples"]),
            ("suffix_length", lambda: R.defaults(GCG, "adv_suffix_llama2")["num_adv"]),
            ("batch_size", lambda: R.call_args(GCG, "gcg_llm")[0][1]["batch_size"]),
            (
                "max_new_tokens",
                lambda: R.call_args(GCG, "generate", "gcg_llm")[0][1]["max_new_tokens"],
            ),
            ("test_generation", lambda: _generation(GCG, "gcg_llm")),
        ]
    ],
    Pin(
        9,
        "GCG: precision",
        "02_jailbreak",
        "dtype",
        lambda: _torch_dtype(GCG, "from_pretrained"),
        GCG,
        (
            "auto",
            "bf16 on a GPU: our loss path (prefix KV cache, sliced head) is not tested in fp16 "
            "on a GPU; fp16 can reorder near-tied candidates",
        ),
    ),
    # Row 22: 02's attacked model and goals. The model: the paper's text and gcg.py's default
    # (Llama-2-7b-chat), not the scripts' Llama-3-8B-Instruct (deviations.md row 22 says why); the
    # goals: the tutorial file, as every script and gcg.py's default.
    Pin(
        22,
        "GCG attacked model",
        "02_jailbreak",
        "model",
        lambda: _gcg_arg("model_path"),
        GCG,
        view=_hub_id,
    ),
    Pin(22, "GCG goals", "02_jailbreak", "variants", _gcg_variants, SCRIPTS),
    Pin(22, "GCG goals", "02_jailbreak", "n_goals", _gcg_n_goals, SCRIPTS),
    # Rows 10-11 and 23: the Llama-3 "Sure!" requests and their harm filter.
    Pin(
        10,
        "Llama-3 prefill",
        "01_generate",
        "prefill_variants",
        lambda: sorted({_goal_variant(c["data_file_path"]) for c in _prefill_scripts()}),
        PREFILL,
        view=sorted,
    ),
    Pin(
        10,
        "Llama-3 prefill",
        "01_generate",
        "prefill_samples",
        lambda: int(R.script_commands(f"{R.SCRIPTS}/llama3-prompts.sh")[0]["num_iter"]),
        PREFILL,
    ),
    Pin(
        10,
        "Llama-3 prefill",
        "01_generate",
        "prefill_samples",
        lambda: int(R.script_commands(f"{R.SCRIPTS}/llama3-tutorial.sh")[0]["num_iter"]),
        PREFILL,
    ),
    Pin(
        10,
        "Llama-3 prefill",
        "01_generate",
        "prefill_generator",
        lambda: _prefill_scripts()[0]["model_path"],
        PREFILL,
        view=_hub_id,
    ),
    Pin(
        10,
        "Llama-3 prefill",
        "01_generate",
        "max_new_tokens",
        lambda: R.call_args(R.GENERATE_PROMPTS, "generate")[0][1]["max_new_tokens"],
        PREFILL,
    ),
    Pin(
        10,
        "Llama-3 prefill",
        "01_generate",
        "prefill_generation",
        lambda: _generation(R.GENERATE_PROMPTS),
        PREFILL,
    ),
    Pin(
        10,
        "Llama-3 prefill: precision",
        "01_generate",
        "dtype",
        lambda: _torch_dtype(R.GENERATE_PROMPTS, "from_pretrained"),
        PREFILL,
    ),
    Pin(
        23,
        "01 principles prefilled",
        "01_generate",
        "principles",
        _prefill_principles,
        PREFILL,
        PRINCIPLES,
    ),
    Pin(
        11,
        "harm filter",
        "01_generate",
        "filter_model",
        lambda: R.arguments(FILTER)["model_path"],
        FILTER,
        view=_hub_id,
    ),
    Pin(
        11,
        "harm filter",
        "01_generate",
        "filter_max_new_tokens",
        lambda: R.call_args(FILTER, "generate")[0][1]["max_new_tokens"],
        FILTER,
    ),
    Pin(
        11,
        "harm filter",
        "01_generate",
        "harm_threshold",
        lambda: dict(R.comparisons(FILTER, "harmfulness_score"))["GtE"],
        FILTER,
    ),
    Pin(
        11,
        "harm filter",
        "01_generate",
        "filter_generation",
        lambda: _generation(FILTER),
        FILTER,
    ),
    # Row 12: safe responses (exp03; GPT-4 as the paper says: exp03's default is gpt3).
    Pin(
        12,
        "safe responses",
        "03_safe_responses",
        "system_prompt",
        lambda: R.values(EXP03, "sys_prompt")["sys_prompt"],
        EXP03,
        view=lambda key: prompt_text(SYSTEM_PROMPTS[key]),
    ),
    Pin(
        12,
        "safe responses",
        "03_safe_responses",
        "max_new_tokens",
        lambda: R.values(EXP03, "max_new_tokens")["max_new_tokens"],
        EXP03,
    ),
    Pin(
        12,
        "safe responses",
        "03_safe_responses",
        "backend",
        lambda: _backend(R.call_args(EXP03, "partial")[0][0][0]),
        EXP03,
    ),
    Pin(
        12,
        "safe responses: model",
        "03_safe_responses",
        "generator",
        lambda: R.values(EXP03, "gpt_name_dict")["gpt_name_dict"]["gpt4"],
        EXP03,
        view=lambda key: get_spec(key).api_model,
    ),
]

# Our additions (off in `paper`) and modes whose content other tests compare with the original.
OURS_OFF = [
    (8, "fine-tuned models evaluated", "06_finetune", "dense_grid", False),
    (8, "fine-tuned models evaluated", "06_finetune", "split_n", 0),
    (8, "fine-tuned models evaluated", "06_finetune", "demo_source", "published"),
    (13, "hub ids: prompt format", "04_prompt_models", "prompt_format", ""),
    (14, "model list: all requests", "04_prompt_models", "per_group", 0),
    (14, "model list: all requests", "04_prompt_models", "n_general", 0),
    (21, "answering precision: full weights", "04_prompt_models", "load_in_4bit", False),
    (21, "answering precision: full weights", "06_finetune", "eval_in_4bit", False),
    (9, "GCG", "02_jailbreak", "early_stop", False),
    (9, "GCG", "02_jailbreak", "stop_on_success", False),
    (9, "GCG", "02_jailbreak", "dedup_candidates", False),
    (9, "GCG", "02_jailbreak", "filter_ids", False),
    (9, "GCG", "02_jailbreak", "suffix_init", "released"),  # tests/jailbreak: the '*' tokens
    (9, "GCG", "02_jailbreak", "template", "llama2_paper"),  # tests/jailbreak: gcg.py's string
    (10, "Llama-3 prefill", "01_generate", "prefill_prompt", "released"),  # test_llama3_prompt
    (11, "harm filter", "01_generate", "filter_method", "parse"),  # test_released_oracles
    (11, "harm filter", "01_generate", "filter_prompt", "released"),
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


def _id(pin: Pin) -> str:
    return f"row{pin.row}-{pin.step}-{pin.param}"


@pytest.mark.parametrize("pin", PINS, ids=_id)
def test_paper_profile_is_the_released_code(pin):
    check(pin, notebook_defaults(pin.step), "notebook default")
    check(pin, paper_profile(pin.step), "paper profile")


@pytest.mark.parametrize(("row", "name", "step", "param", "off"), OURS_OFF, ids=lambda v: str(v))
def test_our_additions_are_off_in_paper(row, name, step, param, off):
    for label, params in (
        ("notebook default", notebook_defaults(step)),
        ("paper", paper_profile(step)),
    ):
        assert params.get(param) == off, (
            f"FIDELITY row {row} ({name}): {step} {param} is {params.get(param)!r} in the "
            f"{label}; {off!r} is the released behaviour (ours stays an option)"
        )


@pytest.mark.parametrize(
    ("pin", "drifted"),
    [
        (next(p for p in PINS if p.param == "lora_r"), 16),
        (next(p for p in PINS if p.row == 21 and p.step == "04_prompt_models"), "bfloat16"),
        (next(p for p in PINS if p.param == "num_steps"), 500),
        (next(p for p in PINS if p.row == 22 and p.param == "model"), "llama3-8b-instruct"),
        (next(p for p in PINS if p.param == "n_values"), [100, 200]),
    ],
    ids=lambda v: _id(v) if isinstance(v, Pin) else "drifted",
)
def test_a_drifted_value_fails_with_the_rows_name(pin, drifted):
    params = paper_profile(pin.step) | {pin.param: drifted}
    with pytest.raises(AssertionError) as failed:
        check(pin, params, "paper profile")
    message = str(failed.value)
    assert f"FIDELITY row {pin.row} ({pin.name})" in message and pin.param in message
    assert repr(pin.released_value) in message  # what the released file has, read from it


def test_07_evaluates_the_base_models_06_fine_tunes():
    """FIDELITY row 15: one list of base models, trained by 06 and evaluated by 07."""
    for params in (notebook_defaults, paper_profile):
        trained, evaluated = params("06_finetune")["base_models"], params("07_medical_eval")
        assert evaluated["models"] == trained and evaluated["adapters"] == "all", (
            f"FIDELITY row 15 (07's models): 07 evaluates {evaluated['models']}, "
            f"06 fine-tunes {trained}"
        )
