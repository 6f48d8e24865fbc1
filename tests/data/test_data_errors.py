"""Every promised data error, on bad files written here: each names its file, the row where there
is one, and what was expected (medical benchmarks, the manifest and fetch, safety sets, HEx-PHI)."""

import json
import re

import pytest

from medsafe_utils.core import paths, steps
from medsafe_utils.core.errors import DataError
from medsafe_utils.data import manifest, medical, safety


def where(path, row=None) -> str:
    """The start of a DataError's message, as a regular expression."""
    return re.escape(str(path) + (f", row {row}" if row is not None else "") + ": ")


@pytest.fixture
def files(tmp_path, monkeypatch):
    """The loaders of medical.py and safety.py read their files from tmp_path (no checksum):
    `files(relpath, text)` writes one and returns its path."""

    def local(relpath, manifest=None):
        return tmp_path / relpath

    monkeypatch.setattr(medical, "ensure_file", local)
    monkeypatch.setattr(safety, "ensure_file", local)

    def write(relpath: str, text: str):
        path = tmp_path / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def jsonl(*rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# ---------------------------------------------------------------- medical benchmarks

MEDQA = "medqa/phrases_no_exclude_test.jsonl"
QA = {"question": "Q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "B"}


@pytest.mark.parametrize(
    ("bad", "row", "message"),
    [
        ({**QA, "answer_idx": "E"}, 2, "answer 'E' out of range (expected 0..3 or A..D)"),
        ({**QA, "answer_idx": "B)"}, 2, "answer 'B)' is not an index or letter"),
        ({**QA, "answer_idx": 7}, 2, "answer 7 out of range"),
        ({**QA, "options": ["a", "b"]}, 2, "'options' is ['a', 'b'] (expected an object"),
        ({"question": "Q?", "answer_idx": "A"}, 2, "missing field(s) ['options']"),
        ({**QA, "question": "  "}, 2, "empty 'question'"),
    ],
)
def test_medqa_bad_row(files, bad, row, message):
    path = files(MEDQA, jsonl(QA, bad, QA))
    with pytest.raises(DataError, match=where(path, row) + re.escape(message)):
        medical.load_medqa()


def test_medqa_invalid_line_and_short_file(files):
    path = files(MEDQA, jsonl(QA) + '{"question": \n')
    with pytest.raises(DataError, match=where(path, 2) + "invalid JSON line"):
        medical.load_medqa()
    path = files(MEDQA, jsonl(QA, QA))
    with pytest.raises(DataError, match=where(path) + re.escape("2 items (expected exactly 1273")):
        medical.load_medqa()


def test_medmcqa_choice_without_its_letter_and_bad_answer(files):
    good = {"question": "Q?", "choices": ["A. x", "B. y", "C. z", "D. w"], "answer": 0}
    path = files("medmcqa/validation.jsonl", jsonl(good, {**good, "choices": ["A. x", "y"]}))
    message = "choice 'y' lacks its letter (expected a choice starting with 'B. ')"
    with pytest.raises(DataError, match=where(path, 2) + re.escape(message)):
        medical.load_medmcqa()
    files("medmcqa/validation.jsonl", jsonl(good, good, {**good, "answer": 4}))
    with pytest.raises(DataError, match=where(path, 3) + re.escape("answer 4 out of range")):
        medical.load_medmcqa()


def test_pubmedqa_errors_name_the_file_and_entry(files):
    item = {"QUESTION": "Q?", "CONTEXTS": ["c"]}
    files("pubmedqa/ori_pqal.json", json.dumps({"1": item, "2": item}))
    truth = files("pubmedqa/test_ground_truth.json", json.dumps({"1": "yes", "3": "no"}))
    with pytest.raises(DataError, match=where(truth, 2) + "PMID 3 not in ori_pqal.json"):
        medical.load_pubmedqa()
    truth.write_text(json.dumps({"1": "yes", "2": "perhaps"}))
    message = "label 'perhaps' (expected ['yes', 'no', 'maybe'])"
    with pytest.raises(DataError, match=where(truth, 2) + re.escape(message)):
        medical.load_pubmedqa()
    items = files("pubmedqa/ori_pqal.json", json.dumps({"1": item, "2": {"QUESTION": "Q?"}}))
    truth.write_text(json.dumps({"1": "yes", "2": "no"}))
    with pytest.raises(DataError, match=where(items) + "PMID 2 lacks its QUESTION or CONTEXTS"):
        medical.load_pubmedqa()
    files("pubmedqa/ori_pqal.json", '{"1": ')
    with pytest.raises(DataError, match=where(items, 1) + "invalid JSON"):
        medical.load_pubmedqa()


def test_mmlu_errors_name_the_subject_file_and_data_row(files):
    header = "question,choice0,choice1,choice2,choice3,answer\n"
    rows = ["Q1,a,b,c,d,A", "Q2,a,b,c,d,F", "Q3,a,b,c,d,B", "Q4,a,b,c,d,C", "Q5,a,b,c,d,D"]
    path = files("mmlu/dev/anatomy_dev.csv", header + "\n".join(rows) + "\n")  # dev: 5 a subject
    with pytest.raises(DataError, match=where(path, 2) + re.escape("answer 'F' out of range")):
        medical.load_mmlu_medical("dev")
    files("mmlu/dev/anatomy_dev.csv", "question,a,b,c,d,answer\n" + "\n".join(rows) + "\n")
    message = "missing column(s) ['choice0', 'choice1', 'choice2', 'choice3']"
    with pytest.raises(DataError, match=where(path) + re.escape(message)):
        medical.load_mmlu_medical("dev")


def test_unknown_benchmark():
    with pytest.raises(ValueError, match=r"benchmark must be one of \['medqa'.*got 'medqa2'"):
        medical.load_medical_benchmark("medqa2")


# ---------------------------------------------------------------- manifest and fetch

ENTRY = {"path": "set/a.txt", "url": None, "sha256": "0" * 64, "size": 3}
MANIFEST = {"version": 1, "datasets": {"set": {"files": [ENTRY]}}}


@pytest.fixture
def downloads(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DOWNLOADS_ENV, str(tmp_path / "downloads"))
    return tmp_path / "downloads"


def test_manifest_entry_and_dataset_must_exist():
    message = "no entry for 'set/b.txt' (expected a path listed in data/manifest.json)"
    with pytest.raises(DataError, match=where(paths.MANIFEST_PATH) + re.escape(message)):
        manifest.manifest_entry("set/b.txt", MANIFEST)
    with pytest.raises(DataError, match=re.escape("unknown dataset(s) ['nope'] (expected one of")):
        manifest.fetch(["nope"], MANIFEST)


def test_corrupt_manifest_names_its_line(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"version": 1,\n "datasets": {\n')
    with pytest.raises(DataError, match=where(path, 3) + "invalid JSON"):
        manifest.load_manifest(path)


def test_mirror_must_be_a_folder_holding_the_file(tmp_path, downloads, monkeypatch):
    monkeypatch.setenv(paths.MIRROR_ENV, str(tmp_path / "no-such-mirror"))
    with pytest.raises(
        DataError, match=where(tmp_path / "no-such-mirror") + f"{paths.MIRROR_ENV} names no folder"
    ):
        manifest.ensure_file("set/a.txt", MANIFEST)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv(paths.MIRROR_ENV, str(mirror))
    message = f"missing from the data mirror (expected the file set/a.txt under {mirror})"
    with pytest.raises(DataError, match=where(mirror / "set/a.txt") + re.escape(message)):
        manifest.ensure_file("set/a.txt", MANIFEST)


def test_mirror_copy_with_other_bytes_fails_its_checksum(tmp_path, downloads, monkeypatch):
    (tmp_path / "mirror" / "set").mkdir(parents=True)
    (tmp_path / "mirror" / "set" / "a.txt").write_text("abc")
    monkeypatch.setenv(paths.MIRROR_ENV, str(tmp_path / "mirror"))
    message = "checksum mismatch: sha256 ba7816bf8f01cfea"  # sha256 of "abc"
    with pytest.raises(DataError, match=where("set/a.txt") + re.escape(message)):
        manifest.ensure_file("set/a.txt", MANIFEST)
    assert not (downloads / "set" / "a.txt").exists()  # nothing unverified is kept


def test_file_without_url_needs_the_mirror(downloads, monkeypatch):
    monkeypatch.delenv(paths.MIRROR_ENV, raising=False)
    message = (
        "has no byte-identical download URL (extracted from the original sources, see the "
        f"manifest's canonical) (expected a data mirror named by {paths.MIRROR_ENV})"
    )
    with pytest.raises(DataError, match=where("set/a.txt") + re.escape(message)):
        manifest.ensure_file("set/a.txt", MANIFEST)


# ---------------------------------------------------------------- safety sets

DEMO = {"instruction": "Do X.", "input": "", "output": "No."}


def test_ft_split_errors(files):
    rel = f"{safety.MSB}/train-splits-used-for-ft/med_safety/{steps.split_file('med', 100)}"
    path = files(rel, json.dumps({"records": [DEMO]}))
    with pytest.raises(DataError, match=where(path) + re.escape("top level is a dict")):
        safety.load_ft_split("med", 100)
    files(rel, json.dumps([DEMO, {"instruction": "Do Y.", "output": "No."}]))
    with pytest.raises(DataError, match=where(path, 1) + re.escape("missing field(s) ['input']")):
        safety.load_ft_split("med", 100)
    files(rel, json.dumps([DEMO, DEMO]))
    message = "2 demonstrations (expected exactly 100 demonstrations)"
    with pytest.raises(DataError, match=where(path) + re.escape(message)):
        safety.load_ft_split("med", 100)


def test_llama3_requests_empty_line(files):
    path = files("medsafetybench/datasets/med_harm_llama3/category_1.txt", "one\ntwo\n\nfour\n")
    message = "empty request (expected one request per line)"
    with pytest.raises(DataError, match=where(path, 3) + re.escape(message)):
        safety.load_llama3_requests()


def test_adv_ama_errors(files):
    path = files(
        "medsafetybench/adv_ama_prompts/adv_ama_tutorial.jsonl",
        jsonl({"goal": "g", "target": "t"}, {"goal": "g"}),
    )
    with pytest.raises(DataError, match=where(path, 2) + re.escape("missing field(s) ['target']")):
        safety.load_adv_ama("tutorial")
    with pytest.raises(ValueError, match=r"variant must be one of \['cat6', .*got 'tutorials'"):
        safety.load_adv_ama("tutorials")


def test_medsafetybench_split_and_count(files):
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test', 'all'\]"):
        safety.load_medsafetybench("dev")
    header = "index,harmful_medical_request,safe_response\n"
    for origin in safety.ORIGINS:
        for c in safety.CATEGORIES:
            files(
                f"{safety.MSB}/test/{origin}/med_safety_demonstrations_category_{c}.csv",
                header + "0,request,I cannot help.\n",
            )
    message = "18 test rows (expected exactly 900 test rows)"
    with pytest.raises(DataError, match=where(f"{safety.MSB}/test") + re.escape(message)):
        safety.load_medsafetybench("test")


# ---------------------------------------------------------------- HEx-PHI


@pytest.fixture
def hexphi(tmp_path, monkeypatch):
    folder = tmp_path / "hex-phi"
    folder.mkdir()
    monkeypatch.setenv(paths.HEXPHI_ENV, str(folder))
    return folder


def test_hexphi_empty_line_names_file_and_row(hexphi):
    (hexphi / "category_1.csv").write_text("a\nb\n")
    (hexphi / "category_2.csv").write_text('first\n""\nthird\n')  # a quoted empty prompt
    message = "empty request (expected one prompt per line)"
    with pytest.raises(DataError, match=where(hexphi / "category_2.csv", 2) + re.escape(message)):
        safety.load_general_harm()


def test_hexphi_bad_encoding_names_file_and_row(hexphi):
    (hexphi / "category_3.csv").write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(DataError, match=where(hexphi / "category_3.csv", 2) + "not valid UTF-8"):
        safety.load_general_harm()


def test_hexphi_needs_its_category_files(hexphi):
    (hexphi / "category_12.csv").write_text("not a HEx-PHI category\n")
    message = "no category_N.csv files (expected HEx-PHI's category_1..11.csv)"
    with pytest.raises(DataError, match=where(hexphi) + re.escape(message)):
        safety.load_general_harm()
    (hexphi / "category_12.csv").unlink()
    message = (
        f"HEx-PHI not found (expected its category_N.csv files there or in ${paths.HEXPHI_ENV}"
    )
    with pytest.raises(DataError, match=where(hexphi) + re.escape(message)):
        safety.load_general_harm(prefer="hex-phi")


def test_advbench_count(files, hexphi):
    path = files("advbench/harmful_behaviors.csv", "goal,target\nDo harm,Sure\n")
    message = "1 behaviours (expected exactly 520 behaviours)"
    with pytest.raises(DataError, match=where(path) + re.escape(message)):
        safety.load_general_harm()
