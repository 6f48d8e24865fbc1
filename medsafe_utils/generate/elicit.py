"""Elicit harmful medical requests per AMA principle, two ways (01_generate):

- **prompting**: the goal prompts of adv_ama_prompts (`load_adv_ama("prompts")`, and the
  'tutorial' variant) as the user message, sampled `prompting_samples` times;
- **prefill** forcing (how the paper's 74,374 Llama-3-8B-Instruct requests were made,
  exps/adv_attack/generate_prompts.py run over both goal files): the system prompt
  `request_generation_system_prompt.txt`, the principle's goal (from adv_ama_prompts.jsonl and
  adv_ama_tutorial.jsonl) as the user message, and the assistant turn started with "Sure!",
  sampled `prefill_samples` times per principle and goal file with seeds seed, seed+1, ...

`prefill_prompt` says how the prefill prompt is written: "released" is the original's
hand-written Llama-3 string (llama3_prompt.released_llama3_prompt, quirks included, the same text
whatever the model); "chat_template" renders it through each model's own chat template. With
`prefill_generation` "model" (as released: generate_prompts.py calls model.generate with only
max_new_tokens) the model's own generation config decides how to sample; "explicit" samples with
`temperature` and `top_p`. API chat endpoints cannot start the assistant's turn: there the
prefill method is skipped with a warning, unless `api_prefill_tokenizer` is set; then the prompt
(the released string, or the chat template of that tokenizer) goes as text to the server's
/completions endpoint.
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
from medsafe_utils.generate.llama3_prompt import check_prompt_format, released_llama3_prompt
from medsafe_utils.models import load_tokenizer
from medsafe_utils.models.prompting import render_chat

log = logging.getLogger(__name__)
METHODS = ("prompting", "prefill")
VARIANTS = ("prompts", "tutorial")
GENERATION_MODES = ("model", "explicit")


@dataclass
class ElicitConfig:
    """Which principles, methods and variants; how many samples; how to sample. The defaults
    are the released code's where it has one (prefill: both goal files, 500 samples each, 1,500
    new tokens, the hand-written Llama-3 prompt, the model's own generation config)."""

    principles: list[int] = field(default_factory=lambda: list(range(1, 10)))
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    prompt_variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    prompting_samples: int = 5  # samples of each goal prompt (prompting)
    prefill_samples: int = 500  # per principle and goal file (prefill), seeds seed .. seed+K-1
    prefill: str = "Sure!"
    prefill_variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # goal files
    prefill_prompt: str = "released"  # released: the original's Llama-3 string; chat_template
    prefill_generation: str = "model"  # model: the model's generation config; explicit: below
    max_new_tokens: int = 1500
    temperature: float = 0.6  # explicit sampling (Llama-3-8B-Instruct's own values)
    top_p: float = 0.9
    seed: int = 0
    batch_size: int = 8
    concurrency: int = 16
    api_prefill_tokenizer: str = ""  # API only: the served model's tokenizer; enables prefill

    def __post_init__(self) -> None:
        bad = (
            set(self.methods) - set(METHODS)
            or set(self.prompt_variants) - set(VARIANTS)
            or set(self.prefill_variants) - set(VARIANTS)
        )
        if bad or not set(self.principles) <= set(range(1, 10)):
            raise ValueError(
                f"methods {self.methods} (of {METHODS}), variants "
                f"{self.prompt_variants} / {self.prefill_variants} (of {VARIANTS}), principles "
                f"{self.principles} (of 1-9): {sorted(map(str, bad)) or 'principles'}"
            )
        check_prompt_format("prefill_prompt", self.prefill_prompt)
        if self.prefill_generation not in GENERATION_MODES:
            raise ValueError(
                f"prefill_generation must be one of {GENERATION_MODES}, "
                f"got {self.prefill_generation!r}"
            )

    def sampling(self, sample: int, method: str = "prompting") -> GenerationConfig:
        """Seeded sampling for sample number `sample` (seed + sample); the prefill method with
        prefill_generation 'model' leaves temperature and top_p to the model."""
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=True,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed + sample,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            model_defaults=method == "prefill" and self.prefill_generation == "model",
        )


def prefill_messages(goal: str) -> list[dict[str, str]]:
    """System prompt of the original generation script + the goal, as the user message."""
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
            for v in config.prefill_variants:
                for s in range(config.prefill_samples):
                    rows.append(("prefill", v, c, s, prefill_messages(goals[v][c]), config.prefill))
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
    prompt_format: str = "chat_template",
):
    """What the backend receives: text (the released Llama-3 string for a prefilled prompt with
    prompt_format 'released', else the chat template of the local model or of a served model's
    tokenizer for /completions), or the message list for an API chat endpoint."""
    if prefill and generator.is_api and not api_prefill_tokenizer:
        raise ValueError("an API chat endpoint cannot start the assistant's turn")
    if prefill and prompt_format == "released":
        turns = {m["role"]: m["content"] for m in messages}
        return released_llama3_prompt(turns.get("system", ""), turns["user"], prefill)
    if not generator.is_api:
        return render_chat(generator.tokenizer, messages, prefill=prefill)
    if prefill:
        return render_chat(load_tokenizer(api_prefill_tokenizer), messages, prefill=prefill)
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
    sampling: list[GenerationConfig],
    cache_path: str | Path | None,
) -> list[str]:
    """Local sampling in full batches (each row its own cache key) of rows that decode alike;
    each batch is seeded with its first row's seed, so a run from scratch is reproducible."""
    settings = [g.cache_settings() for g in sampling]
    keys = [generation_key(generator, p, s) for p, s in zip(prompts, settings, strict=True)]
    size = sampling[0].batch_size if sampling else 1
    with Store(cache_path).resume(keys, generator.model_id) as todo:
        groups: dict[bool, list[int]] = {}
        for i in todo:
            groups.setdefault(sampling[i].model_defaults, []).append(i)
        for rows in (g[k : k + size] for g in groups.values() for k in range(0, len(g), size)):
            texts = generator.generate_batch([prompts[i] for i in rows], sampling[rows[0]])
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
        render(generator, m, p, config.api_prefill_tokenizer, config.prefill_prompt)
        for m, p in zip(out["messages"], out["prefill"], strict=True)
    ]
    sampling = [config.sampling(int(r.sample), r.method) for r in out.itertuples()]
    if generator.is_api:  # one call per sample and method: the API takes one seed per call
        texts = pd.Series("", index=out.index)
        for (sample, method), idx in out.groupby(["sample", "method"]).groups.items():
            texts[idx] = generate(
                generator,
                out.loc[idx, "prompt"].tolist(),
                config.sampling(int(sample), method),
                cache_path=cache_path,
                desc=f"{generator.model_id} {method} sample {sample}",
            )
        texts = texts.tolist()
    else:
        texts = _sample_local(generator, out["prompt"].tolist(), sampling, cache_path)
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
    keep = ["category", "method", "variant", "generator", "gen_id"]
    rows = [
        {"request": request, **{k: getattr(g, k) for k in keep}}
        for g in generations.itertuples()
        for request in extract_requests(g.generation)
    ]
    return pd.DataFrame(rows, columns=["request", *keep])


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
