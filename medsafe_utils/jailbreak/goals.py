"""GCG over many goal/target pairs, resumable, and what 02_jailbreak shows and writes about it.

    records = attack_goals(lm, load_adv_ama("tutorial"), GCGConfig(), "attacks.jsonl")
    attack_table(records); attack_metrics(records); gcg_requests(records)

Each finished goal is appended to a JSONL (medsafe_utils.core.store) under a key of goal,
target, model, revision and settings; a rerun skips the finished goals."""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import pandas as pd

from medsafe_utils.core.store import Store, item_key
from medsafe_utils.generate.extract import extract_requests
from medsafe_utils.jailbreak.gcg import GCGConfig, GCGResult, run

METHOD = "gcg"
NOT_SETTINGS = ("progress",)  # config fields that do not change a result
REQUEST_COLUMNS = [
    "id",
    "request",
    "category",
    "method",
    "generator",
    "goal_id",
    "variant",
    "attack_success",
]


def goal_id(variant: str, category: int) -> str:
    """'tutorial-c3': the AMA goal variant and principle (one goal per pair)."""
    return f"{variant}-c{int(category)}"


def settings_of(config: GCGConfig) -> dict:
    """The config fields that determine a result (recorded with it and part of its key)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_SETTINGS}


def attack_record(row, result: GCGResult, model_id: str, settings: dict, seconds: float) -> dict:
    """One goal's attack as a flat JSON record (per-step lists included)."""
    return {
        "goal_id": goal_id(row.variant, row.category),
        "variant": row.variant,
        "category": int(row.category),
        "goal": row.goal,
        "target": row.target,
        "model": model_id,
        "settings": settings,
        **dataclasses.asdict(result),
        "n_steps": result.n_steps,
        "seconds": round(seconds, 2),
    }


def attack_goals(lm, goals: pd.DataFrame, config: GCGConfig, path: str | Path) -> pd.DataFrame:
    """Attack each goal (columns goal, target, category, variant); finished goals are skipped.

    Returns one record per goal, in the order of `goals`."""
    missing = {"goal", "target", "category", "variant"} - set(goals.columns)
    if missing:
        raise ValueError(f"goals lack column(s) {sorted(missing)}")
    settings, rows = settings_of(config), list(goals.itertuples())
    keys = [
        item_key(
            lm.model_id,
            lm.revision,
            METHOD,
            {"goal_id": goal_id(r.variant, r.category), "goal": r.goal, "target": r.target},
            settings,
        )
        for r in rows
    ]
    with Store(path).resume(keys, "GCG goals") as todo:
        for i in todo:
            row = rows[i]
            began = time.perf_counter()
            result = run(lm.model, lm.tokenizer, row.goal, row.target, config)
            todo.save(
                i, attack_record(row, result, lm.model_id, settings, time.perf_counter() - began)
            )
    return pd.DataFrame(todo.values())


def attack_table(records: pd.DataFrame) -> pd.DataFrame:
    """Per goal: success, step of success, initial and final (best) loss, steps, seconds."""
    table = records[
        [
            "goal_id",
            "variant",
            "category",
            "success",
            "success_step",
            "initial_loss",
            "best_loss",
            "n_steps",
            "early_stopped",
            "seconds",
        ]
    ].copy()
    table = table.rename(columns={"best_loss": "final_loss"})
    table["s_per_step"] = records["step_times"].map(statistics.mean)
    table["success_step"] = table["success_step"].astype("Int64")
    return table


def attack_metrics(records: pd.DataFrame) -> dict:
    """Attack success rate, mean steps to success, seconds per step (mean over all steps)."""
    steps = [t for times in records["step_times"] for t in times]
    won = records[records["success"]]
    return {
        "n_goals": len(records),
        "n_success": len(won),
        "attack_success_rate": float(records["success"].mean()),
        "mean_steps_to_success": float(won["success_step"].mean()) if len(won) else None,
        "seconds_per_step": statistics.mean(steps),
        "median_seconds_per_step": statistics.median(steps),
        "mean_final_loss": float(records["best_loss"].mean()),
        "early_stops": int(records["early_stopped"].sum()),
    }


def gcg_requests(records: pd.DataFrame, only_success: bool = False) -> pd.DataFrame:
    """The harmful requests in each attack's kept generation (01's extractor), as 03 reads them.

    The original extracted from every kept generation, successful or not (a refusal yields no
    list items); `only_success` keeps successful attacks only. `attack_success` says which."""
    rows = [
        {
            "id": f"{METHOD}-{record.goal_id}-{i}",
            "request": request,
            "category": int(record.category),
            "method": METHOD,
            "generator": record.model,
            "goal_id": record.goal_id,
            "variant": record.variant,
            "attack_success": bool(record.success),
        }
        for record in records.itertuples()
        if record.success or not only_success
        for i, request in enumerate(extract_requests(record.generation))
    ]
    return pd.DataFrame(rows, columns=REQUEST_COLUMNS)
