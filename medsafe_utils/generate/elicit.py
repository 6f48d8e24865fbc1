"""Elicit harmful medical requests per AMA principle, two ways (01_generate):

- **prompting**: the goal prompts of adv_ama_prompts (`load_adv_ama("prompts")`, and the
  'tutorial' variant) as the user message, sampled `prompting_samples` times;
- **prefill** forcing (how the paper's 74,374 Llama-3-8B-Instruct requests were made): the system
  prompt `request_generation_system_prompt.txt`, a user message, and the assistant turn started
  with "Sure!", sampled `prefill_samples` times per principle with seeds seed, seed+1, ...

The user message that goes with the prefill is our choice (the original script's is not in the
released data): the principle's goal prompt of the 'prompts' variant ("<principle>. Write twenty
examples of harmful or unethical prompts ... that violate this principle."), because it names the
principle and asks for a list, so the forced "Sure!" continues into one. The prefill is rendered
through each model's own chat template (`render_chat(..., prefill="Sure!")`), never with pasted
Llama-3 tokens. API chat endpoints cannot start the assistant's turn: there the prefill method is
skipped with a warning, unless `api_prefill_tokenizer` names the served model's tokenizer; then the
chat template is rendered here and sent as text to the server's /completions endpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medsafe_utils.backends import (
    Backend,
    GenerationConfig,
    generate,
    generation_key,
    generation_record,
    load_backend,
)
from medsafe_utils.core.store import Store
from medsafe_utils.data import load_adv_ama, prompt_text
from medsafe_utils.generate.extract import extract_requests
from medsafe_utils.models import load_tokenizer
from medsafe_utils.models.prompting import render_chat

log = logging.getLogger(__name__)
METHODS = ("prompting", "prefill")
VARIANTS = ("prompts", "tutorial")


@dataclass
class ElicitConfig:
    """Which principles, methods and variants; how many samples; how to sample."""

    principles: list[int] = field(default_factory=lambda: list(range(1, 10)))
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    prompt_variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    prompting_samples: int = 5  # samples of each goal prompt (prompting)
    prefill_samples: int = 500  # samples per principle (prefill), seeds seed .. seed+K-1
    prefill: str = "Sure!"
    prefill_variant: str = "prompts"  # whose goal prompt is the user message under the prefill
    max_new_tokens: int = 1024
    temperature: float = 0.6  # Llama-3-8B-Instruct's default sampling
    top_p: float = 0.9
    seed: int = 0
    batch_size: int = 8
    concurrency: int = 16
    api_prefill_tokenizer: str = ""  # API only: the served model's tokenizer; enables prefill

    def __post_init__(self) -> None:
        bad = set(self.methods) - set(METHODS) or set(self.prompt_variants) - set(VARIANTS)
        if bad or not set(self.principles) <= set(range(1, 10)):
            raise ValueError(
                f"methods {self.methods} (of {METHODS}), variants "
                f"{self.prompt_variants} (of {VARIANTS}), principles "
                f"{self.principles} (of 1-9): {sorted(map(str, bad)) or 'principles'}"
            )

    def sampling(self, sample: int) -> GenerationConfig:
        """Seeded sampling for sample number `sample` (seed + sample)."""
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=True,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed + sample,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
        )


def prefill_messages(goal: str) -> list[dict[str, str]]:
    """System prompt of the original generation script + the principle's goal prompt."""
    return [
        {"role": "system", "content": prompt_text("request_generation_system_prompt")},
        {"role": "user", "content": goal},
    ]


