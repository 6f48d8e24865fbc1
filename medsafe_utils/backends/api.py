"""Any OpenAI-compatible endpoint (OpenAI, vLLM, TGI, llama.cpp) through the openai v1 SDK:
async with bounded concurrency, retries with exponential backoff and jitter on 429/5xx/timeouts.
The API key is read from the environment only and never recorded; a base URL that carries one
(user:password@, ?api_key=) is refused."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

import httpx
import openai

from medsafe_utils.backends.config import GenerationConfig
from medsafe_utils.core.redact import check_url
from medsafe_utils.models.registry import ModelSpec

log = logging.getLogger(__name__)


class GenerationError(RuntimeError):
    """A request that still failed after the last retry."""


def run_sync(coro):
    """Run a coroutine to completion, also from inside a running loop (Jupyter, papermill)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _retryable(err: Exception) -> bool:
    """429, any 5xx, timeouts and dropped connections (APITimeoutError is an APIConnectionError)."""
    if isinstance(err, (openai.RateLimitError, openai.APIConnectionError)):
        return True
    return isinstance(err, openai.APIStatusError) and err.status_code >= 500


@dataclass(eq=False)
class OpenAIBackend:
    """Chat (messages) or completion (text) requests to one model at one endpoint."""

    is_api = True
    tokenizer = None  # prompts are rendered by the server (chat) or by the caller (completions)

    model: str
    _: KW_ONLY
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # the variable's name, never its value, is kept
    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    timeout: float = 120.0
    model_id: str | None = None  # default: `model`
    prompt_format: str = "paper"  # recorded in cache keys
    spec: ModelSpec | None = None  # the registry entry, when the model was named by one
    # Non-empty: a rejected request (HTTP 400, e.g. a content filter) is answered with this
    # prefix + the error instead of stopping the run (a judge counts it unscored).
    rejected_prefix: str = ""
    # A LoRA adapter (its folder) that the server loads at run time under the name `model`
    # (vLLM: POST /v1/load_lora_adapter), before the first request: a run that finds every
    # item cached, as a fan-out's final run does, never needs the server.
    lora_path: str | None = None
    retries: int = field(default=0, init=False)  # retried requests, for reports
    _lora_loaded: bool = field(default=False, init=False, repr=False)

    def __post_init__(self):
        check_url(self.base_url, f"{self.model}: base_url")  # revision and caches record it
        self.model_id = self.model_id or self.model
        self.revision = f"api:{self.base_url or 'https://api.openai.com/v1'}"
        if self.lora_path:  # cache keys hold the revision: the served name has the fingerprint
            self.revision += f"+lora:{self.model}"

    def generation_defaults(self) -> dict:
        """How the endpoint decodes when a request names no temperature (model_defaults)."""
        return {"decoding": f"the defaults of {self.revision.removeprefix('api:')}"}

    def _client(self) -> openai.AsyncOpenAI:
        key = os.environ.get(self.api_key_env)
        if key is None and self.base_url is None:
            raise GenerationError(
                f"set ${self.api_key_env} to call the OpenAI API "
                "(or give base_url for a local server)"
            )
        return openai.AsyncOpenAI(
            api_key=key or "EMPTY", base_url=self.base_url, max_retries=0, timeout=self.timeout
        )

    async def _once(self, client, prompt, config: GenerationConfig) -> str:
        # The seed goes with greedy requests too: servers that batch (OpenAI, vLLM) are only
        # best-effort deterministic at temperature 0, and a seed makes reruns closer.
        common = {"model": self.model, "max_tokens": config.max_new_tokens, "seed": config.seed}
        if not config.model_defaults:  # model_defaults: the server's own defaults decide
            common["temperature"] = config.temperature if config.do_sample else 0.0
        if config.do_sample and not config.model_defaults:
            common["top_p"] = config.top_p
        if config.frequency_penalty:
            common["frequency_penalty"] = config.frequency_penalty
        if config.stop:
            common["stop"] = list(config.stop)
        if isinstance(prompt, str):
            resp = await client.completions.create(prompt=prompt, **common)
            text = resp.choices[0].text or ""
        else:
            resp = await client.chat.completions.create(messages=prompt, **common)
            text = resp.choices[0].message.content or ""
        return text.strip() if config.strip else text

    async def complete(self, client, prompt, config: GenerationConfig) -> str:
        """One request, retried on 429, 5xx, timeouts and dropped connections."""
        for attempt in range(self.max_retries + 1):
            try:
                return await self._once(client, prompt, config)
            except Exception as err:  # noqa: BLE001 - classified just below
                if not _retryable(err):
                    failure = GenerationError(f"{self.model}: request failed: {err}")
                    if self.rejected_prefix and isinstance(err, openai.BadRequestError):
                        log.warning("request rejected: %s", failure)
                        return f"{self.rejected_prefix}{failure}"
                    raise failure from err
                if attempt == self.max_retries:
                    raise GenerationError(
                        f"{self.model}: failed after {attempt + 1} attempts "
                        f"(last error: {type(err).__name__}: {err})"
                    ) from err
                self.retries += 1
                delay = min(self.backoff_max, self.backoff_base * 2**attempt)
                await asyncio.sleep(delay / 2 + random.uniform(0, delay / 2))  # jittered backoff
        raise AssertionError("unreachable")

    async def _load_lora(self) -> None:
        """Have the server load `lora_path` as `model` (once; an adapter already loaded is fine)."""
        key = os.environ.get(self.api_key_env) or "EMPTY"
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            reply = await http.post(
                f"{self.base_url.rstrip('/')}/load_lora_adapter",
                json={"lora_name": self.model, "lora_path": self.lora_path},
                headers={"Authorization": f"Bearer {key}"},
            )
        if reply.status_code != 200 and not (
            reply.status_code == 400 and "already been loaded" in reply.text
        ):
            raise GenerationError(
                f"{self.model}: {self.base_url} did not load the adapter {self.lora_path} "
                f"(HTTP {reply.status_code}: {reply.text[:300]}); serve the base model with "
                "`vllm serve MODEL --enable-lora --max-lora-rank R` and "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in its environment"
            )
        self._lora_loaded = True

    async def _run(self, prompts, config, on_result) -> None:
        if self.lora_path and not self._lora_loaded:
            await self._load_lora()
        client = self._client()
        gate = asyncio.Semaphore(config.concurrency)

        async def one(i):
            async with gate:
                return i, await self.complete(client, prompts[i], config)

        tasks = [asyncio.create_task(one(i)) for i in range(len(prompts))]
        try:
            for finished in asyncio.as_completed(tasks):
                i, text = await finished
                on_result(i, text)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()

    def run(
        self, prompts: list, config: GenerationConfig, on_result: Callable[[int, str], None]
    ) -> None:
        """Send every prompt, at most `config.concurrency` at a time; report each as it ends."""
        run_sync(self._run(prompts, config, on_result))
