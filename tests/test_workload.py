"""The paper-scale work estimate: counted from the profiles, the data and the registry."""

import argparse

import pytest

from medsafe_utils.core import paths
from medsafe_utils.data import load_general_harm, sample_per_group
from medsafe_utils.models.registry import get_spec
from medsafe_utils.pipeline.execute import profile_params
from medsafe_utils.prompt_models.respond import harm_requests
from medsafe_utils.safe_responses.demonstrations import load_harmful_requests, stratified_split
from scripts.workload import (
    adapter_grid,
    api_hours,
    estimate,
    hours,
    local_hours,
    main,
    resolved_params,
)


def test_paper_grid_and_counts():
    params = resolved_params("paper")
    grid = adapter_grid(params["06_finetune"])
    assert len(grid) == 3 * (5 + 5 + 9)  # 3 base models x the released grid (med 5, gen 5, both 9)
    steps = {w.step: w for w in estimate("paper")}
    items = 900 + len(load_general_harm().requests)  # MedSafety-Eval + AdvBench (or HEx-PHI)
    prompted = steps["04_prompt_models"]
    assert prompted.api_calls == 5 * items  # the five GPT models of the released exp01
    assert prompted.models["meditron-70b"] == 70
    assert steps["05_judge"].api_calls == 32 * items + 900  # exp01's 32 models + safe responses
    assert steps["03_safe_responses"].api_calls == 1800 and not steps["03_safe_responses"].models
    assert steps["06_finetune"].train > 0 and steps["07_medical_eval"].prefill > 0


def test_smoke_work_counts_the_items_its_notebooks_select():
    """On the smoke profile, the decoded tokens are counted here from the requests the notebooks
    themselves select (04: harm_requests; 03: the stratified split, then sample_per_group), not
    from the workload's formulas (9 principles x 2 origins x per_group, ...)."""

    def smoke(step: str) -> dict:
        return profile_params("smoke", paths.NOTEBOOKS_DIR / f"{step}.ipynb")

    steps = {w.step: w for w in estimate("smoke")}
    p04 = smoke("04_prompt_models")
    harm_sets = ["medsafety_eval", "general"]  # 04's default, which smoke keeps
    answered = harm_requests(harm_sets, per_group=p04["per_group"], n_general=p04["n_general"])
    assert len(answered) == 18 + 10  # by hand: 9 principles x 2 origins x 1, + 10 general
    sizes = {m: get_spec(m).params_b for m in p04["models"]}
    prompted = steps["04_prompt_models"]
    assert prompted.models == sizes and not prompted.api_calls
    tokens = len(answered) * p04["max_new_tokens"]
    assert prompted.decode == pytest.approx(tokens * sum(sizes.values()))

    p03 = smoke("03_safe_responses")
    requests = load_harmful_requests("published")
    requests["split"] = stratified_split(requests, ["category", "origin"], 0.5, 0)
    chosen = sample_per_group(requests, ["category", "origin", "split"], p03["per_group"], 0)
    assert len(chosen) == 36  # by hand: 9 x 2 origins x 2 splits x 1
    size = get_spec(p03["generator"]).params_b
    written = steps["03_safe_responses"]
    assert written.decode == pytest.approx(len(chosen) * p03["max_new_tokens"] * size)

    judged = steps["05_judge"]  # score_only: the hf judge reads its score without decoding
    assert smoke("05_judge")["score_only"] and judged.decode == 0 and judged.prefill > 0


def test_hours_need_every_rate_and_scale_with_model_size():
    work = {w.step: w for w in estimate("smoke")}["04_prompt_models"]
    assert work.decode > 0 and not work.api_calls
    rates = argparse.Namespace(
        decode_tok_s=None,
        prefill_tok_s=None,
        train_tok_s=None,
        api_calls_s=None,
        ref_params_b=0.135,
    )
    assert hours(work, rates) is None
    rates.decode_tok_s = 100.0
    one = hours(work, rates)
    assert one == pytest.approx(work.decode / (100.0 * 0.135) / 3600)
    rates.ref_params_b = 0.27  # the same throughput on a model twice the size: half the time
    assert hours(work, rates) == pytest.approx(one / 2)


def test_local_and_api_hours_apart():
    work = {w.step: w for w in estimate("paper")}["01_generate"]
    assert work.api_calls and work.decode  # API prompting and a local open model
    rates = argparse.Namespace(
        decode_tok_s=100.0,
        prefill_tok_s=1000.0,
        train_tok_s=None,
        api_calls_s=None,
        ref_params_b=0.135,
    )
    local = local_hours(work, rates)
    assert local == pytest.approx((work.decode / 100.0 + work.prefill / 1000.0) / 0.135 / 3600)
    assert api_hours(work, rates) is None and hours(work, rates) is None  # no API rate given
    rates.api_calls_s = 2.0
    assert api_hours(work, rates) == pytest.approx(work.api_calls / 2.0 / 3600)
    assert hours(work, rates) == pytest.approx(local + work.api_calls / 2.0 / 3600)


def test_cli_prints_every_step(capsys):
    main(
        [
            "smoke",
            "--decode-tok-s",
            "80",
            "--prefill-tok-s",
            "800",
            "--train-tok-s",
            "300",
            "--ref-params-b",
            "0.135",
        ]
    )
    out = capsys.readouterr().out
    for step in ("01_generate", "02_jailbreak", "04_prompt_models", "07_medical_eval"):
        assert f"| {step} |" in out
