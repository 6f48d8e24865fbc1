"""Safety demonstrations (03_safe_responses): safe responses to harmful requests, alpaca records,
a stratified train/test split, the fine-tuning splits, and the published splits' structure.

Split files are written exactly like the released ones (a JSON list of {instruction, output,
input} records, pandas' `to_json(orient="records", indent=4)`) as
results/<profile>/03_safe_responses/splits/ft_safety_{kind}_n{N}.json. 06_finetune loads either
with 06's `demonstration_split` (medsafe_utils.finetune.alpaca):

    from medsafe_utils.finetune.alpaca import demonstration_split
    published = demonstration_split("med", 300)                              # the released file
    fresh = demonstration_split("med", 300, source="fresh", profile="paper")  # written here
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medsafe_utils.backends import Backend, GenerationConfig, generate
from medsafe_utils.core import steps
from medsafe_utils.core.errors import DataError
from medsafe_utils.core.readers import read_jsonl, require_fields
from medsafe_utils.data import load_bianchi_safety, load_medsafetybench, prompt_text
from medsafe_utils.data.refusal import is_refusal
from medsafe_utils.data.safety import ALPACA_FIELDS, read_alpaca, split_sizes
from medsafe_utils.models.prompting import render_chat

ALPACA = ["instruction", "output", "input"]  # the released files' key order
REQUEST_SOURCES = ("published", *steps.DEPENDS["03_safe_responses"])
FIELDS = ALPACA_FIELDS  # an alpaca record, as 06 trains on it


def load_harmful_requests(source: str = "published", profile: str = "paper") -> pd.DataFrame:
    """id, request, category (1-9), origin: 'published' is MedSafetyBench train + test (1,800,
    with its published_split); '01_generate' / '02_jailbreak' read that step's requests.jsonl
    under results/<profile>/ (origin: its 'origin', else its 'method', else the step)."""
    if source == "published":
        msb = load_medsafetybench("all")
        return msb[["id", "request", "category", "origin"]].assign(published_split=msb["split"])
    if source not in REQUEST_SOURCES:
        raise ValueError(f"requests source must be one of {REQUEST_SOURCES}, got {source!r}")
    path = steps.step_file(profile, source, "requests")
    if not path.exists():
        raise DataError(
            path,
            "file not found",
            expected=f"the output of notebooks/{source}.ipynb (profile {profile})",
        )
    rows = read_jsonl(path)
    if not rows:  # e.g. 02_jailbreak when no attack succeeded
        raise DataError(
            path,
            "no requests in the file",
            expected=f"at least one request from notebooks/{source}.ipynb; "
            "re-run it with more steps or goals, or use requests_source "
            "'published'",
        )
    require_fields(path, rows, ["request", "category"], nonempty=["request"])
    for i, row in enumerate(rows, start=1):
        if row["category"] not in range(1, 10):
            raise DataError(
                path, f"category {row['category']!r}", row=i, expected="an AMA principle 1-9"
            )
    frame = pd.DataFrame(rows)
    origin = frame.get("origin", frame.get("method", pd.Series(source, index=frame.index)))
    ids = frame.get("id", pd.Series([f"{source}-{i}" for i in frame.index]))
    return pd.DataFrame(
        {
            "id": ids.astype(str),
            "request": frame["request"].str.strip(),
            "category": frame["category"].astype(int),
            "origin": origin.astype(str),
        }
    )


SYSTEM_PROMPTS = {"llama2_default": "system_prompt_default", "none": None}


@dataclass
class SafeResponseConfig:
    """Safe responses as the original wrote them (exps/exp03_generate_safe_responses.py): the
    Llama-2 default system prompt, greedy (temperature 0), up to 512 new tokens."""

    max_new_tokens: int = 512
    system_prompt: str = "llama2_default"  # llama2_default: prompts/system_prompt_default.txt; none
    batch_size: int = 8
    concurrency: int = 16

    def __post_init__(self) -> None:
        if self.system_prompt not in SYSTEM_PROMPTS:
            raise ValueError(
                f"system_prompt must be one of {list(SYSTEM_PROMPTS)}, got {self.system_prompt!r}"
            )


def safe_response_messages(request: str, system_prompt: str = "llama2_default") -> list[dict]:
    """The system prompt (unless 'none') and prompts/safe_response_template.txt with the request
    as the user's message."""
    user = prompt_text("safe_response_template").format(question=request)
    name = SYSTEM_PROMPTS[system_prompt]
    system = [{"role": "system", "content": prompt_text(name)}] if name else []
    return [*system, {"role": "user", "content": user}]


