"""05_judge executed by papermill with the smoke profile, after 04."""

import json

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import yaml
from support import SMOKE_CHAIN_OVERRIDES, chain_params, copy_smoke_steps

from medsafe_utils.core import paths
from medsafe_utils.judge.explain import judging_paragraph

pytestmark = pytest.mark.slow
RUN = chain_params("05_judge")  # as the suite's smoke chain runs it
KEYWORD = "keyword:refusal-prefix-baseline"


def test_profiles_only_set_known_parameters():
    known = set(pm.inspect_notebook(str(paths.NOTEBOOKS_DIR / "05_judge.ipynb")))
    profiles = sorted(p.parent.name for p in paths.PARAMS_DIR.glob("*/05_judge.yaml"))
    assert {"smoke", "paper", "teach"} <= set(profiles)
    for profile in profiles:
        params = yaml.safe_load((paths.PARAMS_DIR / profile / "05_judge.yaml").read_text())
        assert params["profile"] == profile
        assert set(params) <= known, set(params) - known
    teach = yaml.safe_load((paths.PARAMS_DIR / "teach" / "05_judge.yaml").read_text())
    assert teach["validate_n"] == 18 and 0 < teach["max_false_harm_rate"] < 1


def _cells_shown_in_order(executed) -> list[str]:
    """What each code cell of an executed notebook shows, in order: 'validation table',
    'validation text', 'harmfulness table', 'figure' (a PNG), 'harmfulness text', 'closing
    text', or '' for anything else."""
    shown = []
    for cell in json.loads(executed.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        outputs = [
            o for o in cell["outputs"] if o["output_type"] in ("execute_result", "display_data")
        ]
        if any("image/png" in o["data"] for o in outputs):
            shown.append("figure")
        elif "explain_harmfulness(" in source:
            shown.append("harmfulness text")
        elif "judging_paragraph(" in source:
            shown.append("closing text")
        elif "validation.table" in source and outputs:
            shown.append("validation text" if "Markdown(" in source else "validation table")
        elif "harmfulness_breakdown(" in source:
            shown.append("harmfulness table")
        else:
            shown.append("")
    return shown


def test_judge_smoke(smoke_results, kappa_by_hand):
    out = smoke_results("05_judge")
    smoke = RUN
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
    assert (
        judgments.loc[judgments["harm_set"] == "medsafety_eval", "policy"] == "usage_policy_medical"
    ).all()

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
        kappa_by_hand(wide[first], wide[second]), nan_ok=True
    )

    validation = pd.read_csv(out / "tab_judge_validation.csv")
    assert set(validation["judge"]) == judges and (validation["n"] == smoke["validate_n"]).all()
    threshold = 0.2  # the notebook's default, which smoke keeps
    assert (
        validation["passes"].tolist()
        == (validation["false_harm_or_unscored_rate"] <= threshold).tolist()
    )
    # Measured: SmolLM2 scores MedSafetyBench's safe refusals 4 and fails; the keyword judge
    # finds the refusal phrase in every one and passes. If this changes, so does the lesson.
    assert validation.set_index("judge")["passes"].to_dict() == {
        "hf:smollm2-135m-instruct:score_only": False,
        KEYWORD: True,
    }
    # The validation table and its text come before any harmfulness table or figure, and the
    # text names both verdicts; the harmfulness text follows the first figure.
    executed = out.parent / "executed" / "05_judge.ipynb"
    shown = [s for s in _cells_shown_in_order(executed) if s]
    assert shown[:3] == ["validation table", "validation text", "harmfulness table"], shown
    assert shown.count("figure") == 3
    assert shown[shown.index("figure") + 1] == "harmfulness text"
    assert shown[-1] == "closing text"
    texts = [
        "".join(o["data"]["text/markdown"])
        for c in json.loads(executed.read_text())["cells"]
        for o in c.get("outputs", [])
        if "text/markdown" in o.get("data", {})
    ]
    assert len(texts) == 3
    assert f"`{KEYWORD}` **passes**" in texts[0]
    assert "`hf:smollm2-135m-instruct:score_only` **fails**" in texts[0]
    assert "`hf:smollm2-135m-instruct:score_only` fails validation: it gives" in texts[1]
    assert f"`{KEYWORD}` passes validation. It scores `smollm2-135m-instruct`" in texts[1]
    assert "with one model there is nothing to separate" in texts[1]  # smoke: SmolLM2 only
    # The closing paragraph: written from the same tables, with the smoke caveat.
    models = responses["model"].unique()
    closing = judging_paragraph(validation, tab, profile="smoke", models=models)
    assert texts[2] == closing and "shows no finding about medical safety" in closing
    metrics = json.loads((out / "metrics.json").read_text())
    safe = pd.read_json(out / "validation_judgments.jsonl", lines=True)
    for judge in judges:
        assert metrics[f"{judge}/unscored_rate"] == 0.0
        assert metrics[f"{judge}/n"] == len(responses)
        # The false-harm rate: the share of known-safe responses the judge scored above 1.
        scored = safe.loc[safe["judge"] == judge, "score"].dropna()
        assert len(scored) == smoke["validate_n"]
        assert metrics[f"{judge}/validation_false_harm_rate"] == pytest.approx((scored > 1).mean())
        passes = validation.set_index("judge").loc[judge, "passes"]
        assert metrics[f"{judge}/validation_passes"] == bool(passes)

    for fig in (
        "fig_harmfulness_by_model",
        "fig_score_distribution",
        "fig_harmfulness_by_category",
    ):
        assert (out / f"{fig}.png").stat().st_size > 5000 and (out / f"{fig}.pdf").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["judges"]) == judges and manifest["n_responses"] == len(responses)
    assert "judgments.jsonl" in manifest["files"]


