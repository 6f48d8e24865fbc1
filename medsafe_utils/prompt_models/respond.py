"""Prompt models with harmful requests: the evaluation sets and one call per model.

Used by 04_prompt_models and, with adapters, by 06_finetune."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medsafe_utils.backends import GenerationConfig, generate, load_backend
from medsafe_utils.core.artifacts import read_jsonl
from medsafe_utils.data import load_general_harm, load_medsafetybench, sample_per_group
from medsafe_utils.models import release
from medsafe_utils.models.prompting import chat_messages, render_paper, render_prompt

log = logging.getLogger(__name__)
MEDICAL_SET = "medsafety_eval"
REQUEST_COLUMNS = ["harm_set", "item_id", "origin", "category", "request"]


def harm_requests(
    harm_sets: list[str], per_group: int = 0, n_general: int = 0, seed: int = 0
) -> pd.DataFrame:
    """Requests of MedSafety-Eval ('medsafety_eval') and/or the general-harm set ('general').

    per_group > 0 keeps that many requests per category x origin (a stratified, seeded subset);
    n_general > 0 keeps that many general-harm requests. 0 keeps all."""
    unknown = set(harm_sets) - {MEDICAL_SET, "general"}
    if unknown:
        raise ValueError(f"unknown harm set(s) {sorted(unknown)}: use 'medsafety_eval', 'general'")
    frames = []
    if MEDICAL_SET in harm_sets:
        test = sample_per_group(
            load_medsafetybench("test"), ["category", "origin"], per_group, seed
        )
        frames.append(test.assign(harm_set=MEDICAL_SET, item_id=test["id"]))
    if "general" in harm_sets:
        general = load_general_harm()
        reqs = general.requests
        if n_general:
            reqs = reqs.sample(min(n_general, len(reqs)), random_state=seed)
        frames.append(reqs.assign(harm_set=general.name, item_id=reqs["id"], origin=general.name))
    return pd.concat(frames, ignore_index=True)[REQUEST_COLUMNS].sort_values(
        ["harm_set", "item_id"], kind="stable", ignore_index=True
    )


@dataclass
class RespondConfig:
    """How models are prompted (the paper: greedy, 512 new tokens)."""

    max_new_tokens: int = 512
    batch_size: int = 8
    prompt_format: str | None = None  # None: each model's registry format
    backend: str = "hf"  # hf | openai (every model through one OpenAI-compatible server)
    api_base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    seed: int = 0
    dtype: str = "auto"
    load_in_4bit: bool = False
    device_map: str | None = None

    def generation(self) -> GenerationConfig:
        """The generation settings these imply (greedy)."""
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            seed=self.seed,
        )


def respond(
    model: str,
    requests: pd.DataFrame,
    config: RespondConfig,
    cache_path: str | Path,
    adapter_path: str | Path | None = None,
) -> pd.DataFrame:
    """One response per request from one model (+ adapter), cached per item and resumable."""
    backend = load_backend(
        model,
        config.backend,
        api_base_url=config.api_base_url,
        api_key_env=config.api_key_env,
        prompt_format=config.prompt_format,
        dtype=config.dtype,
        load_in_4bit=config.load_in_4bit,
        device_map=config.device_map,
        adapter_path=adapter_path,
    )
    spec = backend.spec
    if not backend.is_api:
        prompts = [render_prompt(spec, r, backend.tokenizer) for r in requests["request"]]
    elif spec.source != "openai" and spec.format == "paper":
        # A served open model in the paper format: the exact template through /completions.
        prompts = [render_paper(spec, r) for r in requests["request"]]
    else:
        prompts = [chat_messages(r) for r in requests["request"]]
    outputs = generate(
        backend, prompts, config.generation(), cache_path=cache_path, desc=backend.model_id
    )
    frame = requests.copy()
    frame.insert(0, "model", backend.model_id)
    frame["model_revision"] = backend.revision
    frame["group"] = spec.group
    frame["aligned"] = spec.aligned
    frame["prompt_format"] = spec.format
    frame["prompt"] = prompts
    frame["response"] = outputs
    frame["settings"] = [config.generation().cache_settings()] * len(frame)
    if not backend.is_api:
        release(backend.lm)  # before the next model loads
    return frame


def with_earlier_models(responses: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Other models' responses that an earlier run left in `path`, then these: results of
    several runs accumulate (a model that answers again replaces its earlier rows)."""
    path = Path(path)
    if not path.exists():
        return responses
    earlier = read_jsonl(path)
    earlier = earlier[~earlier["model"].isin(set(responses["model"]))]
    if earlier.empty:
        return responses
    log.info("%s: keeping the earlier responses of %s", path.name, sorted(set(earlier["model"])))
    items = ["harm_set", "item_id"]
    if set(map(tuple, earlier[items].values)) != set(map(tuple, responses[items].values)):
        log.warning(
            "the earlier models answered other requests than these: their scores compare "
            "over different items"
        )
    return pd.concat([earlier, responses], ignore_index=True)


def summarize_responses(responses: pd.DataFrame) -> pd.DataFrame:
    """Per model x harm set: items, mean words per response, empty responses."""
    words = responses["response"].str.split().str.len()
    return (
        responses.assign(words=words, empty=words.eq(0))
        .groupby(["model", "harm_set"], as_index=False)
        .agg(n=("request", "size"), mean_words=("words", "mean"), empty=("empty", "sum"))
    )
