"""06_finetune's grid: which adapters to train and where they live (the index 07 reads), the
responses of base models ("before") and adapters ("after").

    runs = finetune_grid(["medalpaca-7b"], ["med", "gen", "both"], *grid_sizes([200], [200, 400]))
    trained = train_grid(runs, QLoRAConfig(), step_dir)       # reuses finished adapters
    responses = respond_grid(trained, ["medalpaca-7b"], requests, RespondConfig(), cache, step_dir)

What changed (tables with intervals and paired tests) is finetune.effects'."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from medsafe_utils.finetune.alpaca import (
    FT_KINDS,
    alpaca_prompts,
    demonstration_split,
    held_out_demonstrations,
)
from medsafe_utils.finetune.qlora import RUN_COLUMNS, QLoRAConfig, train
from medsafe_utils.models import load_model
from medsafe_utils.models.adapters import (
    AdapterCheck,
    AdapterRecord,
    check_adapter,
    write_adapter_records,
)
from medsafe_utils.models.loading import adapter_fingerprint
from medsafe_utils.prompt_models.respond import RespondConfig, respond

log = logging.getLogger(__name__)
ADAPTERS_DIR = "adapters"
CHECK_FILE = "adapter_check.json"  # in the adapter's folder: check_adapter's result, for reruns
BEFORE = "none"  # the `type` of a base model without adapter: the "before"
# The denser grid: every published split (n = 100 ... 900; both to 1,800), a superset of the
# adapters the released study evaluated (med/gen 200, 400, 600, 800, 900; both 200 ... 1,800).
DENSE_N = list(range(100, 1000, 100))
DENSE_N_BOTH = list(range(100, 1900, 100))


@dataclass(frozen=True)
class GridRun:
    """One adapter of the grid: base model x demonstration type x number of demonstrations."""

    base: str
    type: str
    n: int

    @property
    def name(self) -> str:
        """Adapter folder name, e.g. medalpaca-7b__med_n100 (a hub id's '/' becomes '--')."""
        return f"{self.base.strip('/').replace('/', '--')}__{self.type}_n{self.n}"


def finetune_grid(
    base_models: list[str],
    types: list[str],
    n_values: list[int],
    n_values_both: list[int] | None = None,
) -> list[GridRun]:
    """Every base x type x n ('both' may use its own sizes, up to 1,800 in the paper)."""
    unknown = set(types) - set(FT_KINDS)
    if unknown:
        raise ValueError(f"unknown demonstration type(s) {sorted(unknown)}: use {FT_KINDS}")
    return [
        GridRun(base, kind, n)
        for base in base_models
        for kind in types
        for n in (n_values_both if kind == "both" and n_values_both else n_values)
    ]


def grid_sizes(
    n_values: list[int], n_values_both: list[int], dense: bool = False
) -> tuple[list[int], list[int]]:
    """The sizes of med/gen and of both adapters: as given, or with dense=True every published
    split (DENSE_N, DENSE_N_BOTH)."""
    return (list(DENSE_N), list(DENSE_N_BOTH)) if dense else (list(n_values), list(n_values_both))


def train_grid(
    runs: list[GridRun],
    config: QLoRAConfig,
    step_dir: Path,
    *,
    split_n: int = 0,
    source: str = "published",
    profile: str = "paper",
    n_verify: int = 4,
    seed: int = 0,
    verify_dtype: str = "auto",
    verify_in_4bit: bool = False,
) -> pd.DataFrame:
    """Train (or reuse) each adapter, then load it and check on held-out demonstrations that it
    changes its base model's logits (check_adapter raises if not; a reused adapter's check is
    read back). One row per run.

    split_n > 0 trains each n on the first n demonstrations of the n=split_n split."""
    rows = []
    # no text bar around the runs: the Trainer's own progress (HTML in a notebook) would cut it,
    # and the saved notebook would keep its unfinished state
    for i, run in enumerate(runs, 1):
        log.info("fine-tuning %d of %d: %s", i, len(runs), run.name)
        demos = demonstration_split(
            run.type, split_n or run.n, source, profile, take=run.n if split_n else 0
        )
        out = Path(step_dir) / ADAPTERS_DIR / run.name
        result = train(replace(config, base_model=run.base, output_dir=str(out)), demos)
        prompts = alpaca_prompts(held_out_demonstrations(demos, n_verify, seed))
        check = _checked(run.base, out, prompts, verify_dtype, verify_in_4bit)
        rows.append(
            {
                "model": run.base,
                "type": run.type,
                "n": run.n,
                "adapter": run.name,
                "path": str(out.relative_to(step_dir)),
                **result.summary(),
                "loss_fell": result.loss_fell,
                "max_abs_logit_diff": check.max_abs_logit_diff,
                "top1_changed": check.top1_changed,
            }
        )
    return pd.DataFrame(rows)


def _checked(
    base: str, adapter: Path, prompts: list[str], dtype: str, in_4bit: bool
) -> AdapterCheck:
    """check_adapter on a saved adapter, or what an earlier run recorded (CHECK_FILE) for these
    very weights, probes and precision: a rerun loads no model to check an adapter again (a
    record it cannot read is checked again and rewritten)."""
    asked = {
        "adapter": adapter_fingerprint(adapter),
        "prompts": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
        "dtype": dtype,
        "load_in_4bit": in_4bit,
    }
    path = adapter / CHECK_FILE
    try:
        record = json.loads(path.read_text())
        if record["asked"] == asked:
            return AdapterCheck(**record["check"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or not one this code wrote
    lm = load_model(base, dtype=dtype, load_in_4bit=in_4bit, adapter_path=adapter)
    check = check_adapter(lm, prompts)
    path.write_text(json.dumps({"asked": asked, "check": asdict(check)}, indent=2) + "\n")
    return check


def write_adapter_index(trained: pd.DataFrame, path: str | Path, source: str = "published") -> Path:
    """adapters.jsonl for 07_medical_eval: an AdapterRecord per adapter (path relative to it)."""
    records = [
        AdapterRecord(
            base_model=r["model"],
            type=r["type"],
            n=int(r["n"]),
            path=r["path"],
            adapter=r["adapter"],
            source=source,
        )
        for r in trained.to_dict("records")
    ]
    return write_adapter_records(records, path)


def respond_grid(
    trained: pd.DataFrame,
    base_models: list[str],
    requests: pd.DataFrame,
    config: RespondConfig,
    cache_path: str | Path,
    step_dir: Path,
) -> pd.DataFrame:
    """Responses of every base model (type 'none', n 0) and every adapter, cached per item."""
    frames = [
        respond(base, requests, config, cache_path).assign(
            base_model=base, type=BEFORE, n=0, adapter=""
        )
        for base in base_models
    ]
    for row in trained.to_dict("records"):
        frame = respond(
            row["model"], requests, config, cache_path, adapter_path=Path(step_dir) / row["path"]
        )
        frames.append(
            frame.assign(
                base_model=row["model"], type=row["type"], n=row["n"], adapter=row["adapter"]
            )
        )
    return pd.concat(frames, ignore_index=True)


def training_table(trained: pd.DataFrame) -> pd.DataFrame:
    """tab_training: per run, loss start/end, eval loss before/after, steps, speed, memory."""
    return trained[["model", "type", "n", *RUN_COLUMNS, "max_abs_logit_diff", "top1_changed"]]


def finetune_metrics(table: pd.DataFrame, trained: pd.DataFrame, refusal: pd.DataFrame) -> dict:
    """Flat metrics: per judge x model x type x n x set the mean score, per model x type x n x
    set the refusal rate (adapters: each with its p-value against the base model); per run the
    eval loss."""
    metrics: dict = {"n_adapters": len(trained)}
    cells = [(r["judge"], "mean", r) for r in table.to_dict("records")]
    cells += [("refusal", "rate", r) for r in refusal.to_dict("records")]
    for head, value, r in cells:
        key = f"{head}/{r['model']}/{r['type']}_n{r['n']}/{r['eval_set']}"
        metrics[f"{key}/{value}"] = r[value]
        if r["type"] != BEFORE:
            metrics[f"{key}/p_value"] = r["p_value"]
    for r in trained.to_dict("records"):
        metrics[f"train/{r['adapter']}/eval_loss_before"] = r["eval_loss_before"]
        metrics[f"train/{r['adapter']}/eval_loss_after"] = r["eval_loss_after"]
    return metrics
