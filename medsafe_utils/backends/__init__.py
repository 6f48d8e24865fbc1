"""Generation with a cache: local transformers or any OpenAI-compatible API, one interface.

from medsafe_utils.backends import GenerationConfig, generate, load_backend
backend = load_backend("smollm2-135m-instruct")  # or load_backend("gpt-4o", "openai")
outputs = generate(backend, prompts, GenerationConfig(max_new_tokens=64),
                   cache_path="results/smoke/04_prompt_models/cache.jsonl")
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from medsafe_utils.backends.api import GenerationError, OpenAIBackend, run_sync
from medsafe_utils.backends.config import GenerationConfig
from medsafe_utils.backends.factory import Backend, load_backend
from medsafe_utils.backends.hf import HFBackend
from medsafe_utils.core.store import GenerationCache, cache_key

__all__ = [
    "Backend",
    "GenerationCache",
    "GenerationConfig",
    "GenerationError",
    "HFBackend",
    "OpenAIBackend",
    "cache_key",
    "generate",
    "load_backend",
    "run_sync",
]


def generate(
    backend,
    prompts: list,
    config: GenerationConfig,
    cache_path: str | Path | None = None,
    desc: str = "generate",
) -> list[str]:
    """Outputs for `prompts` in order; finished items come from (and go to) the JSONL cache."""
    settings = config.cache_settings()
    keys = [
        cache_key(backend.model_id, backend.revision, backend.prompt_format, p, settings)
        for p in prompts
    ]
    cache = GenerationCache(cache_path) if cache_path else None
    done: dict[str, str] = {}
    if cache is not None:
        done = {k: cache.get(k)["output"] for k in set(keys) if k in cache}
    todo_keys = list(dict.fromkeys(k for k in keys if k not in done))  # unique, in order
    first_index = {}
    for i, k in enumerate(keys):
        first_index.setdefault(k, i)
    todo_prompts = [prompts[first_index[k]] for k in todo_keys]
    bar = tqdm(total=len(set(keys)), initial=len(done), desc=desc, unit="item")

    def on_result(i: int, text: str) -> None:
        done[todo_keys[i]] = text
        if cache is not None:
            cache.append(
                [
                    {
                        "key": todo_keys[i],
                        "model": backend.model_id,
                        "revision": backend.revision,
                        "format": backend.prompt_format,
                        "settings": settings,
                        "prompt": todo_prompts[i],
                        "output": text,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    }
                ]
            )
        bar.update(1)

    try:
        if todo_prompts:
            backend.run(todo_prompts, config, on_result)
    finally:
        bar.close()
    return [done[k] for k in keys]
