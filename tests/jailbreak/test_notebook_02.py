"""02_jailbreak executed by papermill with the smoke profile."""

import json

import pandas as pd
import pytest
import yaml

from medsafe_utils.core import paths

pytestmark = pytest.mark.slow


def test_jailbreak_smoke(smoke_results):
    out = smoke_results("02_jailbreak")
    smoke = yaml.safe_load((paths.PARAMS_DIR / "smoke" / "02_jailbreak.yaml").read_text())
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
    if metrics["n_success"]:
        assert metrics["mean_steps_to_success"] == pytest.approx(
            table.loc[table["success"], "success_step"].mean()
        )

    requests = pd.read_json(out / "requests.jsonl", lines=True)
    assert len(requests) == metrics["n_requests"]
    if len(requests):
        assert (requests["method"] == "gcg").all() and requests["id"].is_unique
        assert set(requests["goal_id"]) <= set(attacks["goal_id"])
        for request in requests.itertuples():  # each request comes from its goal's kept answer
            kept = attacks.set_index("goal_id").loc[request.goal_id, "generation"]
            assert request.request.split()[0] in kept
    assert (out / "fig_gcg_loss.png").stat().st_size > 10_000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["num_steps"] == smoke["num_steps"]
    assert manifest["model"] == "smollm2-135m-instruct"
    assert {"attacks.jsonl", "tab_gcg.csv", "requests.jsonl", "metrics.json"} <= set(
        manifest["files"]
    )
