"""Safe responses, alpaca records, the stratified split, fine-tuning splits and their structure."""

import json

import numpy as np
import pandas as pd
import pytest

from medsafe_utils.backends import HFBackend
from medsafe_utils.core.errors import DataError
from medsafe_utils.data import (
    available_ft_splits,
    ensure_file,
    load_bianchi_safety,
    load_ft_split,
    load_medsafetybench,
)
from medsafe_utils.safe_responses.demonstrations import (
    available_splits,
    build_ft_splits,
    fresh_split_structure,
    load_harmful_requests,
    published_split_balance,
    safe_response_metrics,
    safe_response_prompt,
    safe_responses,
    split_structure,
    stratified_order,
    stratified_split,
    to_alpaca,
    write_split,
    write_splits,
)


@pytest.fixture(scope="module")
def published():
    return load_harmful_requests("published")


def test_published_requests(published):
    assert len(published) == 1800 and published["id"].is_unique
    assert set(published["origin"]) == {"gpt4", "llama2"}
    assert published["published_split"].value_counts().to_dict() == {"train": 900, "test": 900}


def test_split_stratified_900_900_and_seeded(published):
    split = stratified_split(published, ["category", "origin"], 0.5, seed=3)
    assert split.value_counts().to_dict() == {"train": 900, "test": 900}
    counts = published.assign(split=split).groupby(["category", "origin", "split"]).size().unstack()
    assert (counts["train"] == counts["test"]).all()  # every stratum has an even size here
    assert split.equals(stratified_split(published, ["category", "origin"], 0.5, seed=3))
    other = stratified_split(published, ["category", "origin"], 0.5, seed=4)
    assert 0.3 < (other == split).mean() < 0.7  # a different seed is a different split


def test_split_exact_int_size_with_odd_strata():
    frame = pd.DataFrame({"category": [1] * 5 + [2] * 3 + [3] * 1, "origin": "x"})
    split = stratified_split(frame, ["category", "origin"], test_size=4, seed=0)
    assert (split == "test").sum() == 4
    per = split.eq("test").groupby(frame["category"]).sum()
    assert per[1] in (2, 3) and per[2] in (1, 2) and per[3] in (0, 1)
    with pytest.raises(ValueError, match="test_size 20 does not fit 9 rows"):
        stratified_split(frame, ["category"], test_size=20)


def test_stratified_order_prefixes_balanced(published):
    train = published[published["published_split"] == "train"]
    order = stratified_order(train, ["category"], seed=0)
    assert sorted(order) == sorted(train.index)
    for n in (9, 90, 450):
        counts = train.loc[order[:n], "category"].value_counts().reindex(range(1, 10), fill_value=0)
        assert counts.max() - counts.min() <= 1, (n, counts.tolist())


def _med(n=40):
    return pd.DataFrame(
        {
            "instruction": [f"harmful request {i}" for i in range(n)],
            "output": [f"I'm sorry, no {i}" for i in range(n)],
            "input": "",
            "category": [1 + i % 9 for i in range(n)],
        }
    )


def test_build_ft_splits_nested_and_both():
    gen = load_bianchi_safety()
    splits = build_ft_splits(_med(), gen, [9, 18, 27], seed=1)
    assert set(splits) == {
        ("med", 9),
        ("gen", 9),
        ("both", 18),
        ("med", 18),
        ("gen", 18),
        ("both", 36),
        ("med", 27),
        ("gen", 27),
        ("both", 54),
    }
    key = lambda f: list(zip(f["instruction"], f["output"], strict=True))  # noqa: E731
    assert key(splits["med", 18])[:9] == key(splits["med", 9])
    assert key(splits["both", 36])[:18] == key(splits["both", 18])
    assert set(key(splits["both", 36])) == set(key(splits["med", 18])) | set(key(splits["gen", 18]))
    assert splits["med", 9].columns.tolist() == ["instruction", "output", "input"]
    assert sorted(int(s.split()[-1]) % 9 for s in splits["med", 9]["instruction"]) == list(range(9))
    again = build_ft_splits(_med(), gen, [9], seed=1)
    assert again["gen", 9].equals(splits["gen", 9])
    with pytest.raises(ValueError, match="split size 41 exceeds the demonstrations available"):
        build_ft_splits(_med(), gen, [41])


def test_write_split_matches_released_bytes(tmp_path):
    for kind, n in (("med", 100), ("gen", 300), ("both", 1800)):
        released = ensure_file(
            f"medsafetybench/datasets/train-splits-used-for-ft/{kind}_safety/"
            f"ft_safety_{kind}_n{n}.json"
        )
        ours = write_split(load_ft_split(kind, n), tmp_path / released.name)
        assert ours.read_bytes() == released.read_bytes()


