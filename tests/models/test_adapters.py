"""The one adapter check (the model with its adapter enabled vs disabled on probe prompts), the
training-time LoRA guard, and the adapter records 06 writes and 07 reads."""

import json
from dataclasses import asdict, replace

import pytest
import torch

from medsafe_utils.core.errors import DataError
from medsafe_utils.models import load_model
from medsafe_utils.models.adapters import (
    AdapterNoOpError,
    AdapterRecord,
    check_adapter,
    check_lora_trained,
    next_token_shift,
    read_adapter_records,
    write_adapter_records,
)

PROBES = ["Hello there", "Refuse this, please."]
RECORD = AdapterRecord(
    base_model="tiny-random",
    type="med",
    n=100,
    path="adapters/tiny-random__med_n100",
    adapter="tiny-random__med_n100",
    source="published",
)


def test_check_adapter_measures_a_live_adapter(tmp_path, make_adapter):
    lm = load_model("tiny-random", adapter_path=make_adapter(tmp_path / "live"))
    check = check_adapter(lm, PROBES)
    assert check.model_id == "tiny-random+live" and check.n_prompts == 2
    assert check.n_positions == sum(len(lm.tokenizer(p)["input_ids"]) for p in PROBES)
    # Recomputed against the base model loaded on its own (not through disable_adapter).
    batch = lm.tokenizer(PROBES, return_tensors="pt", padding=True)
    with torch.no_grad():
        tuned = lm.model(**batch).logits
        base = load_model("tiny-random").model(**batch).logits
    mask = batch["attention_mask"].bool()
    diff = (tuned - base).abs()[mask]
    assert check.max_abs_logit_diff == pytest.approx(float(diff.max()), rel=1e-5)
    assert check.mean_abs_logit_diff == pytest.approx(float(diff.mean()), rel=1e-5)
    changed = (tuned.argmax(-1) != base.argmax(-1))[mask].float().mean()
    assert check.top1_changed == pytest.approx(float(changed))
    assert check.max_abs_logit_diff > 1e-3
    long = check_adapter(lm, ["word " * 100], max_tokens=16)  # a long probe is cut
    assert long.n_positions == 16
    check_lora_trained(lm.model)  # random B: passes


def test_next_token_shift_against_each_model_on_its_own(tmp_path, make_adapter, tiny_lm):
    lm = load_model("tiny-random", adapter_path=make_adapter(tmp_path / "live"))
    shift = next_token_shift(lm, PROBES[1], k=3)
    batch = lm.tokenizer([PROBES[1]], return_tensors="pt")
    with torch.no_grad():  # the base loaded on its own, the tuned model as loaded
        base = tiny_lm.model(**batch).logits[0, -1].softmax(-1)
        tuned = lm.model(**batch).logits[0, -1].softmax(-1)
    expected = {*base.topk(3).indices.tolist(), *tuned.topk(3).indices.tolist()}
    assert sorted(shift["token_id"]) == sorted(expected)
    for t in expected:
        row = shift[shift["token_id"] == t].iloc[0]
        assert row["token"] == lm.tokenizer.decode([t])
        assert row["p_without_adapter"] == pytest.approx(float(base[t]), rel=1e-4)
        assert row["p_with_adapter"] == pytest.approx(float(tuned[t]), rel=1e-4)
    assert shift["p_with_adapter"].is_monotonic_decreasing
    assert (shift["p_with_adapter"] != shift["p_without_adapter"]).any()
    with pytest.raises(AdapterNoOpError, match="without its adapter"):
        next_token_shift(tiny_lm, PROBES[1])


def test_adapter_that_changes_nothing_is_the_one_error(tmp_path, make_adapter, tiny_lm):
    dead = load_model("tiny-random", adapter_path=make_adapter(tmp_path / "dead", live=False))
    with pytest.raises(
        AdapterNoOpError,
        match="dead: logits with and without the adapter are identical .* on 2 prompts",
    ):
        check_adapter(dead, PROBES)
    with pytest.raises(
        AdapterNoOpError, match="tiny-random: the model was loaded without its adapter"
    ):
        check_adapter(tiny_lm, PROBES)
    with pytest.raises(AdapterNoOpError, match="every LoRA B matrix at zero"):
        check_lora_trained(dead.model)


def test_adapter_records_round_trip(tmp_path, make_adapter):
    make_adapter(tmp_path / RECORD.path)
    index = write_adapter_records([RECORD], tmp_path / "adapters.jsonl")
    [line] = index.read_text().splitlines()
    assert list(json.loads(line).items()) == list(asdict(RECORD).items())  # names and order
    [back] = read_adapter_records(index)
    assert back == replace(RECORD, path=str((tmp_path / RECORD.path).resolve()))


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda r: r.pop("base_model"), r"missing field\(s\) \['base_model'\]"),
        (lambda r: r.pop("source"), r"missing field\(s\) \['source'\]"),
        (lambda r: r.update(base="tiny-random"), r"unknown field\(s\) \['base'\]"),
        (lambda r: r.update(n="100"), r"'n' is '100' \(expected a positive integer\)"),
        (lambda r: r.update(n=True), r"'n' is True"),
        (lambda r: r.update(type=""), r"'type' is '' \(expected non-empty text\)"),
        (
            lambda r: r.update(path="adapters/missing"),
            r"adapter folder 'adapters/missing' not found",
        ),
    ],
)
def test_bad_adapter_record_names_file_and_row(tmp_path, make_adapter, change, problem):
    make_adapter(tmp_path / RECORD.path)
    bad = asdict(RECORD)
    change(bad)
    index = tmp_path / "adapters.jsonl"
    index.write_text(json.dumps(asdict(RECORD)) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=f"adapters.jsonl, row 2: {problem}") as err:
        read_adapter_records(index)
    assert err.value.path == str(index) and err.value.row == 2