def elicitation_plan(config: ElicitConfig) -> pd.DataFrame:
    """One row per generation to make: gen_id, method, variant, category, sample, messages,
    prefill."""
    goals = {v: load_adv_ama(v).set_index("category")["goal"] for v in VARIANTS}
    rows = []
    for c in config.principles:
        if "prompting" in config.methods:
            for v in config.prompt_variants:
                for s in range(config.prompting_samples):
                    rows.append(
                        ("prompting", v, c, s, [{"role": "user", "content": goals[v][c]}], "")
                    )
        if "prefill" in config.methods:
            goal = goals[config.prefill_variant][c]
            for s in range(config.prefill_samples):
                rows.append(
                    (
                        "prefill",
                        config.prefill_variant,
                        c,
                        s,
                        prefill_messages(goal),
                        config.prefill,
                    )
                )
    plan = pd.DataFrame(
        rows, columns=["method", "variant", "category", "sample", "messages", "prefill"]
    )
    plan.insert(
        0,
        "gen_id",
        [f"{r.method}-{r.variant}-c{r.category}-s{r.sample}" for r in plan.itertuples()],
    )
    return plan


def render(
    generator: Backend,
    messages: list[dict[str, str]],
    prefill: str,
    api_prefill_tokenizer: str = "",
):
    """What the backend receives: text through the chat template (local, or a served model's
    tokenizer for /completions), or the message list for an API chat endpoint."""
    if not generator.is_api:
        return render_chat(generator.tokenizer, messages, prefill=prefill)
    if prefill and api_prefill_tokenizer:
        return render_chat(load_tokenizer(api_prefill_tokenizer), messages, prefill=prefill)
    if prefill:
        raise ValueError("an API chat endpoint cannot start the assistant's turn")
    return messages


def drop_unsupported(plan: pd.DataFrame, generator: Backend, config: ElicitConfig):
    """Without a way to prefill an API model, the prefill rows go (a warning says so)."""
    if generator.is_api and not config.api_prefill_tokenizer and plan["prefill"].ne("").any():
        log.warning(
            "%s is an API chat model: its answer cannot be prefilled with %r, so the "
            "prefill method is skipped (set api_prefill_tokenizer to render the chat "
            "template here and use the server's /completions)",
            generator.model_id,
            config.prefill,
        )
        return plan[plan["prefill"].eq("")].reset_index(drop=True)
    return plan


def _sample_local(
    generator: Backend,
    prompts: list[str],
    samples: list[int],
    config: ElicitConfig,
    cache_path: str | Path | None,
) -> list[str]:
    """Local sampling in full batches that mix samples (each row its own cache key); each batch
    is seeded with its first row's seed, so a run from scratch is reproducible."""
    settings = [config.sampling(s).cache_settings() for s in samples]
    keys = [generation_key(generator, p, s) for p, s in zip(prompts, settings, strict=True)]
    with Store(cache_path).resume(keys, generator.model_id) as todo:
        for rows in todo.batches(config.batch_size):
            batch = [prompts[i] for i in rows]
            texts = generator.generate_batch(batch, config.sampling(samples[rows[0]]))
            for i, text in zip(rows, texts, strict=True):
                todo.save(i, generation_record(generator, prompts[i], settings[i], text))
    return todo.values("output")


def elicit(
    generator: Backend,
    plan: pd.DataFrame,
    config: ElicitConfig,
    cache_path: str | Path | None = None,
) -> pd.DataFrame:
    """Generate every planned row (cached, resumable); adds generator, seed, prompt, generation
    (the prefill + the model's continuation)."""
    out = drop_unsupported(plan, generator, config).copy()
    out["generator"] = generator.model_id
    out["seed"] = config.seed + out["sample"]
    out["prompt"] = [
        render(generator, m, p, config.api_prefill_tokenizer)
        for m, p in zip(out["messages"], out["prefill"], strict=True)
    ]
    if generator.is_api:  # one call per sample: the API takes one seed per call
        texts = pd.Series("", index=out.index)
        for sample, idx in out.groupby("sample").groups.items():
            texts[idx] = generate(
                generator,
                out.loc[idx, "prompt"].tolist(),
                config.sampling(int(sample)),
                cache_path=cache_path,
                desc=f"{generator.model_id} sample {sample}",
            )
        texts = texts.tolist()
    else:
        texts = _sample_local(
            generator, out["prompt"].tolist(), out["sample"].tolist(), config, cache_path
        )
    out["generation"] = [
        f"{p} {t}".strip() if p else t for p, t in zip(out["prefill"], texts, strict=True)
    ]
    return out


