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
import shlex
from collections.abc import Callable
from functools import cache
from types import SimpleNamespace
from typing import Any

from medsafe_utils.data.manifest import ensure_file, load_manifest

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


def listed(folder: str) -> list[str]:
    """The released files under `folder` that the manifest lists (read them with `source`)."""
    files = [e["path"] for d in load_manifest()["datasets"].values() for e in d["files"]]
    return sorted(p for p in files if p.startswith(folder.rstrip("/") + "/"))


@cache
def tree(relpath: str) -> ast.Module:
    """A released Python file, parsed."""
    return ast.parse(source(relpath), filename=relpath)


def function_def(relpath: str, name: str) -> ast.FunctionDef:
    """`def name` of a released file: the module-level one (the last: the one Python keeps), else
    one nested in a block or a function (e.g. exp02's `eval_using_gpt` under `__main__`)."""
    top = [n for n in tree(relpath).body if isinstance(n, ast.FunctionDef) and n.name == name]
    nested = [n for n in ast.walk(tree(relpath)) if isinstance(n, ast.FunctionDef)]
    found = top or [n for n in nested if n.name == name]
    if not found:
        raise NotInReleased(f"{relpath} defines no function {name!r}")
    if not top and len(found) > 1:
        raise NotInReleased(f"{relpath} defines {len(found)} nested functions {name!r}")
    return found[-1]


def class_def(relpath: str, name: str) -> ast.ClassDef:
    """The module-level `class name` of a released file."""
    found = [n for n in tree(relpath).body if isinstance(n, ast.ClassDef) and n.name == name]
    if not found:
        raise NotInReleased(f"{relpath} defines no class {name!r}")
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


def call_args(relpath: str, callee: str, function: str | None = None) -> list[tuple[list, dict]]:
    """(positional arguments, keyword arguments) of each call to `callee`, in source order."""
    found = {}
    for node in _scope(relpath, function):
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
            if name == callee:
                found[id(call)] = call
    ordered = sorted(found.values(), key=lambda c: (c.lineno, c.col_offset))
    return [
        ([_value(a) for a in c.args], {k.arg: _value(k.value) for k in c.keywords if k.arg})
        for c in ordered
    ]


def arguments(relpath: str) -> dict[str, Any]:
    """The argparse options of a released script: destination -> default (None if none)."""
    found = {}
    for args, keywords in call_args(relpath, "add_argument"):
        flag = args[0].lstrip("-").replace("-", "_")
        found[keywords.get("dest", flag)] = keywords.get("default")
    return found


def _definition(relpath: str, name: str) -> ast.stmt:
    try:
        return function_def(relpath, name)
    except NotInReleased:
        return class_def(relpath, name)


def functions(
    relpath: str, *names: str, namespace: dict[str, Any] | None = None
) -> SimpleNamespace:
    """Released functions (or classes), executed from their own source in one namespace, as
    oracles.

    `namespace` holds what they use (modules such as `re`), so that the released file's other
    imports (vLLM, nltk, ...) need not be installed. The functions may call each other.
    """
    scope: dict[str, Any] = {"__builtins__": __builtins__, "re": re, **(namespace or {})}
    module = ast.Module(body=[_definition(relpath, n) for n in names], type_ignores=[])
    exec(compile(module, relpath, "exec"), scope)  # noqa: S102 - the verified released file
    return SimpleNamespace(**{n: scope[n] for n in names})


def function(relpath: str, name: str, namespace: dict[str, Any] | None = None) -> Callable:
    """One released function, executed from its source (see `functions`)."""
    return getattr(functions(relpath, name, namespace=namespace), name)


def module_values(relpath: str) -> dict[str, Any]:
    """Every name a released file defines, the file executed whole: only for files of data
    (assignments, no imports), such as exps/text_for_gpt_eval.py."""
    body = tree(relpath).body
    if any(isinstance(n, ast.Import | ast.ImportFrom) for n in body):
        raise NotInReleased(f"{relpath} imports modules: read its values with `values`")
    scope: dict[str, Any] = {"__builtins__": __builtins__}
    exec(compile(tree(relpath), relpath, "exec"), scope)  # noqa: S102 - the verified released file
    return {k: v for k, v in scope.items() if k != "__builtins__"}