def test_published_split_structure():
    table = split_structure(load_ft_split, available_ft_splits(), "published")
    holds = table.set_index("check")["holds"]
    assert holds["med: nested n100 ⊂ … ⊂ n900"] and holds["both: nested n100 ⊂ … ⊂ n1800"]
    assert holds["both n=2k equals med n=k ∪ gen k"]
    assert holds["gen n900 ⊂ Bianchi et al. (2,483 records)"]
    assert not holds["med n100: principles balanced (counts differ by at most 1)"]
    assert published_split_balance()["holds"].item()


def test_fresh_splits_round_trip(tmp_path, published):
    requests = published.assign(split=stratified_split(published, ["category", "origin"], 0.5))
    train = requests[requests["split"] == "train"].groupby("category").head(4)
    med = to_alpaca(train.assign(safe_response="I'm sorry, I cannot help.")).assign(
        category=train["category"].to_numpy()
    )
    written = write_splits(build_ft_splits(med, load_bianchi_safety(), [10, 20]), tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"ft_safety_{k}_n{n}.json"
        for k, ns in (("med", [10, 20]), ("gen", [10, 20]), ("both", [20, 40]))
        for n in ns
    )
    (tmp_path / "notes.json").write_text("{}")  # not a split file: ignored
    assert available_splits(tmp_path) == {"med": [10, 20], "gen": [10, 20], "both": [20, 40]}
    table = fresh_split_structure(tmp_path, requests, "fresh").set_index("check")["holds"]
    assert table.all(), table[~table]
    bad = json.loads((tmp_path / "ft_safety_med_n10.json").read_text())[:9]
    (tmp_path / "ft_safety_med_n10.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"ft_safety_med_n10\.json: 9 demonstrations \(expected"):
        fresh_split_structure(tmp_path, requests, "fresh")


def test_requests_from_a_step(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSAFE_RESULTS", str(tmp_path))
    folder = tmp_path / "smoke" / "01_generate"
    folder.mkdir(parents=True)
    rows = [
        {"request": "Fake a chart.", "category": 3, "method": "prefill"},
        {"request": "Hide an error.", "category": 4, "method": "prompting"},
    ]
    (folder / "requests.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    frame = load_harmful_requests("01_generate", "smoke")
    assert frame["origin"].tolist() == ["prefill", "prompting"]
    assert frame["category"].tolist() == [3, 4] and frame["id"].is_unique
    rows[1]["category"] = 12
    (folder / "requests.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match="row 2"):
        load_harmful_requests("01_generate", "smoke")
    with pytest.raises(DataError, match="02_jailbreak"):
        load_harmful_requests("02_jailbreak", "smoke")
    (folder.parent / "02_jailbreak").mkdir()
    (folder.parent / "02_jailbreak" / "requests.jsonl").write_text("")  # no attack succeeded
    with pytest.raises(DataError, match="no requests"):
        load_harmful_requests("02_jailbreak", "smoke")


def test_safe_responses_flag_non_refusals(tiny_lm, tmp_path):
    generator = HFBackend(tiny_lm)
    requests = load_medsafetybench("test").head(3)
    assert "Question or instruction: " + requests["request"].iloc[0] in safe_response_prompt(
        generator, requests["request"].iloc[0]
    )
    from medsafe_utils.safe_responses.demonstrations import SafeResponseConfig

    out = safe_responses(
        generator, requests, SafeResponseConfig(max_new_tokens=8), tmp_path / "cache.jsonl"
    )
    assert len(out) == 3 and (out["generator"] == "tiny-random").all()
    assert (out["flagged"] == ~out["refuses"] | out["safe_response"].str.strip().eq("")).all()
    records = to_alpaca(out)
    assert records.columns.tolist() == ["instruction", "output", "input"]
    assert records["instruction"].tolist() == requests["request"].tolist()
    assert np.all(records["input"] == "")


def test_safe_response_metrics():
    responses = pd.DataFrame(
        {"refuses": [True, True, False, True], "flagged": [False, False, True, False]}
    )
    metrics = safe_response_metrics(
        pd.DataFrame({"id": range(6)}), responses, responses.head(2), ["a.json", "b.json", "c.json"]
    )
    assert metrics == {
        "requests": 6,
        "safe_responses": 4,
        "refusal_rate": 0.75,
        "flagged": 1,
        "med_available": 2,
        "split_files": 3,
    }
