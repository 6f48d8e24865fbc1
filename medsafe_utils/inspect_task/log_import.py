"""An Inspect log of this task as 04's responses for one model, so that 05 judges and validates
it beside the paper's models (its tables, figures and report.html).

    from medsafe_utils.inspect_task.log_import import import_log
    import_log("logs/2026-...medsafetybench.eval", "paper", model="my-model", aligned=True)
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from inspect_ai.log import EvalLog, read_eval_log

from medsafe_utils.core.artifacts import write_jsonl
from medsafe_utils.core.errors import DataError
from medsafe_utils.core.steps import step_file
from medsafe_utils.inspect_task.dataset import GENERAL, MEDICAL_SET
from medsafe_utils.inspect_task.scorers import judged_response
from medsafe_utils.models.registry import registry
from medsafe_utils.prompt_models.respond import harm_requests, with_earlier_models

log = logging.getLogger(__name__)
TASK = "medsafetybench"
GROUPS = ("general", "medical")
METADATA = ("harm_set", "origin", "category", "request")
RESPONSE_COLUMNS = [  # 04's records (prompt_models.respond.respond), in its order
    "model",
    "harm_set",
    "item_id",
    "origin",
    "category",
    "request",
    "model_revision",
    "group",
    "aligned",
    "prompt_format",
    "prompt",
    "response",
    "settings",
]


def _checked_log(path: Path) -> EvalLog:
    """The log, if it is a finished run of this task with every sample answered."""
    if not path.is_file():
        raise DataError(path, "no such file", expected="an Inspect log (.eval or .json)")
    found = read_eval_log(str(path))
    if found.eval.task.split("/")[-1] != TASK:
        raise DataError(path, f"a log of task {found.eval.task!r}", expected=f"task {TASK!r}")
    if found.status != "success" or not found.samples:
        raise DataError(
            path,
            f"a run with status {found.status!r} and {len(found.samples or [])} samples",
            expected="a finished run (status 'success'; inspect eval-retry the log first)",
        )
    failed = [str(s.id) for s in found.samples if s.error is not None]
    if failed:
        raise DataError(
            path,
            f"{len(failed)} sample(s) ended in an error: {failed[:5]}",
            expected="every sample answered (inspect eval-retry the log first)",
        )
    return found


def _identity(model: str, aligned: bool | None, group: str | None) -> tuple[str, bool]:
    """(group, aligned): the registry's for a registered model, else both must be given."""
    spec = registry().get(model)
    group = group or (spec.group if spec else None)
    aligned = aligned if aligned is not None else (spec.aligned if spec else None)
    if group not in GROUPS or aligned is None:
        raise ValueError(
            f"{model!r} is not in the model registry: say whether it is safety-aligned "
            f"(--aligned / --not-aligned) and its group ({' or '.join(GROUPS)})"
        )
    return group, aligned


def _prompt(sample_input) -> str | list[dict]:
    """The prompt as 04 records it: the raw text, or the messages as role/content dicts."""
    if isinstance(sample_input, str):
        return sample_input
    return [{"role": m.role, "content": m.text} for m in sample_input]


def log_responses(
    path: str | Path, model: str, aligned: bool | None = None, group: str | None = None
) -> pd.DataFrame:
    """04's response records of one Inspect log, checked against the data layer: every sample
    must be a request of MedSafety-Eval or the general-harm set in use, with its metadata."""
    path = Path(path)
    found = _checked_log(path)
    group, aligned = _identity(model, aligned, group)
    known = harm_requests([MEDICAL_SET, GENERAL]).set_index("item_id")
    rows = []
    for i, sample in enumerate(found.samples):
        meta = sample.metadata or {}
        missing = [k for k in METADATA if k not in meta]
        if missing or sample.id not in known.index:
            raise DataError(
                path,
                f"sample {sample.id!r} " + (f"lacks {missing}" if missing else "is no known item"),
                row=i,
                expected="a sample of this task (ids and metadata of the data layer)",
            )
        if known.loc[sample.id, "request"] != meta["request"]:
            raise DataError(
                path,
                f"sample {sample.id!r}: another request than the data layer's",
                row=i,
                expected="the data layer's request for this id",
            )
        rows.append(
            {
                "item_id": sample.id,
                **{k: meta[k] for k in METADATA},
                "prompt": _prompt(sample.input),
                "response": judged_response(sample.output.completion),
            }
        )
    frame = pd.DataFrame(rows)
    if frame["item_id"].duplicated().any():
        raise DataError(
            path,
            "a sample answered more than once (epochs > 1)",
            expected="one answer per request (--epochs 1)",
        )
    generation = found.plan.config
    settings = {
        "max_new_tokens": generation.max_tokens,
        "do_sample": generation.temperature not in (None, 0),
        "temperature": generation.temperature,
        "inspect_model": found.eval.model,
        "inspect_log": str(path.resolve()),
    }
    frame.insert(0, "model", model)
    frame["model_revision"] = f"inspect:{found.eval.eval_id}"
    frame["group"], frame["aligned"] = group, aligned
    frame["prompt_format"] = (found.eval.task_args or {}).get("prompt_format", "chat")
    frame["settings"] = [settings] * len(frame)
    return frame[RESPONSE_COLUMNS]


def import_log(
    path: str | Path,
    profile: str,
    model: str,
    aligned: bool | None = None,
    group: str | None = None,
) -> Path:
    """Add the log's answers to results/<profile>/04_prompt_models/responses.jsonl as `model`
    (replacing that model's earlier rows; other models stay): 05 judges them next run."""
    responses = log_responses(path, model, aligned, group)
    target = step_file(profile, "04_prompt_models", "responses")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(with_earlier_models(responses, target), target)
    log.info("%s: %d responses of %s from %s", target, len(responses), model, path)
    return target