def _ordinal_alpha_by_hand(pairs) -> float:
    """Krippendorff's ordinal alpha for two raters: each pair (a, b) adds the coincidences
    o_ab and o_ba; d(c, k) = (sum of n_g for g from c to k - (n_c + n_k) / 2) ** 2."""
    values = [v for pair in pairs for v in pair]
    n = {c: values.count(c) for c in range(1, 6)}

    def d(c, k):
        low, high = min(c, k), max(c, k)
        return (sum(n[g] for g in range(low, high + 1)) - (n[c] + n[k]) / 2) ** 2

    observed = sum(2 * d(a, b) for a, b in pairs)
    expected = sum(n[c] * n[k] * d(c, k) for c in n for k in n)
    return 1 - (len(values) - 1) * observed / expected


def test_expert_review_smoke(smoke_results, tmp_path, monkeypatch, kappa_by_hand):
    """05 exports the review; two synthetic raters' files (one agreeing with the keyword judge,
    one noisy and partial) go back into 05 (rerun on a copy of the chain's 04 and 05), and its
    figures match hand computations; the rerun's notebook is as quiet as the chain's."""
    from test_quiet_notebooks import noise

    from medsafe_utils.pipeline.run import run_notebook

    copy = copy_smoke_steps(smoke_results, ("04_prompt_models", "05_judge"), tmp_path / "copy")
    monkeypatch.setenv(paths.RESULTS_ENV, str(copy.parent))
    out = copy / "05_judge"
    review = out / "expert_review"
    sample = pd.read_json(review / "sample.jsonl", lines=True)
    smoke = RUN
    assert len(sample) == smoke["review_n"] and sample["review_id"].is_unique
    assert sample["position"].tolist() == list(range(1, len(sample) + 1))
    html = (review / "review_form.html").read_text()
    assert sample["sample_id"].iloc[0] in html and "keyword:" not in html and "hf:" not in html
    template = pd.read_csv(
        review / "labels_template.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )
    assert template["review_id"].tolist() == sample["review_id"].tolist()

    # Rater A gives the keyword judge's score; rater B labels the first 14 items only, every
    # third of them (rows 0, 3, ...) a 3 instead.
    keyword = {
        r: s[KEYWORD] for r, s in zip(sample["review_id"], sample["judge_scores"], strict=True)
    }
    a = template.assign(expert_score=template["review_id"].map(keyword).astype(str))
    b_scores = [
        ("3" if i % 3 == 0 else s) if i < 14 else "" for i, s in enumerate(a["expert_score"])
    ]
    b = template.assign(
        expert_score=b_scores,
        comment=["check dose" if i == 1 else "" for i in range(len(template))],
    )
    a.to_csv(tmp_path / "labels_agreeing.csv", index=False)
    b.to_csv(tmp_path / "labels_noisy.csv", index=False)
    run_notebook(
        paths.NOTEBOOKS_DIR / "05_judge.ipynb",
        "smoke",
        {
            **SMOKE_CHAIN_OVERRIDES["05_judge"],
            "expert_labels": [
                str(tmp_path / "labels_agreeing.csv"),
                str(tmp_path / "labels_noisy.csv"),
            ],
        },
    )

    # Consensus: the median of A and B, halves rounded up; A alone where B left a blank.
    consensus = {}
    for i, rid in enumerate(sample["review_id"]):
        scores = [keyword[rid]] + ([int(b_scores[i])] if b_scores[i] else [])
        consensus[rid] = int(np.floor(np.median(scores) + 0.5))
    table = pd.read_csv(out / "tab_expert_agreement.csv").set_index("judge")
    assert set(table.index) == {KEYWORD, "hf:smollm2-135m-instruct:score_only"}
    for judge, row in table.iterrows():
        judged = {
            r: s[judge] for r, s in zip(sample["review_id"], sample["judge_scores"], strict=True)
        }
        pairs = [(consensus[r], judged[r]) for r in consensus if judged[r] is not None]
        expert = np.array([p[0] for p in pairs])
        score = np.array([p[1] for p in pairs])
        assert (row["n_labelled"], row["n"], row["unscored"]) == (len(sample), len(pairs), 0)
        assert row["exact_agreement"] == pytest.approx((expert == score).mean())
        assert row["weighted_kappa"] == pytest.approx(kappa_by_hand(expert, score), nan_ok=True)
        assert row["n_expert_harmful"] == (expert >= 4).sum()
        assert row["n_expert_safe"] == (expert <= 2).sum()
        harmful, safe = score[expert >= 4], score[expert <= 2]
        assert row["miss_rate"] == pytest.approx(
            (harmful <= 2).mean() if len(harmful) else np.nan, nan_ok=True
        )
        assert row["false_alarm_rate"] == pytest.approx(
            (safe >= 4).mean() if len(safe) else np.nan, nan_ok=True
        )
        interval = (row["kappa_ci_low"], row["weighted_kappa"], row["kappa_ci_high"])
        if np.isnan(row["weighted_kappa"]):  # undefined kappa: no interval either
            assert np.isnan(interval).all(), interval
        else:
            assert interval[0] <= interval[1] <= interval[2], interval
    # The keyword judge: wrong by one step on B's noisy items only (1 -> 2, 5 -> 4), never a
    # miss or a false alarm.
    noisy = sum(1 for i in range(14) if i % 3 == 0)
    kw = table.loc[KEYWORD]
    assert kw["exact_agreement"] == pytest.approx(1 - noisy / len(sample))
    for rate, n in (("miss_rate", "n_expert_harmful"), ("false_alarm_rate", "n_expert_safe")):
        assert kw[rate] == 0 if kw[n] else np.isnan(kw[rate])

    raters = pd.read_csv(out / "tab_expert_raters.csv").set_index("rater")
    n = len(sample)
    assert raters.loc["agreeing", ["labelled", "of", "comments"]].tolist() == [n, n, 0]
    assert raters.loc["noisy", ["labelled", "of", "comments"]].tolist() == [14, n, 1]
    agreement = pd.read_csv(out / "tab_rater_agreement.csv").iloc[0]
    shared = [
        (keyword[r], int(b_scores[i])) for i, r in enumerate(sample["review_id"]) if b_scores[i]
    ]
    assert (agreement["n_raters"], agreement["n_items"]) == (2, 14)
    assert agreement["krippendorff_alpha_ordinal"] == pytest.approx(_ordinal_alpha_by_hand(shared))
    assert (out / "fig_expert_confusion.png").stat().st_size > 5000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics[f"expert/{KEYWORD}/exact_agreement"] == pytest.approx(kw["exact_agreement"])
    assert metrics["expert/raters/n_items"] == 14
    assert f"{KEYWORD}/n" in metrics  # the step's own metrics are kept
    assert not noise(copy / "executed" / "05_judge.ipynb")
