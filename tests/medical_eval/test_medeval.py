"""Medical evaluation: letters and indices, label mappings, few-shot draws, statistics against
hand computations, lm-eval engine vs a naive loop vs lm-eval's own pipeline, adapters, resume."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from medeval_rows import item_row, prediction_row  # tests/medical_eval/medeval_rows.py

from benchmarks.reference.naive import naive_loglikelihoods
from medsafe_utils.core.errors import DataError
from medsafe_utils.core.stats import mcnemar_exact, paired_t, paired_test, standard_error
from medsafe_utils.data import load_medical_benchmark, load_mmlu_medical
from medsafe_utils.data.manifest import ensure_file
from medsafe_utils.medical_eval.evaluate import (
    MedEvalConfig,
    adapter_differences,
    evaluate_model,
    read_adapter_index,
)
from medsafe_utils.medical_eval.figures import fig_medical_before_after
from medsafe_utils.medical_eval.prompts import (
    build_request,
    build_requests,
    choice_targets,
    fewshot_settings,
    letter,
    letter_index,
    query_text,
    select_shots,
)
from medsafe_utils.medical_eval.report import accuracy_table
from medsafe_utils.medical_eval.scoring import loglikelihoods, make_engine
from medsafe_utils.models.adapters import AdapterNoOpError, AdapterRecord

# ---- letters, indices, label mappings ---------------------------------------------------------


def test_letters_round_trip_and_reject_bad_input():
    assert [letter(i) for i in range(4)] == ["A", "B", "C", "D"]
    assert [letter_index(x) for x in ("A", " b", "C ", "d")] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="choice index 10 outside 0..9"):
        letter(10)
    with pytest.raises(ValueError, match="'AB' is not a choice letter A..J"):
        letter_index("AB")
    with pytest.raises(ValueError, match="'Z' is not a choice letter A..J"):
        letter_index("Z")


def test_query_formats_match_lm_eval_tasks():
    assert query_text(item_row("medqa")) == "Question: Q?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    assert (
        query_text(item_row("medmcqa")) == "Question: Q?\nChoices:\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    )
    mmlu = item_row("mmlu_medical", question=" Q? \n")
    assert query_text(mmlu) == "Q?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    pub = item_row("pubmedqa", context="Some abstract text.", choices=["yes", "no", "maybe"])
    assert query_text(pub) == "Abstract: Some abstract text.\nQuestion: Q?\nAnswer:"
    assert query_text(pub, max_context_chars=4) == "Abstract: Some ...\nQuestion: Q?\nAnswer:"
    with pytest.raises(ValueError, match="unknown benchmark"):
        query_text(item_row("nope"))


def test_pubmedqa_labels_map_to_yes_no_maybe_continuations():
    truth = json.loads(ensure_file("pubmedqa/test_ground_truth.json").read_text())
    items = load_medical_benchmark("pubmedqa")
    assert choice_targets("pubmedqa", 3) == ["yes", "no", "maybe"]
    for label in ("yes", "no", "maybe"):
        pmid = next(p for p, v in truth.items() if v == label)
        item = items[items["id"] == f"pubmedqa-{pmid}"].iloc[0]
        assert item["choices"][item["answer"]] == label
        request = build_request(item, items.iloc[:0], seed=0)
        assert request.continuations == (" yes", " no", " maybe")
        assert request.continuations[request.answer] == f" {label}"
    with pytest.raises(ValueError, match="PubMedQA has 3 labels, got 4 choices"):
        choice_targets("pubmedqa", 4)


def test_mmlu_answers_are_zero_based_and_shots_carry_their_letter():
    dev = load_mmlu_medical("dev")
    first = dev[dev["subject"] == "anatomy"].iloc[0]
    # mmlu/dev/anatomy_dev.csv row 1: "... hyoid bone?", answer column 3 = the 4th choice (D)
    assert first["answer"] == 3
    assert first["choices"][3] == "The second and third pharyngeal arches"
    target = item_row("mmlu_medical", subject="anatomy", id="t-1")
    request = build_request(target, dev[dev["id"] == first["id"]], seed=0)
    assert request.context.startswith(
        "The following are multiple choice questions (with "
        "answers) about anatomy.\n\nWhat is the embryological"
    )
    assert "The second and third pharyngeal arches\nAnswer: D\n\nQ?\nA. a" in request.context
    assert request.continuations[request.answer] == " C"


def test_medqa_answer_letter_matches_raw_file():
    raw = json.loads(ensure_file("medqa/phrases_no_exclude_test.jsonl").open().readline())
    item = load_medical_benchmark("medqa").iloc[0]
    assert letter(item["answer"]) == raw["answer_idx"]
    assert item["choices"][item["answer"]] == raw["answer"]


# ---- few-shot draws ---------------------------------------------------------------------------


def test_shots_exclude_the_item_and_follow_the_seed():
    pool = load_medical_benchmark("medqa").head(30)
    row = pool.iloc[5]
    draws = {seed: list(select_shots(row, pool, 3, seed)["id"]) for seed in range(6)}
    assert all(row["id"] not in ids and len(set(ids)) == 3 for ids in draws.values())
    assert draws[0] == list(select_shots(row, pool, 3, 0)["id"])  # deterministic
    assert len({tuple(d) for d in draws.values()}) > 1  # the seed matters
    with pytest.raises(ValueError, match="30 shots asked"):
        select_shots(row, pool, 30, 0)


def test_mmlu_shots_come_from_the_subjects_dev_set():
    dev = load_mmlu_medical("dev")
    row = item_row("mmlu_medical", subject="college_biology", id="mmlu-college_biology-test-0")
    shots = select_shots(row, dev, 5, seed=1)
    assert set(shots["subject"]) == {"college_biology"} and len(shots) == 5
    assert fewshot_settings([0, 3], [0, 1, 2]) == [(0, 0), (3, 0), (3, 1), (3, 2)]
    assert fewshot_settings([5], [7]) == [(5, 7)]


# ---- statistics against hand computations ------------------------------------------------------


def test_standard_error_by_hand():
    # [1, 0, 1, 1]: mean 0.75, sample sd = sqrt((3 * 0.0625 + 0.5625) / 3) = 0.5, se = 0.5 / 2
    assert standard_error([1, 0, 1, 1]) == pytest.approx(0.25)
    assert math.isnan(standard_error([1]))


def test_mcnemar_exact_by_hand():
    base = [1, 1, 0, 0, 0, 0, 0, 1, 1, 0]
    other = [1, 0, 1, 1, 1, 1, 1, 1, 1, 0]
    b, c, p = mcnemar_exact(base, other)
    assert (b, c) == (5, 1)
    # two-sided exact: 2 * P(X <= 1 | n = 6, 1/2) = 2 * (1 + 6) / 64
    assert p == pytest.approx(14 / 64)
    assert mcnemar_exact([1, 0], [1, 0])[2] == 1.0  # no discordant pairs: p = 1, not NaN
    # b = c = 3: 2 * P(X <= 3 | n = 6) = 2 * 42 / 64 > 1, capped at 1
    assert mcnemar_exact([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0]) == (3, 3, pytest.approx(1.0))
    # b = 0, c = 7: 2 * P(X = 0 | n = 7) = 2 / 128
    assert mcnemar_exact([1] * 7, [0] * 7) == (0, 7, pytest.approx(2 / 128))
    test = paired_test(base, other)
    assert test.test == "mcnemar_exact" and test.delta == pytest.approx(0.4)
    assert (test.n_better, test.n_worse, test.statistic) == (5, 1, 5.0)


def test_paired_t_by_hand():
    base = [0.0, 0.5, 0.5, 1.0]
    other = [1.0, 0.5, 1.0, 0.5]
    # differences 1, 0, 0.5, -0.5: mean 0.25, sd sqrt(1.25 / 3), t = 0.25 / (sd / 2)
    sd = math.sqrt(1.25 / 3)
    t_hand = 0.25 / (sd / 2)
    t, p = paired_t(base, other)
    assert t == pytest.approx(t_hand)
    from scipy.stats import t as t_dist

    assert p == pytest.approx(2 * t_dist.sf(t_hand, df=3))
    test = paired_test(base, other)
    assert test.test == "paired_t" and test.delta_se == pytest.approx(sd / 2)
    assert paired_t([0.5, 1.0], [0.5, 1.0]) == (0.0, 1.0)
    assert paired_test([1, 0, 1], [1, 1, 1], binary=False).test == "paired_t"  # several seeds
    with pytest.raises(ValueError, match="McNemar"):
        paired_test(base, other, binary=True)


ITEMS = pd.DataFrame({"benchmark": "medqa", "choices": [["a", "b", "c", "d"]] * 4})


def _predictions():
    rows = []
    base_correct = {0: [1, 0, 1, 0], 1: [1, 1, 0, 0]}  # seed -> per-item correctness (k=2)
    tuned_correct = {0: [1, 1, 1, 0], 1: [1, 1, 1, 1]}
    for model, adapter, zero, shots in (
        ("m", "", [1, 0, 0, 1], base_correct),
        ("m+a", "a", [1, 1, 1, 1], tuned_correct),
    ):
        runs = [(0, 0, zero)] + [(2, s, c) for s, c in shots.items()]
        for k, seed, correct in runs:
            for i, c in enumerate(correct):
                rows.append(
                    prediction_row(
                        model,
                        adapter,
                        i,
                        c,
                        adapter_type="med" if adapter else "",
                        adapter_n=100 * bool(adapter),
                        num_fewshot=k,
                        seed=seed,
                        loglikelihoods=[-1.0 - c, -2.0],
                        pred=1 - c,
                    )
                )
    return pd.DataFrame(rows)


def test_accuracy_table_by_hand():
    table = accuracy_table(_predictions(), ITEMS).set_index(["model", "num_fewshot"])
    zero_base, zero_tuned = table.loc[("m", 0)], table.loc[("m+a", 0)]
    assert zero_base["accuracy"] == 0.5 and zero_base["se"] == pytest.approx(math.sqrt(1 / 3) / 2)
    assert zero_base["n_unreadable"] == 0 and zero_base["unreadable_rate"] == 0.0
    assert zero_tuned["delta"] == 0.5 and zero_tuned["test"] == "mcnemar_exact"
    assert zero_tuned["p_value"] == pytest.approx(0.5)  # b=2, c=0: 2 * (1/2)^2
    few = table.loc[("m+a", 2)]
    # per-item means over seeds: base [1, .5, .5, 0], tuned [1, 1, 1, .5]
    assert few["base_accuracy"] == 0.5 and few["accuracy"] == 0.875 and few["n_seeds"] == 2
    assert few["test"] == "paired_t" and few["delta"] == pytest.approx(0.375)
    assert table.loc[("m", 2), "seed_sd"] == pytest.approx(0.0)  # both seeds at 0.5


def test_medical_before_after_figure():
    predictions = _predictions()
    fig = fig_medical_before_after(accuracy_table(predictions, ITEMS))
    assert [ax.get_title() for ax in fig.axes] == [
        "m\nloglikelihood: zero-shot",
        "m\nloglikelihood: 2-shot",
    ]
    # per panel: the base model's point, then the adapter's, each with its 95% interval; a
    # dashed chance line at 1/4; hollow where the interval includes chance
    for ax, tuned in zip(fig.axes, (1.0, 0.875), strict=True):
        points = [c.lines[0].get_xydata().tolist()[0][1] for c in ax.containers]
        assert points == [0.5, tuned]
        faces = [c.lines[0].get_markerfacecolor() for c in ax.containers]
        assert faces[0] == "white" and faces[1] != "white"  # 0.5 of 4: chance is inside
        [chance] = [line for line in ax.lines if line.get_gid() == "chance"]
        assert set(chance.get_ydata()) == {0.25}
    fig = fig_medical_before_after(accuracy_table(predictions[predictions["adapter"] == ""], ITEMS))
    assert [len(ax.containers) for ax in fig.axes] == [1, 1]


def test_adapter_differences_per_adapter():
    preds = _predictions()
    [check] = adapter_differences(preds).to_dict("records")
    # 5 of 12 prompts change their prediction, each by 1 in the first choice's log-likelihood
    assert math.isnan(check.pop("output_changed"))  # nothing generated
    assert check == {
        "model": "m+a",
        "protocol": "loglikelihood",
        "n_prompts": 12,
        "ll_max_abs_diff": 1.0,
        "ll_mean_abs_diff": pytest.approx(5 / 24),
        "pred_changed": pytest.approx(5 / 12),
    }
    same = preds.copy()
    tuned = same["adapter"] == "a"
    same.loc[tuned, "loglikelihoods"] = same.loc[~tuned, "loglikelihoods"].to_numpy()
    assert adapter_differences(same).loc[0, "ll_max_abs_diff"] == 0.0


# ---- the adapter index -------------------------------------------------------------------------


def _adapter_row(kind: str, n: int, path: str) -> dict:
    return {
        "base_model": "tiny-random",
        "type": kind,
        "n": n,
        "path": path,
        "adapter": path.split("/")[-1],
        "source": "published",
    }


def test_read_adapter_index(tmp_path, monkeypatch, make_adapter):
    monkeypatch.setenv("MEDSAFE_RESULTS", str(tmp_path))
    assert read_adapter_index("smoke", "all") == []  # no index: base models only
    step = tmp_path / "smoke" / "06_finetune"
    folder = make_adapter(step / "adapters" / "tiny-random__med_n100")
    index = step / "adapters.jsonl"
    index.write_text(json.dumps(_adapter_row("med", 100, "adapters/tiny-random__med_n100")) + "\n")
    [spec] = read_adapter_index("smoke", "all")
    assert (spec.base_model, spec.type, spec.n, spec.adapter) == (
        "tiny-random",
        "med",
        100,
        "tiny-random__med_n100",
    )
    assert spec.path == str(folder.resolve())
    assert read_adapter_index("smoke", "none") == []
    assert read_adapter_index("smoke", "base:tiny-random") == [spec]  # a fan-out's slice
    assert read_adapter_index("smoke", "base:smollm2-135m-instruct") == []
    assert read_adapter_index("smoke", "adapter:tiny-random__med_n100") == [spec]  # by name
    with pytest.raises(ValueError, match="lists no adapter 'tiny__gen_n5'.*tiny-random__med_n100"):
        read_adapter_index("smoke", "adapter:tiny__gen_n5")
    for which in ("some", "base:", "adapter:", "none:x"):
        with pytest.raises(ValueError, match=f"'base:<model>' or 'adapter:<name>', got '{which}'"):
            read_adapter_index("smoke", which)
    index.write_text(
        index.read_text() + json.dumps(_adapter_row("gen", 5, "adapters/missing")) + "\n"
    )
    with pytest.raises(DataError, match="row 2.*missing"):
        read_adapter_index("smoke", "all")
    row = _adapter_row("gen", 5, "x")
    del row["base_model"]
    index.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="adapters.jsonl, row 1.*base_model"):
        read_adapter_index("smoke", "all")


# ---- engine, adapters, resume on the tiny random model ----------------------------------------


def _tiny_items():
    rows = [
        item_row("medqa", id=f"medqa-{i}", question=f"Which dose {i}?", answer=i % 4)
        for i in range(4)
    ]
    rows += [
        item_row(
            "pubmedqa",
            id=f"pubmedqa-{i}",
            question=f"Does it work {i}?",
            context="Methods and results.",
            choices=["yes", "no", "maybe"],
            answer=i % 3,
        )
        for i in range(3)
    ]
    return pd.DataFrame(rows)


def test_lm_eval_engine_matches_a_naive_loop(tiny_lm):
    items = _tiny_items()
    pools = dict(list(items.groupby("benchmark")))
    requests = build_requests(items, [(0, 0), (2, 1)], pools)
    ours = loglikelihoods(make_engine(tiny_lm, batch_size=3), requests)
    naive = naive_loglikelihoods(tiny_lm, requests)
    assert [len(x) for x in ours] == [len(r.continuations) for r in requests]
    np.testing.assert_allclose(np.concatenate(ours), np.concatenate(naive), atol=1e-4)
    assert [int(np.argmax(x)) for x in ours] == [int(np.argmax(x)) for x in naive]


def test_adapter_changes_log_likelihoods_and_zero_adapter_is_caught(tmp_path, make_adapter):
    live = make_adapter(tmp_path / "tiny__med_n8")
    dead = make_adapter(tmp_path / "tiny__gen_n8", live=False)  # B = 0: a no-op
    items = _tiny_items()
    requests = build_requests(items, [(0, 0)])
    config, path = MedEvalConfig(batch_size=4), tmp_path / "predictions.jsonl"
    base = evaluate_model("tiny-random", None, requests, config, path)
    tuned = evaluate_model("tiny-random", _record("med", live), requests, config, path)
    assert tuned["model"].iloc[0] == "tiny-random+tiny__med_n8" and tuned["adapter_n"].eq(8).all()
    checks = adapter_differences(pd.concat([base, tuned], ignore_index=True))
    assert checks.loc[0, "n_prompts"] == len(requests) and checks.loc[0, "ll_max_abs_diff"] > 1e-4
    with pytest.raises(AdapterNoOpError, match="tiny__gen_n8: logits .* identical"):
        evaluate_model("tiny-random", _record("gen", dead), requests, config, path)


def _record(kind, folder) -> AdapterRecord:
    return AdapterRecord("tiny-random", kind, 8, str(folder), folder.name, "published")


def test_predictions_resume_without_rescoring(tmp_path, monkeypatch):
    import medsafe_utils.medical_eval.evaluate as medeval

    items = _tiny_items()
    requests = build_requests(items, [(0, 0)])
    path = tmp_path / "predictions.jsonl"
    config = MedEvalConfig(batch_size=2, save_every=3)
    first = evaluate_model("tiny-random", None, requests[:5], config, path)
    assert len(path.read_text().splitlines()) == 5
    scored = []
    real = medeval.loglikelihoods
    monkeypatch.setattr(
        medeval,
        "loglikelihoods",
        lambda engine, reqs: scored.append(len(reqs)) or real(engine, reqs),
    )
    full = evaluate_model("tiny-random", None, requests, config, path)
    assert scored == [2]  # only the two new prompts were scored
    assert len(path.read_text().splitlines()) == len(requests) == len(full)
    pd.testing.assert_frame_equal(full.head(5), first)
    assert full["correct"].eq((full["pred"] == full["answer"]).astype(int)).all()
    assert full["loglikelihoods"].map(len).tolist() == [4] * 4 + [3] * 3


def test_seeds_with_identical_prompts_keep_their_own_records(tmp_path):
    items = _tiny_items().head(2)  # two MedQA items: each one's only possible shot is the other
    requests = build_requests(items, [(1, 0), (1, 1)], {"medqa": items})
    assert requests[0].context == requests[1].context  # seed 0 and 1 drew the same shot
    preds = evaluate_model("tiny-random", None, requests, MedEvalConfig(), tmp_path / "p.jsonl")
    assert preds[["item_id", "seed"]].values.tolist() == [
        ["medqa-0", 0],
        ["medqa-0", 1],
        ["medqa-1", 0],
        ["medqa-1", 1],
    ]
    assert preds["key"].nunique() == 4


@pytest.mark.slow
def test_same_choices_as_lm_eval_task_pipeline(tmp_path, tiny_lm, monkeypatch):
    from benchmarks.reference.lmeval import lmeval_predictions
    from medsafe_utils.medical_eval.evaluate import eval_items

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    items = eval_items(["medqa", "medmcqa", "pubmedqa", "mmlu_medical"], 3, seed=1)
    items["context"] = items["context"].str[:200]  # keep the tiny model's prompts short
    requests = build_requests(items, [(0, 0)])
    engine = make_engine(tiny_lm, batch_size=4)
    ours = dict(zip([r.item_id for r in requests], loglikelihoods(engine, requests), strict=True))
    theirs = lmeval_predictions(engine, items, tmp_path).set_index("item_id")
    assert sorted(theirs.index) == sorted(ours)
    for item_id, lls in ours.items():
        np.testing.assert_allclose(lls, theirs.loc[item_id, "loglikelihoods"], atol=1e-5)
        assert int(np.argmax(lls)) == theirs.loc[item_id, "pred"]
