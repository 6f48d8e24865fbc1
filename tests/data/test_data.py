"""Data layer: exact counts and schema from the mirror; each bad-input case on corrupted copies."""

import json
import shutil
import subprocess
import sys

import pytest

from medsafe_utils.core import paths
from medsafe_utils.core.errors import DataError
from medsafe_utils.core.readers import read_jsonl
from medsafe_utils.data import (
    available_ft_splits,
    ensure_file,
    load_adv_ama,
    load_bianchi_safety,
    load_ft_split,
    load_general_harm,
    load_llama3_requests,
    load_medical_benchmark,
    load_medsafetybench,
    load_mmlu_medical,
    prompt_text,
    sample_per_group,
)
from medsafe_utils.data.manifest import fetch, load_manifest, manifest_entry
from medsafe_utils.data.safety import _read_msb_csv

MSB_CSV = "medsafetybench/datasets/test/gpt4/med_safety_demonstrations_category_1.csv"


def test_sample_per_group_is_seeded_and_keeps_every_group():
    test = load_medsafetybench("test")
    by = ["category", "origin"]
    chosen = sample_per_group(test, by, 2, seed=3)
    assert len(chosen) == 36 and chosen.groupby(by).size().eq(2).all()
    assert chosen.index.tolist() == sample_per_group(test, by, 2, seed=3).index.tolist()
    assert chosen.index.tolist() != sample_per_group(test, by, 2, seed=4).index.tolist()
    assert sample_per_group(test, "category", 0, seed=3) is test  # 0 keeps every row, in order
    few = sample_per_group(test.head(5), "category", 100, seed=0)  # a group smaller than n: all
    assert sorted(few.index) == sorted(test.head(5).index)


def test_medsafetybench_counts_and_schema():
    test = load_medsafetybench("test")
    train = load_medsafetybench("train")
    assert len(test) == 900 and len(train) == 900
    assert test["origin"].value_counts().to_dict() == {"gpt4": 450, "llama2": 450}
    assert sorted(test["category"].unique()) == list(range(1, 10))
    assert list(test.columns) == ["id", "request", "safe_response", "category", "origin", "split"]
    assert test["id"].is_unique and set(test["split"]) == {"test"}
    assert test["request"].str.strip().str.len().gt(0).all()
    assert len(load_medsafetybench("all")) == 1800


def test_finetuning_splits():
    splits = available_ft_splits()
    assert splits["med"] == list(range(100, 1000, 100))
    assert splits["gen"] == list(range(100, 1000, 100))
    assert splits["both"] == list(range(100, 1900, 100))
    frame = load_ft_split("both", 1800)
    assert len(frame) == 1800 and list(frame.columns) == ["instruction", "input", "output"]


def test_other_safety_sets():
    llama3 = load_llama3_requests()
    assert len(llama3) == 74374 and sorted(llama3["category"].unique()) == list(range(1, 10))
    assert [len(load_adv_ama(v)) for v in ("prompts", "tutorial", "cat6")] == [9, 9, 10]
    assert load_adv_ama("prompts")["category"].tolist() == list(range(1, 10))
    assert len(load_bianchi_safety()) == 2483
    general = load_general_harm()
    assert general.name == "advbench" and len(general.requests) == 520
    assert general.requests["request"].iloc[0].startswith("Write a script that can exploit")


def test_medical_benchmarks():
    sizes = {
        name: len(load_medical_benchmark(name))
        for name in ("medqa", "medmcqa", "pubmedqa", "mmlu_medical")
    }
    assert sizes == {"medqa": 1273, "medmcqa": 4183, "pubmedqa": 500, "mmlu_medical": 1089}
    medmcqa = load_medical_benchmark("medmcqa")
    assert medmcqa["answer"].value_counts().to_dict() == {0: 1348, 1: 1085, 2: 925, 3: 825}
    assert medmcqa["choices"].iloc[0][0] == (
        "Impulse through myelinated fibers is slower than non-myelinated fibers"
    )
    pubmedqa = load_medical_benchmark("pubmedqa")
    assert pubmedqa["answer"].value_counts().to_dict() == {0: 276, 1: 169, 2: 55}
    assert pubmedqa["context"].str.len().gt(100).all()
    mmlu = load_medical_benchmark("mmlu_medical")
    assert mmlu.groupby("subject").size().to_dict() == {
        "anatomy": 135,
        "clinical_knowledge": 265,
        "college_biology": 144,
        "college_medicine": 173,
        "medical_genetics": 100,
        "professional_medicine": 272,
    }
    assert mmlu.iloc[0]["answer"] == 0  # the first anatomy item's 0-based answer
    assert len(load_mmlu_medical("dev")) == 30
    medqa = load_medical_benchmark("medqa")
    first = medqa.iloc[0]
    assert first["choices"][first["answer"]] == (
        "Tell the attending that he cannot fail to disclose this mistake"
    )


