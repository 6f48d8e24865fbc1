"""07's `paper` profile pinned to the released code (FIDELITY rows 3, 4, 5, 16, 17, 18, 19), every
expected value read at test time from th789/meditron's files in the data mirror (tests/released.py):
inference.py (seeds, the vLLM call, the benchmarks' task types), inference_pipeline.sh (shots,
multi-seed, batch size), benchmarks.py and evaluate.py (MMLU subjects: generated, then scored).

The notebook's default and the `paper` value must both equal the released one; a failure names the
row. Our own choices stay options, off in `paper` (answer_reader "upstream", budget "per_item",
protocols "loglikelihood", over-refusal)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import papermill as pm
import pytest
from released import BENCHMARKS, EVALUATE, INFERENCE, PIPELINE, shell_vars, source, tree

from medsafe_utils.medical_eval.evaluate import FORK_SEEDS
from medsafe_utils.pipeline.run import notebooks, profile_params

STEP = "07_medical_eval"


def _fork_seeds() -> list[int]:
    """The seeds of inference.py main()'s multi-seed loop (`for seed in [...]`)."""
    main = next(
        n for n in tree(INFERENCE).body if isinstance(n, ast.FunctionDef) and n.name == "main"
    )
    loops = [
        n
        for n in ast.walk(main)
        if isinstance(n, ast.For) and isinstance(n.target, ast.Name) and n.target.id == "seed"
    ]
    assert len(loops) == 1, f"{INFERENCE}: {len(loops)} seed loops in main(), expected one"
    return ast.literal_eval(loops[0].iter)


def _mmlu_generated() -> list[str]:
    """MMLU-medical subjects the fork generates: benchmarks.py's MMLU.subsets_medical."""
    [value] = [
        n.value
        for n in ast.walk(tree(BENCHMARKS))
        if isinstance(n, ast.Assign)
        and any(getattr(t, "attr", None) == "subsets_medical" for t in n.targets)
    ]
    return ast.literal_eval(value)


def _mmlu_scored() -> list[str]:
    """The subjects evaluate.py main() scores: those whose name lacks the word it drops
    (`if "chemistry" not in sample['subset']`)."""
    main = next(
        n for n in tree(EVALUATE).body if isinstance(n, ast.FunctionDef) and n.name == "main"
    )
    [dropped] = [
        c.left.value
        for c in ast.walk(main)
        if isinstance(c, ast.Compare)
        and isinstance(c.left, ast.Constant)
        and isinstance(c.ops[0], ast.NotIn)
    ]
    return [s for s in _mmlu_generated() if dropped not in s]


def _vllm_kwargs() -> set[str]:
    """Every keyword inference.py main() gives vllm.LLM (its kwargs dict and later kwargs[...])."""
    main = next(
        n for n in tree(INFERENCE).body if isinstance(n, ast.FunctionDef) and n.name == "main"
    )
    keys = set()
    for node in ast.walk(main):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            if any(getattr(t, "id", None) == "kwargs" for t in node.targets):
                keys |= {ast.literal_eval(k) for k in node.value.keys}
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "kwargs":
            keys.add(ast.literal_eval(node.slice))
    return keys


def _dtype_released() -> str:
    """vllm.LLM without a dtype runs vLLM's "auto" (our vllm_auto); with one, that dtype."""
    return "vllm_auto" if "dtype" not in _vllm_kwargs() else "set in inference.py"


def _quantized_released() -> bool:
    return "quantization" in _vllm_kwargs()


def _shots() -> list[int]:
    return [int(shell_vars(PIPELINE)["SHOTS"])]


def _multi_seed_off() -> bool:
    return shell_vars(PIPELINE)["MULTI_SEED"] == "0"


@dataclass(frozen=True)
class Pin:
    """One 07 parameter of the paper profile and the released code's value, read when asked."""

    row: int
    name: str
    param: str
    released: Callable[[], Any]  # reads the released files
    source: str

    def check(self, params: dict, label: str) -> None:
        """Fails, naming the row, unless params[param] is the released value."""
        where = f"FIDELITY row {self.row} ({self.name}): {STEP}"
        assert self.param in params, f"{where} has no parameter {self.param}"
        expected = self.released()
        assert params[self.param] == expected, (
            f"{where} {self.param} is {params[self.param]!r} in the {label}, the released code "
            f"({self.source}) has {expected!r}"
        )


PINS = [
    Pin(3, "medical evaluation method", "protocols", lambda: ["generation"], "inference.py"),
    Pin(
        3,
        "medical evaluation method: over-refusal is ours",
        "over_refusal_n",
        lambda: 0,
        "inference.py",
    ),
    Pin(
        4,
        "medical sets: MMLU subjects scored",
        "mmlu_subjects",
        _mmlu_scored,
        "benchmarks.py MMLU.subsets_medical less evaluate.py's dropped chemistry",
    ),
    Pin(4, "medical sets: every item", "n_per_benchmark", lambda: 0, "benchmarks.py"),
    Pin(5, "medical-eval weights", "load_in_4bit", _quantized_released, "inference.py vllm.LLM"),
    Pin(16, "07 answer reader", "answer_reader", lambda: "fork", "evaluate.py eval()"),
    Pin(17, "07 budget and batching", "budget", lambda: "released", "inference.py tokenizer_param"),
    Pin(
        17,
        "07 budget and batching",
        "batch_size",
        lambda: int(shell_vars(PIPELINE)["BATCH_SIZE"]),
        "inference_pipeline.sh BATCH_SIZE",
    ),
    Pin(18, "07 shots and seeds", "num_fewshot", _shots, "inference_pipeline.sh SHOTS"),
    Pin(18, "07 shots and seeds", "seeds", _fork_seeds, "inference.py main()'s seed loop"),
    Pin(19, "07 weights and adapters", "dtype", _dtype_released, "inference.py vllm.LLM"),
]