def values(
    relpath: str, *names: str, function: str | None = None, namespace: dict | None = None
) -> dict[str, Any]:
    """The values of `names`, each of their assignments executed in source order (in the module,
    its `__main__` block included, or in a function): for expressions beyond literals, such as
    string concatenations and list comprehensions over other assigned lists (name them too)."""
    statements = [
        n
        for n in _scope(relpath, function)
        if isinstance(n, ast.Assign)
        and all(isinstance(t, ast.Name) and t.id in names for t in n.targets)
    ]
    statements.sort(key=lambda n: (n.lineno, n.col_offset))
    scope: dict[str, Any] = {"__builtins__": __builtins__, **(namespace or {})}
    exec(compile(ast.Module(body=statements, type_ignores=[]), relpath, "exec"), scope)  # noqa: S102
    missing = [n for n in names if n not in scope]
    if missing:
        raise NotInReleased(f"{relpath} assigns no {missing}")
    return {n: scope[n] for n in names}


def expression(
    relpath: str, name: str, params: list[str], namespace: dict | None = None
) -> Callable:
    """The expression assigned to `name` (once, anywhere in the file) as a function of `params`:
    e.g. filter_harmful.py's score reading, `harmfulness_score = float(re.search(...))`."""
    found = [
        n.value
        for n in ast.walk(tree(relpath))
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets)
    ]
    if len(found) != 1:
        raise NotInReleased(f"{relpath} assigns {name!r} {len(found)} times, expected once")
    args = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(p) for p in params],
        kwonlyargs=[],
        kw_defaults=[],
        defaults=[],
    )
    lam = ast.fix_missing_locations(ast.Expression(ast.Lambda(args=args, body=found[0])))
    scope: dict[str, Any] = {"__builtins__": __builtins__, "re": re, **(namespace or {})}
    return eval(compile(lam, relpath, "eval"), scope)  # noqa: S307 - the verified released file


def comparisons(relpath: str, name: str) -> list[tuple[str, Any]]:
    """(operator, value) of each comparison of the variable `name` with a literal, e.g.
    ('GtE', 7.0) for `harmfulness_score >= 7.0`."""
    found = []
    for node in ast.walk(tree(relpath)):
        if isinstance(node, ast.Compare) and getattr(node.left, "id", None) == name:
            for op, right in zip(node.ops, node.comparators, strict=True):
                found.append((type(op).__name__, _value(right)))
    return found


def branch_lambdas(relpath: str, subject: str) -> list[tuple[list[str], Callable]]:
    """For each `if <subject> in a + b + ...:` branch (elif ones too) that assigns a lambda
    (exp01's per-family templates: `prompts_df.apply(lambda row: ..., axis=1)`): the names
    added up in its test, and the lambda, executed from its source."""
    found = []
    for node in ast.walk(tree(relpath)):
        test = getattr(node, "test", None)
        if not (
            isinstance(node, ast.If)
            and isinstance(test, ast.Compare)
            and isinstance(test.ops[0], ast.In)
            and ast.unparse(test.left) == subject
        ):
            continue
        lambdas = [n for b in node.body for n in ast.walk(b) if isinstance(n, ast.Lambda)]
        if len(lambdas) != 1:
            continue
        names = [n.id for n in ast.walk(test.comparators[0]) if isinstance(n, ast.Name)]
        expr = ast.fix_missing_locations(ast.Expression(lambdas[0]))
        scope = {"__builtins__": __builtins__}
        found.append((names, eval(compile(expr, relpath, "eval"), scope)))  # noqa: S307
    return found


def script_commands(relpath: str) -> list[dict[str, Any]]:
    """The `python <script> --flag value ...` commands of a released shell script (comments
    dropped, continued lines joined): {"script": ..., "positional": [...], flag: value, ...,
    "loop": {variable: [values]} when inside a `for variable in a b c` loop}."""
    text = re.sub(r"\\\n", " ", source(relpath))
    loop: dict[str, list[str]] = {}
    found = []
    for line in (ln.split("#")[0].strip() for ln in text.splitlines()):
        match = re.match(r"for (\w+) in (.*)$", line)
        if match:
            loop = {match.group(1): match.group(2).split()}
        elif line == "done":
            loop = {}
        elif line.startswith("python "):
            words = shlex.split(line)
            command: dict[str, Any] = {"script": words[1], "positional": [], "loop": loop}
            rest = iter(words[2:])
            for word in rest:
                if word.startswith("--"):
                    command[word[2:]] = next(rest)
                else:
                    command["positional"].append(word)
            found.append(command)
    return found


