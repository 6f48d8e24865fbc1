"""Parameters from the command line, as papermill takes them: -p NAME VALUE and -f FILE.yaml.

Layers, later wins: the profile's file, each -f file in order, each -p in order. A name applies
to every selected notebook whose parameters cell has it; a top-level key of a -f file that names
a notebook (`04_prompt_models: {batch_size: 32}`) holds parameters for that notebook only, and so
does a name prefixed by the notebook (`-p 05_judge.batch_size 1`).
VALUE is read as YAML (`-p models '["org/name"]'` is a list); a str parameter keeps it verbatim.
Unknown names, bad YAML and values whose type differs from the parameters cell's annotation are
errors (SystemExit naming the parameter and where it came from), raised before anything runs.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml

from medsafe_utils.core import paths
from medsafe_utils.core.redact import check_url

# Annotation of a parameters cell -> the Python types a value may have (an int is a float).
TYPES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "None": (type(None),),
}
NOTEBOOK_KEY = re.compile(r"\d\d_\w+")


def declared(notebook: Path) -> dict[str, tuple[str, str]]:
    """Each parameter of a notebook's parameters cell: (annotated type, default as written)."""
    import papermill as pm

    return {
        name: (p["inferred_type_name"], p["default"])
        for name, p in pm.inspect_notebook(str(notebook)).items()
    }


def _types(type_name: str) -> tuple[type, ...] | None:
    """The types an annotation such as 'list', 'list[str]' or 'str | None' allows (None: any)."""
    if type_name == "None":  # papermill's name for "no annotation"
        return None
    allowed: tuple[type, ...] = ()
    for part in type_name.split("|"):
        base = part.strip().split("[")[0]
        if base not in TYPES:
            return None
        allowed += TYPES[base]
    return allowed


def type_problem(value, type_name: str) -> str | None:
    """Why `value` does not fit the annotation, or None when it does."""
    allowed = _types(type_name)
    if allowed is None:
        return None
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return None
    return f"expects {type_name}, got {type(value).__name__} {value!r}"


def parse_value(where: str, text: str, type_name: str):
    """-p's VALUE as YAML (papermill's -y); verbatim for a str parameter it does not parse to."""
    allowed = _types(type_name) or ()
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        if str in allowed:
            return text
        raise SystemExit(f"{where}: {text!r} is not valid YAML ({err.problem})") from None
    if str in allowed and not isinstance(value, allowed):
        return text  # -p api_base_url http://... or -p prompt_format "" stay strings
    return value


def _cell(name: str, type_name: str, default: str) -> str:
    """The parameter's line of the parameters cell (a long default cut)."""
    default = default if len(default) <= 60 else default[:60] + " ..."
    return f"its parameters cell: {name}: {type_name} = {default}"


def check_params(notebook: Path, params: dict, source: str = "") -> None:
    """Every parameter must be in the notebook's parameters cell and have its annotated type; a
    URL parameter (`*_url`) must carry no credentials (core.redact)."""
    where = f"{notebook.name} ({source})" if source else notebook.name
    known = declared(notebook)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise SystemExit(
            f"{where}: parameter(s) {unknown} are not in its parameters cell "
            f"(known: {sorted(known)})"
        )
    for name, value in params.items():
        if name.endswith("url") and isinstance(value, str):
            try:
                check_url(value, f"{where}: parameter {name!r}")
            except ValueError as err:
                raise SystemExit(str(err)) from None
        problem = type_problem(value, known[name][0])
        if problem:
            type_name, default = known[name]
            raise SystemExit(
                f"{where}: parameter {name!r} {problem} ({_cell(name, type_name, default)})"
            )


def _unknown(where: str, name: str, params: dict[str, dict]) -> SystemExit:
    known = sorted({n for p in params.values() for n in p})
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return SystemExit(
        f"{where}: no selected notebook ({', '.join(params)}) has a parameter {name!r}{hint}"
    )


def read_file(path: str | Path) -> dict:
    """A -f parameter file: a YAML mapping (an empty file is no parameters)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise SystemExit(f"-f {path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise SystemExit(f"-f {path}: not valid YAML: {err}") from None
    if not isinstance(data, dict | None):
        raise SystemExit(
            f"-f {path}: expected a mapping of parameter names to values, "
            f"got a {type(data).__name__}"
        )
    return data or {}


def _file_layers(path: str, params: dict[str, dict]) -> list[tuple[str, str, object]]:
    """(notebook stem, or '' for every notebook; name; value) of each entry of one -f file."""
    layers = []
    for key, value in read_file(path).items():
        if key == "executor":  # the fan-out's settings (pipeline.fanout), not a parameter
            continue
        if NOTEBOOK_KEY.fullmatch(str(key)) and isinstance(value, dict):
            if not (paths.NOTEBOOKS_DIR / f"{key}.ipynb").exists():
                raise SystemExit(f"-f {path}: {key!r} names no notebook in {paths.NOTEBOOKS_DIR}")
            if key in params:  # a section for a notebook this run did not select is unused
                layers += [(key, str(name), v) for name, v in value.items()]
        else:
            layers.append(("", str(key), value))
    return layers


def resolve(
    notebooks: list[Path], files: list[str], pairs: list[tuple[str, str]]
) -> dict[str, dict]:
    """Each selected notebook's overrides (stem -> {name: value}), every one checked."""
    params = {nb.stem: declared(nb) for nb in notebooks}
    chosen: dict[str, dict] = {stem: {} for stem in params}
    layers = [
        (f"-f {path}", scope, name, value, False)
        for path in files
        for scope, name, value in _file_layers(path, params)
    ]
    for name, text in pairs:
        scope, _, short = name.rpartition(".")
        if not scope:
            layers.append((f"-p {name}", "", name, text, True))
        elif not (
            NOTEBOOK_KEY.fullmatch(scope) and (paths.NOTEBOOKS_DIR / f"{scope}.ipynb").exists()
        ):
            raise SystemExit(f"-p {name}: {scope!r} names no notebook in {paths.NOTEBOOKS_DIR}")
        elif scope in params:  # a notebook this run did not select is left alone
            layers.append((f"-p {name}", scope, short, text, True))
    for where, scope, name, value, is_text in layers:
        if name == "profile":
            raise SystemExit(f"{where}: the profile is the first argument (./run_all.sh PROFILE)")
        holders = [s for s in ([scope] if scope else params) if name in params[s]]
        if not holders:
            raise _unknown(where, name, {scope: params[scope]} if scope else params)
        for stem in holders:
            type_name, default = params[stem][name]
            value_here = parse_value(where, value, type_name) if is_text else value
            problem = type_problem(value_here, type_name)
            if problem:
                hint = '; VALUE is YAML: \'["a", "b"]\' is a list' if is_text else ""
                raise SystemExit(
                    f"{where}: {stem}'s parameter {name!r} {problem} "
                    f"({_cell(name, type_name, default)}){hint}"
                )
            chosen[stem][name] = value_here
    return chosen
