"""02_jailbreak executed by papermill with the smoke profile."""

import json

import pandas as pd
import pytest
from support import chain_params

from medsafe_utils.generate.extract import extract_requests

pytestmark = pytest.mark.slow


def test_jailbreak_smoke(smoke_results):
    out = smoke_results("02_jailbreak")
    smoke = chain_params("02_jailbreak")  # as the suite's smoke chain runs it
    attacks = pd.read_json(out / "attacks.jsonl", lines=True)
    assert attacks["goal_id"].tolist() == ["tutorial-c1", "prompts-c1"]  # 1 goal per variant
    assert (attacks["model"] == "smollm2-135m-instruct").all()
    for record in attacks.itertuples():
        assert 1 <= record.n_steps <= smoke["num_steps"]
        assert len(record.losses) == len(record.step_times) == record.n_steps
        assert record.best_losses == sorted(record.best_losses, reverse=True)
        assert record.best_loss == min(record.losses) < record.initial_loss
        assert record.settings["search_width"] == smoke["search_width"]
        assert record.tests and record.tests[-1]["step"] == record.n_steps  # tested at the end
        assert record.generation == record.tests[-1]["generation"] != ""  # the one test kept

    table = pd.read_csv(out / "tab_gcg.csv")
    assert table["goal_id"].tolist() == attacks["goal_id"].tolist()
    assert table["final_loss"].tolist() == pytest.approx(attacks["best_loss"].tolist())
    assert (table["success_step"].notna() == table["success"]).all()
    assert (table["s_per_step"] > 0).all() and (table["seconds"] >= table["s_per_step"]).all()

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_goals"] == 2
    assert metrics["attack_success_rate"] == pytest.approx(table["success"].mean())
    steps = [t for times in attacks["step_times"] for t in times]
    assert metrics["seconds_per_step"] == pytest.approx(sum(steps) / len(steps))
    # Success is the first successful test; its step is averaged over the successful goals.
    for record in attacks.itertuples():
        first = next((t["step"] for t in record.tests if t["success"]), None)
        assert record.success == (first is not None)
        assert pd.isna(record.success_step) if first is None else record.success_step == first
    won = table.loc[table["success"], "success_step"]
    assert metrics["n_success"] == len(won) == attacks["success"].sum()
    assert metrics["mean_steps_to_success"] == (pytest.approx(won.mean()) if len(won) else None)

    # The requests: those extracted from every goal's kept answer (requests_from "all"), in order.
    lines = (out / "requests.jsonl").read_text().splitlines()
    requests = [json.loads(line) for line in lines]
    expected = [
        (f"gcg-{a.goal_id}-{i}", a.goal_id, request, a.success)
        for a in attacks.itertuples()
        for i, request in enumerate(extract_requests(a.generation))
    ]
    assert [
        (r["id"], r["goal_id"], r["request"], r["attack_success"]) for r in requests
    ] == expected
    assert metrics["n_requests"] == len(expected)
    assert all(r["method"] == "gcg" for r in requests)
    assert (out / "fig_gcg_loss.png").stat().st_size > 10_000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["num_steps"] == smoke["num_steps"]
    assert manifest["model"] == "smollm2-135m-instruct"
    assert {"attacks.jsonl", "tab_gcg.csv", "requests.jsonl", "metrics.json"} <= set(
        manifest["files"]
    )
