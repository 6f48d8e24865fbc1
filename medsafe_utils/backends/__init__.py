"""Generation with a cache: local transformers or any OpenAI-compatible API, one interface.

from medsafe_utils.backends import GenerationConfig, generate, load_backend
backend = load_backend("smollm2-135m-instruct")  # or load_backend("gpt-4o", "openai")
outputs = generate(backend, prompts, GenerationConfig(max_new_tokens=64),
                   cache_path="results/smoke/04_prompt_models/cache.jsonl")
"""

from __future__ import annotations

import time
from pathlib import Path

from medsafe_utils.backends.api import GenerationError, OpenAIBackend, run_sync
from medsafe_utils.backends.config import GenerationConfig
from medsafe_utils.backends.factory import Backend, load_backend
from medsafe_utils.backends.hf import HFBackend
from medsafe_utils.core.store import Store, item_key

__all__ = [
    "Backend",
    "GenerationConfig",
    "GenerationError",
    "HFBackend",
    "OpenAIBackend",
    "generate",
    "generation_key",
    "generation_record",
    "load_backend",
    "run_sync",
]


def generation_key(backend, prompt, settings: dict) -> str:
    """The store key of one generation: model, revision, prompt format, prompt and settings."""
    return item_key(backend.model_id, backend.revision, backend.prompt_format, prompt, settings)


def generation_record(backend, prompt, settings: dict, output: str) -> dict:
    """What the store keeps of one generation (besides its key)."""
    return {
        "model": backend.model_id,
        "revision": backend.revision,
        "format": backend.prompt_format,
        "settings": settings,
        "prompt": prompt,
        "output": output,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def generate(
    backend,
    prompts: list,
    config: GenerationConfig,
    cache_path: str | Path | None = None,
    desc: str = "generate",
) -> list[str]:
    """Outputs for `prompts` in order; finished items come from (and go to) the JSONL store."""
    settings = config.cache_settings()
    keys = [generation_key(backend, p, settings) for p in prompts]
    with Store(cache_path).resume(keys, desc) as todo:

        def on_result(j: int, text: str) -> None:
            i = todo.indices[j]
            todo.save(i, generation_record(backend, prompts[i], settings, text))

        if todo.indices:
            backend.run([prompts[i] for i in todo], config, on_result)
    return todo.values("output")