def safe_response_prompt(generator: Backend, request: str, system_prompt: str = "llama2_default"):
    """The messages (API), or the model's chat template of them (local)."""
    messages = safe_response_messages(request, system_prompt)
    return messages if generator.is_api else render_chat(generator.tokenizer, messages)


def safe_responses(
    generator: Backend,
    requests: pd.DataFrame,
    config: SafeResponseConfig,
    cache_path: str | Path | None = None,
) -> pd.DataFrame:
    """requests + safe_response, refuses (keyword check), flagged (does not refuse), generator."""
    prompts = [
        safe_response_prompt(generator, r, config.system_prompt) for r in requests["request"]
    ]
    texts = generate(
        generator,
        prompts,
        GenerationConfig(
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            concurrency=config.concurrency,
        ),
        cache_path=cache_path,
        desc="safe responses",
    )
    out = requests.copy()
    out["safe_response"] = texts
    out["generator"] = generator.model_id
    out["refuses"] = [is_refusal(t) for t in texts]
    out["flagged"] = ~out["refuses"] | out["safe_response"].str.strip().eq("")
    return out


def to_alpaca(frame: pd.DataFrame) -> pd.DataFrame:
    """Alpaca records (instruction: request, output: safe_response, input='') in the released
    files' key order."""
    return pd.DataFrame(
        {
            "instruction": frame["request"].to_numpy(),
            "output": frame["safe_response"].to_numpy(),
            "input": "",
        }
    )


def stratified_split(
    frame: pd.DataFrame, strata: list[str], test_size: float | int = 0.5, seed: int = 0
) -> pd.Series:
    """'train'/'test' per row: within each stratum a seeded shuffle, the test share rounded
    (largest remainder, so an int `test_size` is met exactly), the rest train."""
    n_test = round(test_size * len(frame)) if isinstance(test_size, float) else test_size
    if not 0 <= n_test <= len(frame):
        raise ValueError(f"test_size {test_size} does not fit {len(frame)} rows")
    sizes = frame.groupby(strata, sort=True).size()
    quota = sizes * n_test / len(frame)
    counts = np.floor(quota).astype(int)
    extra = n_test - counts.sum()
    order = (quota - counts).sort_values(ascending=False, kind="stable").index[:extra]
    counts[order] += 1
    rng = np.random.default_rng(seed)
    labels = pd.Series("train", index=frame.index)
    for key, idx in frame.groupby(strata, sort=True).groups.items():
        chosen = rng.permutation(np.asarray(idx))[: counts[key]]
        labels[chosen] = "test"
    return labels


def stratified_order(frame: pd.DataFrame, strata: list[str], seed: int = 0) -> pd.Index:
    """A seeded order whose prefixes are balanced over strata (counts differ by at most one until
    the smallest stratum runs out): shuffle within each stratum, then take the strata round-robin
    in a seeded order."""
    rng = np.random.default_rng(seed)
    rank = pd.Series(0.0, index=frame.index)
    for _, idx in frame.groupby(strata, sort=True).groups.items():
        shuffled = rng.permutation(np.asarray(idx))
        rank[shuffled] = np.arange(len(shuffled)) + rng.random()  # round, then stratum order
    return rank.sort_values(kind="stable").index


def build_ft_splits(
    med: pd.DataFrame, gen: pd.DataFrame, sizes: list[int], seed: int = 0
) -> dict[tuple[str, int], pd.DataFrame]:
    """{('med', 100): ..., ('gen', 100): ..., ('both', 200): ...}: nested prefixes of seeded orders;
    both n=2k is med n=k and gen n=k interleaved (so 'both' is nested too).

    med: alpaca records + 'category' (ordered by principle round-robin); gen: alpaca records."""
    med = med.loc[stratified_order(med, ["category"], seed)][ALPACA].reset_index(drop=True)
    gen = gen.iloc[np.random.default_rng(seed).permutation(len(gen))][ALPACA].reset_index(drop=True)
    splits = {}
    for n in sizes:
        if n > len(med) or n > len(gen):
            raise ValueError(
                f"split size {n} exceeds the demonstrations available "
                f"(med {len(med)}, gen {len(gen)})"
            )
        splits["med", n], splits["gen", n] = med.iloc[:n], gen.iloc[:n]
        both = pd.concat([med.iloc[:n], gen.iloc[:n]]).sort_index(kind="stable")
        splits["both", 2 * n] = both.reset_index(drop=True)
    return splits


