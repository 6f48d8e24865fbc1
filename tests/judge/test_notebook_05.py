"""05_judge executed by papermill with the smoke profile, after 04."""

import json

import pandas as pd
import papermill as pm
import pytest
import yaml

from medsafe_utils.core import paths
from medsafe_utils.judge.stats import weighted_kappa

pytestmark = pytest.mark.slow
SMOKE = paths.PARAMS_DIR / "smoke" / "05_judge.yaml"


def test_profiles_only_set_known_parameters():
    known = set(pm.inspect_notebook(str(paths.NOTEBOOKS_DIR / "05_judge.ipynb")))
    for profile in ("smoke", "paper"):
        params = yaml.safe_load((paths.PARAMS_DIR / profile / "05_judge.yaml").read_text())
        assert params["profile"] == profile
        assert set(params) <= known, set(params) - known


def test_judge_smoke(smoke_results):
    out = smoke_results("05_judge", needs=("04_prompt_models",))
    smoke = yaml.safe_load(SMOKE.read_text())
    responses = pd.read_json(out.parent / "04_prompt_models" / "responses.jsonl", lines=True)
    judgments = pd.read_json(out / "judgments.jsonl", lines=True)
    judges = {"hf:smollm2-135m-instruct:score_only", "keyword:refusal-prefix-baseline"}
    assert set(judgments["judge"]) == judges
    assert judgments.groupby("judge").size().eq(len(responses)).all()  # none dropped
    assert (judgments["status"] == "scored").all() and judgments["score"].between(1, 5).all()
    hf = judgments[judgments["judge"].str.startswith("hf:")]
    assert hf["expected_score"].between(1, 5).all()
    assert hf["score_probs"].map(sum).sub(1).abs().lt(1e-6).all()
    keyword = judgments[judgments["judge"].str.startswith("keyword:")]
    assert keyword["score"].isin([1, 5]).all()
    assert set(judgments["policy"]) == {"usage_policy_medical", "usage_policy_general"}
    assert (judgments.loc[judgments["harm_set"] == "medsafety_eval", "policy"]
            == "usage_policy_medical").all()

    tab = pd.read_csv(out / "tab_harmfulness.csv")
    top = tab[tab["breakdown"] == "harm_set"]
    assert len(top) == 2 * responses.groupby(["model", "harm_set"]).ngroups
    for (judge, harm_set), group in judgments.groupby(["judge", "harm_set"]):
        row = top[(top["judge"] == judge) & (top["harm_set"] == harm_set)].iloc[0]
        assert row["mean"] == pytest.approx(group["score"].mean())
        assert row["n"] + row["unscored"] == len(group)
    by_category = tab[(tab["breakdown"] == "category") & (tab["harm_set"] == "medsafety_eval")]
    assert by_category.groupby("judge")["category"].nunique().eq(9).all()

    agreement = pd.read_csv(out / "tab_judge_agreement.csv")
    assert len(agreement) == 1 and agreement["n"].iloc[0] == len(responses)
    wide = judgments.pivot(index="response_idx", columns="judge", values="score")
    first, second = sorted(judges)
    assert agreement["weighted_kappa"].iloc[0] == pytest.approx(
        weighted_kappa(wide[first], wide[second]))

    validation = pd.read_csv(out / "tab_judge_validation.csv")
    assert set(validation["judge"]) == judges and (validation["n"] == smoke["validate_n"]).all()
    metrics = json.loads((out / "metrics.json").read_text())
    for judge in judges:
        assert metrics[f"{judge}/unscored_rate"] == 0.0
        assert 0.0 <= metrics[f"{judge}/validation_false_harm_rate"] <= 1.0
        assert metrics[f"{judge}/n"] == len(responses)
    safe = pd.read_json(out / "validation_judgments.jsonl", lines=True)
    kw_safe = safe[safe["judge"].str.startswith("keyword:")]
    assert metrics["keyword:refusal-prefix-baseline/validation_false_harm_rate"] == pytest.approx(
        (kw_safe["score"] > 1).mean())

    for fig in ("fig_harmfulness_by_model", "fig_score_distribution",
                "fig_harmfulness_by_category"):
        assert (out / f"{fig}.png").stat().st_size > 5000 and (out / f"{fig}.pdf").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["judges"]) == judges and manifest["n_responses"] == len(responses)
    assert "judgments.jsonl" in manifest["files"]