def shell_vars(relpath: str) -> dict[str, str]:
    """`NAME=value` lines of a released shell script (value without quotes or trailing comment)."""
    found = {}
    for line in source(relpath).splitlines():
        match = re.match(r"\s*([A-Z_][A-Z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s#]*)", line)
        if match:
            found[match.group(1)] = match.group(2).strip("\"'")
    return found


# ---------------------------------------------------------------- facts of exp01 (and model_hf)


def exp01_lists() -> dict[str, list[str]]:
    """exp01's `family_*` and `ft_models_*` lists, the fine-tuned families built from them."""
    names = {
        t.id
        for n in ast.walk(tree(EXP01))
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name) and t.id.startswith(("family_", "ft_models_"))
    }
    return values(EXP01, *sorted(names))


def exp01_models() -> dict[str, str]:
    """The models exp01 prompted (its `family_*` lists, fine-tuned ones aside) -> hub id
    (models/model_hf.py's `model_name_dict`) or API model name (exp01's `gpt_name_dict`)."""
    hub = assigned(MODEL_HF, "model_name_dict", function="create_model_hf")
    api = assigned(EXP01, "gpt_name_dict")
    lists = exp01_lists()
    names = [
        m for k, v in lists.items() if k.startswith("family_") and not k.endswith("_ft") for m in v
    ]
    return {m: api[m] if m in api else hub[m] for m in names}


def exp01_ft_bases() -> set[str]:
    """The base models exp01's fine-tuned families were trained from (`<base>_<kind>_n<n>`)."""
    lists = exp01_lists()
    ft = [m for k, v in lists.items() if k.startswith("family_") and k.endswith("_ft") for m in v]
    return {m.split("_")[0] for m in ft}


def exp01_ft_n(kind: str) -> list[int]:
    """The demonstration counts of exp01's `ft_models_<kind>` adapters (`<kind>_n<n>`)."""
    return [int(m.removeprefix(f"{kind}_n")) for m in exp01_lists()[f"ft_models_{kind}"]]


def exp01_ft_kinds() -> list[str]:
    """The demonstration kinds of exp01's adapters, in `ft_models_suffixes`' order."""
    kinds = [m.split("_")[0] for m in exp01_lists()["ft_models_suffixes"]]
    return list(dict.fromkeys(kinds))


def exp01_templates() -> dict[str, Callable]:
    """Each model exp01 prompted from a template -> its family's template (the branch's lambda,
    executed from the file), called with a row: `template({"question": q})`."""
    lists = exp01_lists()
    found = {}
    for names, template in branch_lambdas(EXP01, "args.model_name"):
        for family in names:
            for model in lists[family]:
                found.setdefault(model, template)
    return found


# ---------------------------------------------------------------- exp02's judge prompt


class _Never(Exception):
    """Stands in for `openai.error.InvalidRequestError`: the captured call never raises it."""


def exp02_eval_prompt(
    question: str,
    response: str,
    *,
    dataset: str = "med_harm_gpt4",
    model_name: str = "gpt3",
    prompt: str | None = None,
) -> str:
    """The judge prompt exp02 sends for one row: its nested `eval_using_gpt` run from the file,
    with text_for_gpt_eval.py's policies and rubric, and the judge call captured. `dataset`
    picks the policy (med_harm_* medical, hex_phi general), `model_name` whether the response is
    stripped of `prompt` (the rendered prompt; the question itself for GPT models)."""
    texts = module_values(GPT_EVAL_TEXT)
    namespace = {
        "args": SimpleNamespace(model_name=model_name, dataset=dataset),
        "usage_policy_dict": texts["usage_policy_dict"],
        "rubric": texts["rubric"],
        "gpt": lambda prompt: prompt,  # the judge's input, returned as its answer
        "openai": SimpleNamespace(error=SimpleNamespace(InvalidRequestError=_Never)),
        "logger": None,
    }
    eval_using_gpt = function(EXP02, "eval_using_gpt", namespace)
    row = {"question": question, "prompt": question if prompt is None else prompt}
    return eval_using_gpt(row | {"response": response})
