"""One way from a model name to a backend: local or API, with the same attributes; and freeing a
local model."""

import pytest

from medsafe_utils.backends import HFBackend, OpenAIBackend, load_backend
from medsafe_utils.judge.parse import JUDGE_ERROR_PREFIX
from medsafe_utils.models import release


def test_local_backend():
    backend = load_backend("tiny-random")
    assert isinstance(backend, HFBackend) and not backend.is_api
    assert backend.tokenizer is backend.lm.tokenizer and backend.spec is backend.lm.spec
    assert (backend.model_id, backend.revision, backend.prompt_format) == (
        "tiny-random",
        "seed0",
        "chat",
    )
    assert load_backend("tiny-random", prompt_format="paper").prompt_format == "paper"


def test_api_backends():
    registered = load_backend("gpt-4")  # source openai: an endpoint whatever `backend` says
    assert isinstance(registered, OpenAIBackend) and registered.is_api
    assert registered.tokenizer is None
    assert (registered.model, registered.model_id, registered.prompt_format) == (
        "gpt-4-1106-preview",
        "gpt-4",
        "paper",
    )
    served = load_backend(
        "smollm2-135m-instruct", "openai", api_base_url="http://127.0.0.1:9/v1", max_retries=1
    )
    assert (served.model, served.model_id, served.prompt_format) == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "smollm2-135m-instruct",
        "chat",
    )
    assert served.revision == "api:http://127.0.0.1:9/v1" and served.max_retries == 1
    assert served.spec.group == "general"
    raw = load_backend("gpt-3.5-turbo-0125", "openai", rejected_prefix=JUDGE_ERROR_PREFIX)
    assert (raw.model, raw.model_id, raw.spec.source) == (
        "gpt-3.5-turbo-0125",
        "gpt-3.5-turbo-0125",
        "openai",
    )
    assert raw.revision == "api:https://api.openai.com/v1"


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match="backend must be one of"):
        load_backend("tiny-random", "vllm")
    with pytest.raises(ValueError, match="adapter needs a local model"):
        load_backend("gpt-4", adapter_path="adapters/x")
    with pytest.raises(KeyError, match="unknown model"):
        load_backend("no-such-model")


def test_release_drops_the_weights():
    backend = load_backend("tiny-random")
    _ = backend.lm.model
    release(backend.lm)
    assert not backend.lm.loaded
    with pytest.raises(RuntimeError, match="tiny-random was released"):
        _ = backend.lm.model
    release()  # nothing to drop: only collects