def write_split(records: pd.DataFrame, path: str | Path) -> Path:
    """One split file in the released format (pandas records JSON, indent 4)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(records[ALPACA].to_json(orient="records", indent=4), encoding="utf-8")
    return path


def write_splits(splits: dict[tuple[str, int], pd.DataFrame], split_dir: str | Path) -> list[Path]:
    """Every split of build_ft_splits as a file named like the released ones."""
    return [
        write_split(frame, Path(split_dir) / steps.split_file(kind, n))
        for (kind, n), frame in splits.items()
    ]


def available_splits(split_dir: str | Path) -> dict[str, list[int]]:
    """{'med': [sizes], 'gen': [...], 'both': [...]} of the split files in a folder."""
    return split_sizes(Path(split_dir).glob("*.json"))


def _keys(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(frame["instruction"], frame["output"], strict=True))


def split_structure(
    load,
    sizes: dict[str, list[int]],
    source: str,
    train_test: tuple[set, set] | None = None,
    categories: dict[str, int] | None = None,
) -> pd.DataFrame:
    """What holds of a set of splits: nesting per kind, both n=2k = med k ∪ gen k, gen within
    Bianchi et al., med requests within the train split and none from the test split (the
    published MedSafety-Improve/-Eval, or `train_test` = (train requests, test requests)).

    load(kind, n) -> alpaca records; categories: request -> principle (default: MedSafetyBench's),
    for the balance of the smallest med split; one row per check with holds and a detail."""
    rows = []

    def add(check: str, holds: bool, detail: str) -> None:
        rows.append(_check(source, check, holds, detail))

    sets = {(k, n): _keys(load(k, n)) for k, ns in sizes.items() for n in ns}
    for kind, ns in sizes.items():
        if len(ns) > 1:
            broken = [
                f"n{a}⊄n{b}"
                for a, b in zip(ns, ns[1:], strict=False)
                if not set(sets[kind, a]) <= set(sets[kind, b])
            ]
            prefix = all(
                sets[kind, b][:a] == sets[kind, a] for a, b in zip(ns, ns[1:], strict=False)
            )
            add(
                f"{kind}: nested n{ns[0]} ⊂ … ⊂ n{ns[-1]}",
                not broken,
                ("all nested" + (", each a prefix of the next" if prefix else ", not as prefixes"))
                if not broken
                else ", ".join(broken),
            )
        dup = {n: len(sets[kind, n]) - len(set(sets[kind, n])) for n in ns}
        add(
            f"{kind}: no repeated record in a file",
            not any(dup.values()),
            "none" if not any(dup.values()) else str({n: d for n, d in dup.items() if d}),
        )
    pairs = [
        n
        for n in sizes.get("both", [])
        if n % 2 == 0 and n // 2 in sizes.get("med", []) and n // 2 in sizes.get("gen", [])
    ]
    unequal = [
        n
        for n in pairs
        if set(sets["both", n]) != set(sets["med", n // 2]) | set(sets["gen", n // 2])
    ]
    add(
        "both n=2k equals med n=k ∪ gen k",
        bool(pairs) and not unequal,
        f"checked n={pairs}; unequal: {unequal or 'none'}",
    )
    if sizes.get("both") and sizes.get("med") and sizes.get("gen"):
        med, gen = sets["med", max(sizes["med"])], sets["gen", max(sizes["gen"])]
        halves = [
            n
            for n in sizes["both"]
            if set(sets["both", n]) == set(med[: n // 2]) | set(gen[: n // 2])
        ]
        add(
            "both n = first n/2 of med ∪ first n/2 of gen, every n",
            halves == sizes["both"],
            f"holds for {len(halves)} of {len(sizes['both'])} sizes",
        )
    if sizes.get("med"):
        if categories is None:
            msb = load_medsafetybench("all")
            categories = dict(zip(msb["request"], msb["category"], strict=True))
        n = min(sizes["med"])
        counts = pd.Series([categories.get(r) for r, _ in sets["med", n]]).value_counts()
        counts = counts.reindex(range(1, 10), fill_value=0)
        add(
            f"med n{n}: principles balanced (counts differ by at most 1)",
            counts.max() - counts.min() <= 1,
            f"per principle 1-9: {counts.tolist()}",
        )
    for check in _membership_checks(sets, sizes, train_test):
        add(*check)
    return pd.DataFrame(rows)


def _check(source: str, check: str, holds: bool, detail: str) -> dict:
    """One row of a split-structure table."""
    return {"source": source, "check": check, "holds": bool(holds), "detail": detail}


def _membership_checks(
    sets: dict, sizes: dict[str, list[int]], train_test: tuple[set, set] | None
) -> list[tuple[str, bool, str]]:
    """(check, holds, detail): where the largest gen and med files' records come from."""
    checks = []
    if sizes.get("gen"):
        n = max(sizes["gen"])
        bianchi = set(_keys(load_bianchi_safety()))
        inside = sum(k in bianchi for k in sets["gen", n])
        checks.append(
            (
                f"gen n{n} ⊂ Bianchi et al. (2,483 records)",
                inside == n,
                f"{inside} of {n} records found",
            )
        )
    if not sizes.get("med"):
        return checks
    n = max(sizes["med"])
    if train_test is None:
        msb = load_medsafetybench("all")
        pairs = {
            s: set(zip(g["request"], g["safe_response"], strict=True))
            for s, g in msb.groupby("split")
        }
        splits = {
            "MedSafety-Improve (train)": pairs["train"],
            "MedSafety-Eval (test)": pairs["test"],
        }
    else:
        splits = {
            "this run's train split": {(r, None) for r in train_test[0]},
            "this run's test split": {(r, None) for r in train_test[1]},
        }
    for (name, members), want in zip(splits.items(), (n, 0), strict=True):
        requests = {r for r, _ in members}
        reqs = sum(k[0] in requests for k in sets["med", n])
        same = sum(k in members for k in sets["med", n])
        detail = f"{reqs} of {n} requests" + (
            f", {same} with the same response" if train_test is None else ""
        )
        checks.append((f"med n{n}: {want} of {n} requests from {name}", reqs == want, detail))
    return checks


def load_demonstrations(path: str | Path, n: int | None = None) -> pd.DataFrame:
    """A demonstration split file (a JSON list of {instruction, input, output}), validated."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            path,
            "file not found",
            expected="a split written by 03_safe_responses (run it, or use the published splits)",
        )
    return read_alpaca(path, n)


def fresh_split_structure(
    split_dir: str | Path, requests: pd.DataFrame, source: str
) -> pd.DataFrame:
    """split_structure of the split files in `split_dir`, med checked against the train/test
    split of `requests` (request, category, split), read back as 06_finetune reads them."""
    by_split = {s: set(requests.loc[requests["split"] == s, "request"]) for s in ("train", "test")}
    return split_structure(
        lambda k, n: load_demonstrations(Path(split_dir) / steps.split_file(k, n), n),
        available_splits(split_dir),
        source,
        train_test=(by_split["train"], by_split["test"]),
        categories=dict(zip(requests["request"], requests["category"], strict=True)),
    )


def published_split_balance() -> pd.DataFrame:
    """Whether MedSafety-Improve/-Eval halve every principle x origin stratum (one row)."""
    counts = load_medsafetybench("all").groupby(["category", "origin", "split"]).size().unstack()
    uneven = counts[counts["train"] != counts["test"]]
    detail = (
        f"{len(counts)} strata; test per origin "
        f"{counts['test'].groupby(level='origin').sum().to_dict()}; uneven: "
        f"{uneven.index.tolist() or 'none'}"
    )
    check = "train/test halve every principle x origin stratum (900/900)"
    return pd.DataFrame([_check("published", check, uneven.empty, detail)])


def safe_response_metrics(
    requests: pd.DataFrame, responses: pd.DataFrame, med: pd.DataFrame, written: list
) -> dict:
    """03's flat metrics: requests, safe responses, their refusal rate and flagged count, the
    med demonstrations available to the splits and the split files written."""
    return {
        "requests": len(requests),
        "safe_responses": len(responses),
        "refusal_rate": float(responses["refuses"].mean()),
        "flagged": int(responses["flagged"].sum()),
        "med_available": len(med),
        "split_files": len(written),
    }