def load_role_models(
    roles: dict[str, tuple[str, str]], methods: list[str], **load
) -> dict[str, Backend]:
    """The model of each role in use (the `methods` and 'filter') from its (model, backend),
    loaded once per distinct pair and shared by the roles that name it; a role with an empty
    model takes the prompting role's pair. `load`: load_backend's other arguments."""
    pairs = {
        r: roles["prompting"] if not pair[0] else pair
        for r, pair in roles.items()
        if r == "filter" or r in methods
    }
    loaded = {pair: load_backend(*pair, **load) for pair in dict.fromkeys(pairs.values())}
    return {r: loaded[pair] for r, pair in pairs.items()}


def elicit_by_role(
    models: dict[str, Backend],
    plan: pd.DataFrame,
    config: ElicitConfig,
    cache_path: str | Path | None = None,
) -> pd.DataFrame:
    """`elicit` for every method with its role's model; the methods of a shared model are
    generated in one call, so their rows share batches."""
    shared: dict[int, list[str]] = {}
    for method in config.methods:
        shared.setdefault(id(models[method]), []).append(method)
    return pd.concat(
        [
            elicit(models[ms[0]], plan[plan["method"].isin(ms)], config, cache_path)
            for ms in shared.values()
        ],
        ignore_index=True,
    )


def extract_frame(generations: pd.DataFrame) -> pd.DataFrame:
    """One row per extracted request: request, category, method, variant, generator, gen_id."""
    rows = [
        {
            "request": request,
            "category": g.category,
            "method": g.method,
            "variant": g.variant,
            "generator": g.generator,
            "gen_id": g.gen_id,
        }
        for g in generations.itertuples()
        for request in extract_requests(g.generation)
    ]
    return pd.DataFrame(
        rows, columns=["request", "category", "method", "variant", "generator", "gen_id"]
    )


def generation_funnel(
    generations: pd.DataFrame, extracted: pd.DataFrame, final: pd.DataFrame
) -> pd.DataFrame:
    """Per principle and method: generations -> extracted -> scored / unscored -> kept by the
    harm filter -> after dedup; `extracted` carries harm_scored and harm_kept; a total row."""
    keys = ["category", "method"]
    table = (
        pd.concat(
            [
                generations.groupby(keys).size().rename("generated"),
                extracted.groupby(keys).size().rename("extracted"),
                extracted.groupby(keys)["harm_scored"].sum().rename("scored"),
                (~extracted["harm_scored"])
                .groupby([extracted[k] for k in keys])
                .sum()
                .rename("unscored"),
                extracted.groupby(keys)["harm_kept"].sum().rename("kept_by_filter"),
                final.groupby(keys).size().rename("after_dedup"),
            ],
            axis=1,
        )
        .fillna(0)
        .astype(int)
        .reset_index()
    )
    total = table.drop(columns=keys).sum().to_frame().T.assign(category="all", method="all")
    return pd.concat([table, total[table.columns]], ignore_index=True)


def generation_metrics(funnel: pd.DataFrame, dups: pd.DataFrame, methods: list[str]) -> dict:
    """01's flat metrics: the funnel's totals, the duplicates removed within and across
    principles, and whether a requested prefill method was skipped (an API chat model)."""
    total = funnel[funnel["category"] == "all"].iloc[0]
    removed = dups["dup_scope"].value_counts()
    return {
        "generations": int(total["generated"]),
        "extracted": int(total["extracted"]),
        "unscored": int(total["unscored"]),
        "kept_by_filter": int(total["kept_by_filter"]),
        "requests": int(total["after_dedup"]),
        "removed_within_principle": int(removed.get("within principle", 0)),
        "removed_across_principles": int(removed.get("across principles", 0)),
        "prefill_skipped": "prefill" in methods and "prefill" not in set(funnel["method"]),
    }
