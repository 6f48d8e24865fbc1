"""01_generate and 03_safe_responses executed by papermill with the smoke profile."""

import json

import pandas as pd
import pytest
from support import SMOKE_CHAIN_OVERRIDES, chain_params

from medsafe_utils.data import load_llama3_requests
from medsafe_utils.data.refusal import is_refusal
from medsafe_utils.finetune.alpaca import demonstration_split
from medsafe_utils.generate.dedup import normalize

pytestmark = pytest.mark.slow


def test_generate_smoke(smoke_results):
    out = smoke_results("01_generate")
    smoke = chain_params("01_generate")
    generations = pd.read_json(out / "generations.jsonl", lines=True)
    per_principle = (
        len(smoke["prompt_variants"]) * smoke["prompting_samples"] + smoke["prefill_samples"]
    )
    assert len(generations) == len(smoke["principles"]) * per_principle
    prefill = generations[generations["method"] == "prefill"]
    assert len(prefill) == len(smoke["principles"]) * smoke["prefill_samples"]
    assert prefill["generation"].str.startswith("Sure!").all()
    assert prefill["prompt"].str.endswith("<|im_start|>assistant\nSure!").all()

    rated = pd.read_json(out / "rated.jsonl", lines=True)
    requests = pd.read_json(out / "requests.jsonl", lines=True)
    assert set(requests.columns) >= {
        "request",
        "category",
        "method",
        "generator",
        "gen_id",
        "harm_rating",
    }
    assert requests["harm_rating"].ge(7).all() and set(requests["category"]) <= set(
        smoke["principles"]
    )
    assert not requests["request"].map(normalize).duplicated().any()
    assert set(requests["gen_id"]) <= set(generations["gen_id"])
    funnel = pd.read_csv(out / "tab_generation_funnel.csv")
    total = funnel[funnel["category"] == "all"].iloc[0]
    assert total["generated"] == len(generations) and total["extracted"] == len(rated)
    assert total["kept_by_filter"] == rated["harm_kept"].sum()
    assert total["unscored"] == (~rated["harm_scored"]).sum()
    assert total["after_dedup"] == len(requests) > 0

    stats = pd.read_csv(out / "tab_dataset_stats.csv")
    overall = stats[stats["category"] == "all"].set_index("set")
    assert overall.loc["MedSafetyBench train", "n"] == 900
    assert overall.loc["MedSafetyBench test", "n"] == 900
    llama3 = load_llama3_requests()
    assert overall.loc["Llama-3 requests", "n"] == len(llama3) == 74374
    exact = llama3["request"].map(normalize).duplicated().sum()
    assert overall.loc["Llama-3 requests", "exact_dup"] == exact
    sample = SMOKE_CHAIN_OVERRIDES["01_generate"]["llama3_near_dup_sample"]
    assert overall.loc["Llama-3 requests", "near_n"] == sample
    assert overall.loc["Llama-3 requests", "near_dup_on"].startswith("seeded sample of")
    assert overall.loc["MedSafetyBench test", "near_dup_on"] == "all"
    assert (out / "fig_requests_per_principle.png").stat().st_size > 5000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["principles"] == smoke["principles"]
    assert manifest["requests"] == len(requests)


def test_safe_responses_smoke(smoke_results):
    out = smoke_results("03_safe_responses")
    smoke = chain_params("03_safe_responses")
    demos = pd.read_json(out / "demonstrations.jsonl", lines=True)
    assert len(demos) == 9 * 2 * 2 * smoke["per_group"]
    assert demos.groupby(["category", "origin", "split"]).size().eq(smoke["per_group"]).all()
    assert (demos["refuses"] == demos["output"].map(is_refusal)).all()
    assert (demos["flagged"] == ~demos["refuses"]).all()
    assert (demos["input"] == "").all() and demos["output"].str.len().gt(0).all()

    med_pool = set(demos.loc[demos["split"].eq("train") & demos["refuses"], "instruction"])
    for n in smoke["ft_sizes"]:
        med = demonstration_split("med", n, source="fresh", profile="smoke")
        gen = demonstration_split("gen", n, source="fresh", profile="smoke")
        both = demonstration_split("both", 2 * n, source="fresh", profile="smoke")
        assert set(med["instruction"]) <= med_pool
        assert set(both["instruction"]) == set(med["instruction"]) | set(gen["instruction"])
    table = pd.read_csv(out / "tab_splits.csv")
    published = table[table["source"] == "published"].set_index("check")["holds"]
    assert published["both n=2k equals med n=k ∪ gen k"]
    assert published["gen n900 ⊂ Bianchi et al. (2,483 records)"]
    assert not published["med n100: principles balanced (counts differ by at most 1)"]
    fresh = table[table["source"] == "this run (published)"]
    assert fresh["holds"].all(), fresh[~fresh["holds"]]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["refusal_rate"] == pytest.approx(demos["refuses"].mean())
    assert metrics["split_files"] == 3 * len(smoke["ft_sizes"])