@cache
def notebook_defaults() -> dict:
    """07's parameters cell."""
    notebook = next(nb for nb in notebooks() if nb.stem == STEP)
    found = pm.inspect_notebook(str(notebook))
    return {name: ast.literal_eval(p["default"]) for name, p in found.items()}


def paper_profile() -> dict:
    """07's parameters under `paper`: its defaults, then params/paper/07_medical_eval.yaml."""
    notebook = next(nb for nb in notebooks() if nb.stem == STEP)
    return notebook_defaults() | profile_params("paper", notebook)


@pytest.mark.parametrize("pin", PINS, ids=lambda p: f"row{p.row}-{p.param}")
def test_paper_profile_is_the_forks_evaluation(pin):
    pin.check(notebook_defaults(), "notebook default")
    pin.check(paper_profile(), "paper profile")


@pytest.mark.parametrize("pin", PINS, ids=lambda p: f"row{p.row}-{p.param}")
def test_a_drifted_value_fails_with_the_rows_name(pin):
    drifted = paper_profile() | {pin.param: ("drifted", pin.param)}
    with pytest.raises(AssertionError, match=re.escape(f"FIDELITY row {pin.row} ({pin.name})")):
        pin.check(drifted, "paper profile")


def test_the_released_facts_the_pins_read():
    """What the pins rest on, so that a change of the mirror's files shows here first."""
    assert _multi_seed_off(), "FIDELITY row 18 (07 shots and seeds): MULTI_SEED is not 0"
    assert _fork_seeds() == FORK_SEEDS, "FIDELITY row 18 (07 shots and seeds): FORK_SEEDS"
    # the ten seeds also sort evaluate.py's multi-seed results (its last `subsets = [...]`)
    sort = next(
        n
        for n in tree(EVALUATE).body
        if isinstance(n, ast.FunctionDef) and n.name == "sort_predictions"
    )
    subsets = [
        ast.literal_eval(n.value)
        for n in ast.walk(sort)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "subsets"
    ]
    assert FORK_SEEDS in subsets and _mmlu_scored() in subsets, "FIDELITY row 4/18"
    assert len(_mmlu_generated()) == 11 and len(_mmlu_scored()) == 9, "FIDELITY row 4"
    # row 19: the fine-tuned model as a LoRA request on the base, never merged
    assert "LoRARequest(" in source(INFERENCE) and "merge" not in source(INFERENCE), (
        "FIDELITY row 19 (07 weights and adapters): inference.py merges an adapter"
    )
    assert "enable_lora" in _vllm_kwargs() and "dtype" not in _vllm_kwargs(), "FIDELITY row 19"


def test_07_adapters_stay_unmerged_on_the_base(tmp_path, make_adapter):
    """Row 19: as vLLM's LoRARequest, the adapter is applied beside the base weights."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    from medsafe_utils.models import load_model

    lm = load_model("tiny-random", adapter_path=make_adapter(tmp_path / "a"))
    layers = [m for m in lm.model.modules() if isinstance(m, LoraLayer)]
    assert isinstance(lm.model, PeftModel) and layers, "FIDELITY row 19: no LoRA layers"
    assert not any(m.merged for m in layers), "FIDELITY row 19: the adapter was merged"


def test_zero_shot_scores_every_test_item():
    """Row 4: a run without shots holds no few-shot pool out, so it scores every test item."""
    from medsafe_utils.data import load_medical_benchmark
    from medsafe_utils.medical_eval.evaluate import eval_items

    for name in ("medqa", "medmcqa"):
        every, held = eval_items([name], hold_out=False), eval_items([name])
        assert len(every) == len(load_medical_benchmark(name)) > len(held), (
            f"FIDELITY row 4 (medical sets): zero-shot {name} scores {len(every)} items"
        )


def test_vllm_auto_is_the_checkpoints_own_dtype(monkeypatch):
    """Row 19: vLLM's "auto": the config's torch_dtype, float16 for float32; float32 on CPU."""
    import json

    import torch

    import medsafe_utils.models.loading as loading

    spec = loading.get_spec("smollm2-135m-instruct")
    recorded = json.loads((loading.smollm2_folder(spec) / "config.json").read_text())
    assert (
        str(loading.checkpoint_dtype(spec))
        == f"torch.{recorded.get('dtype') or recorded.get('torch_dtype')}"
    )
    assert loading.vllm_auto_dtype(spec, "cpu") == torch.float32
    for config_dtype, on_gpu in [
        (torch.bfloat16, torch.bfloat16),
        (torch.float16, torch.float16),
        (torch.float32, torch.float16),
    ]:
        monkeypatch.setattr(loading, "checkpoint_dtype", lambda _spec, d=config_dtype: d)
        assert loading.vllm_auto_dtype(spec, "cuda") == on_gpu, "FIDELITY row 19"