def test_prompt_texts_are_verified():
    template = prompt_text("judge_template")
    assert template.startswith('"Below are a model') and "{response}" in template
    entries = load_manifest()["datasets"]["prompts"]["files"]
    assert len(entries) == 18 and all(len(e["sha256"]) == 64 for e in entries)


@pytest.fixture
def private_downloads(tmp_path, monkeypatch):
    """A fresh, empty downloads folder for this test only."""
    monkeypatch.setenv(paths.DOWNLOADS_ENV, str(tmp_path / "downloads"))
    return tmp_path / "downloads"


def test_fetch_from_mirror_verifies_every_file(private_downloads):
    fetched = fetch(["medsafetybench_test", "prompts"])
    assert len(fetched) == 18 + 18
    assert all(p.is_relative_to(private_downloads) and p.stat().st_size > 0 for p in fetched)


def test_truncated_file_fails_checksum(private_downloads):
    path = ensure_file(MSB_CSV)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as err:
        ensure_file(MSB_CSV)
    assert str(path) in str(err.value) and "checksum mismatch" in str(err.value)
    assert f"expected sha256 {manifest_entry(MSB_CSV)['sha256']}" in str(err.value)


def test_missing_file_in_mirror(private_downloads, tmp_path, monkeypatch):
    monkeypatch.setenv(paths.MIRROR_ENV, str(tmp_path / "empty_mirror"))
    (tmp_path / "empty_mirror").mkdir()
    with pytest.raises(DataError, match="missing from the data mirror"):
        ensure_file(MSB_CSV)
    assert not (private_downloads / MSB_CSV).exists()  # nothing half-written is left


@pytest.fixture
def msb_copy(tmp_path, data_mirror):
    copy = tmp_path / "category_1.csv"
    shutil.copyfile(data_mirror / MSB_CSV, copy)
    return copy


def test_missing_column(msb_copy):
    text = msb_copy.read_text().replace("safe_response", "answer", 1)
    msb_copy.write_text(text)
    with pytest.raises(DataError) as err:
        _read_msb_csv(msb_copy, "test", "gpt4", 1)
    assert str(msb_copy) in str(err.value) and "missing column(s) ['safe_response']" in str(
        err.value
    )


def test_empty_request_names_the_row(msb_copy):
    lines = msb_copy.read_text().splitlines(keepends=True)
    lines[3] = '2,"   ","I cannot help with that."\n'
    msb_copy.write_text("".join(lines))
    with pytest.raises(DataError) as err:
        _read_msb_csv(msb_copy, "test", "gpt4", 1)
    assert "row 3" in str(err.value) and "empty 'harmful_medical_request'" in str(err.value)


def test_bad_encoding_names_the_line(msb_copy):
    raw = msb_copy.read_bytes().split(b"\n")
    raw[4] = raw[4] + b"\xff\xfe"
    msb_copy.write_bytes(b"\n".join(raw))
    with pytest.raises(DataError) as err:
        _read_msb_csv(msb_copy, "test", "gpt4", 1)
    assert "not valid UTF-8" in str(err.value) and "row 5" in str(err.value)


def test_invalid_jsonl_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"goal": "a", "target": "b"}\n{"goal": "a", "target"\n')
    with pytest.raises(DataError, match="row 2"):
        read_jsonl(path)


def test_hexphi_is_used_when_supplied(tmp_path, monkeypatch):
    for c in (1, 3):
        (tmp_path / f"category_{c}.csv").write_text(f"harmful prompt {c}a\nharmful prompt {c}b\n")
    monkeypatch.setenv(paths.HEXPHI_ENV, str(tmp_path))
    general = load_general_harm()
    assert general.name == "hex-phi"
    assert general.requests["category"].tolist() == [1, 1, 3, 3]
    assert general.requests["request"].iloc[2] == "harmful prompt 3a"


def test_cli_summary_json():
    out = subprocess.run(
        [sys.executable, "-m", "medsafe_utils.data", "summary", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {r["dataset"]: r for r in json.loads(out.stdout)}
    assert rows["medsafetybench_test"]["rows"] == 900
    assert rows["medsafetybench_llama3"]["rows"] == 74374
    assert all(r["rows"] == r["expected"] for r in rows.values())
