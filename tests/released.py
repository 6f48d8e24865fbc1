"""The released code of the study, read at test time: values parsed with `ast`, pure functions run.

The files come through the data layer (`data/manifest.json`: `released_med_safety_bench`,
`released_meditron`), so each is checked against its sha256 before a test reads it. Nothing of the
released code is copied into the project: a test asks this module for a value or a function, and
the answer is computed from the original file every run.

    >>> assigned(EXP01, "ft_models_med")            # a module-level literal
    >>> defaults(FINETUNING, "train")["lora_r"]      # a function's default argument
    >>> fork = functions(EVALUATE, "eval", "clean_mcq_answer", namespace={"re": re})
    >>> fork.eval("Answer: B", "b")
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from functools import cache
from types import SimpleNamespace
from typing import Any

from medsafe_utils.data.manifest import ensure_file

MSB = "released/med-safety-bench"
MEDITRON = "released/meditron/evaluation"
EXP01 = f"{MSB}/exps/exp01_prompt_models.py"
EXP02 = f"{MSB}/exps/exp02_eval_responses.py"
EXP03 = f"{MSB}/exps/exp03_generate_safe_responses.py"
GPT_EVAL_TEXT = f"{MSB}/exps/text_for_gpt_eval.py"
GCG = f"{MSB}/exps/adv_attack/gcg.py"
GENERATE_PROMPTS = f"{MSB}/exps/adv_attack/generate_prompts.py"
FILTER = f"{MSB}/exps/adv_attack/filter_harmful.py"
SCRIPTS = f"{MSB}/exps/adv_attack/bash scripts"
FINETUNING = f"{MSB}/training/finetuning.py"
PROMPTER = f"{MSB}/training/prompter.py"
MODEL_HF = f"{MSB}/models/model_hf.py"
MODEL_FT = f"{MSB}/models/model_ft.py"
INFERENCE = f"{MEDITRON}/inference.py"
EVALUATE = f"{MEDITRON}/evaluate.py"
BENCHMARKS = f"{MEDITRON}/benchmarks.py"
PIPELINE = f"{MEDITRON}/inference_pipeline.sh"


class NotInReleased(LookupError):
    """The released file does not hold what a test asked for (the original changed, or a typo)."""


@cache
def source(relpath: str) -> str:
    """A released file's text, verified against the manifest's sha256."""
    return ensure_file(relpath).read_text(encoding="utf-8")


@cache
def tree(relpath: str) -> ast.Module:
    """A released Python file, parsed."""
    return ast.parse(source(relpath), filename=relpath)


def function_def(relpath: str, name: str) -> ast.FunctionDef:
    """The module-level `def name` of a released file (the last one: the one Python keeps)."""
    found = [n for n in tree(relpath).body if isinstance(n, ast.FunctionDef) and n.name == name]
    if not found:
        raise NotInReleased(f"{relpath} defines no function {name!r}")
    return found[-1]


def _scope(relpath: str, function: str | None) -> list[ast.stmt]:
    """Statements of the module, or of one of its functions (nested blocks included)."""
    root = function_def(relpath, function) if function else tree(relpath)
    return [n for n in ast.walk(root) if isinstance(n, ast.stmt)]


def assigned_all(relpath: str, name: str, function: str | None = None) -> list[Any]:
    """Every literal value assigned to `name` (in source order), in the module or a function."""
    values = []
    for node in _scope(relpath, function):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            values.append(ast.literal_eval(node.value))
    return values


def assigned(relpath: str, name: str, function: str | None = None) -> Any:
    """The literal value assigned to `name`; an error unless it is assigned exactly once."""
    values = assigned_all(relpath, name, function)
    where = f"{relpath}{f' {function}()' if function else ''}"
    if len(values) != 1:
        raise NotInReleased(f"{where} assigns {name!r} {len(values)} times, expected once")
    return values[0]


def defaults(relpath: str, function: str) -> dict[str, Any]:
    """A released function's default arguments, as values (non-literal defaults as source text)."""
    args = function_def(relpath, function).args
    pairs = list(zip(args.args[len(args.args) - len(args.defaults) :], args.defaults, strict=True))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d]
    return {a.arg: _value(d) for a, d in pairs}


def calls(relpath: str, callee: str, function: str | None = None) -> list[dict[str, Any]]:
    """The keyword arguments of each call to `callee` (a name or an attribute's last part)."""
    found = []
    for node in _scope(relpath, function):
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
            if name == callee:
                found.append({k.arg: _value(k.value) for k in call.keywords if k.arg})
    # ast.walk over statements visits nested statements again: keep each call once.
    unique = []
    for kw in found:
        if kw not in unique:
            unique.append(kw)
    return unique


def _value(node: ast.expr) -> Any:
    """A literal's value, else the expression's source text (e.g. `torch.float16`)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def functions(
    relpath: str, *names: str, namespace: dict[str, Any] | None = None
) -> SimpleNamespace:
    """Released functions, executed from their own source in one namespace, as oracles.

    `namespace` holds what they use (modules such as `re`), so that the released file's other
    imports (vLLM, nltk, ...) need not be installed. The functions may call each other.
    """
    scope: dict[str, Any] = {"__builtins__": __builtins__, "re": re, **(namespace or {})}
    module = ast.Module(body=[function_def(relpath, n) for n in names], type_ignores=[])
    exec(compile(module, relpath, "exec"), scope)  # noqa: S102 - the verified released file
    return SimpleNamespace(**{n: scope[n] for n in names})


def function(relpath: str, name: str, namespace: dict[str, Any] | None = None) -> Callable:
    """One released function, executed from its source (see `functions`)."""
    return getattr(functions(relpath, name, namespace=namespace), name)


def shell_vars(relpath: str) -> dict[str, str]:
    """`NAME=value` lines of a released shell script (value without quotes or trailing comment)."""
    found = {}
    for line in source(relpath).splitlines():
        match = re.match(r"\s*([A-Z_][A-Z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s#]*)", line)
        if match:
            found[match.group(1)] = match.group(2).strip("\"'")
    return found
