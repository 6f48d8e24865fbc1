"""One way from a model name to a backend: a local transformers model or an OpenAI-compatible
endpoint, with what every step reads from it (model_id, revision, prompt_format, spec, is_api,
tokenizer; `.lm` for a local model).

    from medsafe_utils.backends import load_backend
    local = load_backend("smollm2-135m-instruct")                  # HFBackend, float32 on CPU
    served = load_backend("llama3-8b-instruct", "openai", api_base_url="http://localhost:8000/v1")
"""

from __future__ import annotations

from pathlib import Path

from medsafe_utils.backends.api import OpenAIBackend
from medsafe_utils.backends.hf import HFBackend
from medsafe_utils.models.loading import adapter_fingerprint, load_model
from medsafe_utils.models.registry import ModelSpec, get_spec

Backend = HFBackend | OpenAIBackend
BACKENDS = ("hf", "openai")


def _api_spec(model: str, prompt_format: str | None) -> ModelSpec:
    """The registry entry, else the name as the endpoint knows it (a judge's 'gpt-4o-mini')."""
    try:
        return get_spec(model, format=prompt_format)
    except KeyError:
        return ModelSpec(
            key=model,
            source="openai",
            api_model=model,
            template="api",
            format=prompt_format or "paper",
        )


def served_name(model: str) -> str:
    """The name an OpenAI-compatible endpoint knows a model by: a registry model's API name or
    hub id, else the name as given."""
    spec = _api_spec(model, None)
    return spec.api_model or spec.hub_id or spec.key


def _served_adapter(spec: ModelSpec, adapter_path: str | Path, api_base_url: str | None) -> dict:
    """An adapter answered by a server of its base model that loads adapters at run time (vLLM):
    its served name carries the weights' fingerprint, so a retrained adapter never reuses old
    caches; its model_id is the local backend's, so both backends' tables read the same."""
    if spec.source == "openai" or not api_base_url:
        raise ValueError(
            f"{spec.key}: an adapter needs a local model (backend 'hf') or a server of its base "
            "model that loads LoRA adapters (backend 'openai' with api_base_url, e.g. vLLM)"
        )
    folder = Path(adapter_path).resolve()
    return {
        "model": f"{folder.name}-{adapter_fingerprint(folder)}",
        "model_id": f"{spec.key}+{folder.name}",
        "lora_path": str(folder),
    }


def load_backend(
    model: str,
    backend: str = "hf",
    *,
    api_base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    prompt_format: str | None = None,
    dtype: str = "auto",
    load_in_4bit: bool = False,
    device_map: str | None = None,
    adapter_path: str | Path | None = None,
    **api_options,
) -> Backend:
    """A registry key, hub id or path as a local model (backend 'hf') or an endpoint ('openai',
    and always for a registry model whose source is openai). prompt_format (paper | chat)
    overrides the registry's; api_options (max_retries, backoff_base, rejected_prefix, ...) go
    to OpenAIBackend; dtype, load_in_4bit, device_map and adapter_path to load_model (an
    adapter with 'openai': loaded by the server at run time, _served_adapter)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "openai" or get_spec(model).source == "openai":
        spec = _api_spec(model, prompt_format)
        served = {"model": served_name(model), "model_id": spec.key}
        if adapter_path is not None:
            served = _served_adapter(spec, adapter_path, api_base_url)
        return OpenAIBackend(
            served.pop("model"),
            base_url=api_base_url or None,
            api_key_env=api_key_env,
            prompt_format=spec.format,
            spec=spec,
            **served,
            **api_options,
        )
    lm = load_model(
        model,
        dtype=dtype,
        load_in_4bit=load_in_4bit,
        device_map=device_map,
        adapter_path=adapter_path,
        format=prompt_format,
        lazy=True,  # a run that finds every item cached loads no weights
    )
    return HFBackend(lm)
