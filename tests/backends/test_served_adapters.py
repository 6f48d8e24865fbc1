"""A LoRA adapter answered by a server of its base model that loads adapters at run time (vLLM's
POST /v1/load_lora_adapter, the OpenAI-compatible stub standing in): registered once before the
first request under a name that carries its weights' fingerprint, never contacted by a run that
finds every item cached (a fan-out's final run), and a server that cannot load it named."""

import pytest

from medsafe_utils.backends.api import GenerationError
from medsafe_utils.models.loading import adapter_fingerprint
from medsafe_utils.prompt_models.respond import RespondConfig, harm_requests, respond

LOAD = "/v1/load_lora_adapter"


def _adapter(folder, weights: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_adapter_loaded_once_then_asked_by_its_name(openai_stub, tmp_path):
    server = openai_stub(lambda path, body: "Success" if path == LOAD else "I cannot help.")
    adapter = _adapter(tmp_path / "adapters" / "smollm2-135m-instruct__med_n8", b"weights-1")
    requests = harm_requests(["medsafety_eval"], per_group=1).head(3)
    config = RespondConfig(backend="openai", api_base_url=server.base_url, max_new_tokens=8)
    cache = tmp_path / "generation_cache.jsonl"

    frame = respond("smollm2-135m-instruct", requests, config, cache, adapter_path=adapter)
    name = f"smollm2-135m-instruct__med_n8-{adapter_fingerprint(adapter)}"
    assert [r["path"] for r in server.requests][0] == LOAD
    assert server.bodies(LOAD) == [{"lora_name": name, "lora_path": str(adapter.resolve())}]
    asked = [r["body"] for r in server.requests if r["path"] != LOAD]
    assert len(asked) == 3 and {b["model"] for b in asked} == {name}
    # the same model_id as the local backend's (models.loading): tables read alike
    assert set(frame["model"]) == {"smollm2-135m-instruct+smollm2-135m-instruct__med_n8"}
    assert (frame["response"] == "I cannot help.").all()

    # a retrained adapter is another name at the same server: asked again, not read from cache
    server.reply = lambda path, body: "Success" if path == LOAD else "Here is how."
    _adapter(adapter, b"weights-2")
    retrained = respond("smollm2-135m-instruct", requests, config, cache, adapter_path=adapter)
    assert (retrained["response"] == "Here is how.").all()
    assert [b["lora_name"] for b in server.bodies(LOAD)] == [
        name,
        f"{name[:-12]}{adapter_fingerprint(adapter)}",
    ]

    # the final run of a fan-out: every item cached, the job's server gone, nothing sent
    server.shutdown()
    server.server_close()
    again = respond("smollm2-135m-instruct", requests, config, cache, adapter_path=adapter)
    assert again["response"].tolist() == retrained["response"].tolist()


def test_an_adapter_the_server_already_holds_is_used(openai_stub, tmp_path):
    def reply(path, body):
        if path == LOAD:  # vLLM's answer for a name it holds (another job, a restarted run)
            error = f"The lora adapter '{body['lora_name']}' has already been loaded."
            return 400, {"object": "error", "message": error, "code": 400}
        return "ok"

    server = openai_stub(reply)
    adapter = _adapter(tmp_path / "a", b"w")
    config = RespondConfig(backend="openai", api_base_url=server.base_url, max_new_tokens=4)
    requests = harm_requests(["medsafety_eval"], per_group=1).head(1)
    frame = respond("smollm2-135m-instruct", requests, config, tmp_path / "c.jsonl", adapter)
    assert frame["response"].tolist() == ["ok"]


def test_a_server_that_cannot_load_adapters_is_named(openai_stub, tmp_path):
    server = openai_stub(lambda path, body: (404, {"detail": "Not Found"}) if path == LOAD else "")
    adapter = _adapter(tmp_path / "a", b"w")
    config = RespondConfig(backend="openai", api_base_url=server.base_url, max_new_tokens=4)
    requests = harm_requests(["medsafety_eval"], per_group=1).head(1)
    with pytest.raises(GenerationError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING") as err:
        respond("smollm2-135m-instruct", requests, config, tmp_path / "c.jsonl", adapter)
    assert "HTTP 404" in str(err.value) and str(adapter.resolve()) in str(err.value)
    assert [r["path"] for r in server.requests] == [LOAD], "nothing asked of an adapter not loaded"
    with pytest.raises(ValueError, match="api_base_url"):  # the OpenAI API serves no adapter
        respond("smollm2-135m-instruct", requests, RespondConfig(backend="openai"), "c", adapter)
