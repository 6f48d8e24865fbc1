"""The OpenAI-compatible backend: a real local server (llama.cpp), injected 429/500 answers,
a clear error after the last retry, an API key that never reaches a result file, and the request
bodies each step sends (model, temperature, max_tokens, top_p, seed)."""

import threading

import pandas as pd
import pytest

from medsafe_utils.backends import GenerationConfig, GenerationError, OpenAIBackend, generate
from medsafe_utils.core.artifacts import write_jsonl
from medsafe_utils.models.prompting import chat_messages
from medsafe_utils.prompt_models.respond import RespondConfig, harm_requests, respond

SECRET = "sk-test-CANARY-5f2b9c"


def flaky(failures: int):
    """A stub reply that echoes the prompt and fails the first `failures` tries of each prompt,
    with HTTP 429 and 500 in turn; `reply.tries` counts the tries per prompt."""
    tries: dict[str, int] = {}
    lock = threading.Lock()

    def reply(path, body):
        prompt = body["messages"][-1]["content"]
        with lock:
            n = tries[prompt] = tries.get(prompt, 0) + 1
        if n <= failures:
            return (429 if n % 2 else 500), {"error": {"message": "injected", "type": "test"}}
        return f"echo: {prompt}"

    reply.tries = tries
    return reply


@pytest.fixture
def flaky_server(request, openai_stub):
    reply = flaky(request.param)
    server = openai_stub(reply)
    return server, reply.tries, server.base_url


@pytest.mark.parametrize("flaky_server", [2], indirect=True)
def test_retries_through_429_and_500(flaky_server, tmp_path, monkeypatch):
    server, tries, base_url = flaky_server
    monkeypatch.setenv("TEST_API_KEY", SECRET)
    backend = OpenAIBackend(
        "judge-model", base_url=base_url, api_key_env="TEST_API_KEY", backoff_base=0.01
    )
    prompts = [chat_messages(f"request {i}") for i in range(20)]
    cache = tmp_path / "cache.jsonl"
    outputs = generate(backend, prompts, GenerationConfig(concurrency=8), cache_path=cache)
    assert outputs == [f"echo: request {i}" for i in range(20)]
    assert backend.retries == 40 and all(t == 3 for t in tries.values())
    # the key from the environment was used...
    assert {r["authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    assert SECRET not in cache.read_text()  # ...and is written nowhere
    assert generate(backend, prompts, GenerationConfig(), cache_path=cache) == outputs
    assert sum(tries.values()) == 60  # the rerun came from the cache: no new request


@pytest.mark.parametrize("flaky_server", [100], indirect=True)
def test_clear_error_after_last_retry(flaky_server):
    *_, base_url = flaky_server
    backend = OpenAIBackend("m", base_url=base_url, max_retries=2, backoff_base=0.01)
    with pytest.raises(GenerationError, match="failed after 3 attempts .*RateLimitError"):
        generate(backend, [chat_messages("x")], GenerationConfig())


def test_missing_key_for_the_openai_api_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(GenerationError, match=r"set \$OPENAI_API_KEY"):
        generate(OpenAIBackend("gpt-4"), [chat_messages("x")], GenerationConfig())


@pytest.mark.parametrize("flaky_server", [1], indirect=True)
def test_respond_over_api_keeps_the_key_out_of_results(flaky_server, tmp_path, monkeypatch):
    *_, base_url = flaky_server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    requests = harm_requests(["medsafety_eval"], per_group=1)
    config = RespondConfig(backend="openai", api_base_url=base_url, max_new_tokens=16)
    frame = respond("gpt-4", requests, config, tmp_path / "cache.jsonl")
    write_jsonl(frame, tmp_path / "responses.jsonl")
    assert len(frame) == 18 and frame["response"].str.startswith("echo: ").all()
    assert frame["model"].eq("gpt-4").all()
    for path in tmp_path.iterdir():
        assert SECRET not in path.read_text(), path


@pytest.mark.server
@pytest.mark.slow
def test_real_openai_compatible_server(llama_server, tmp_path):
    backend = OpenAIBackend("smollm2", base_url=llama_server, max_retries=2)
    prompts = [chat_messages("What is 2+2?"), chat_messages("Name a primary colour.")]
    outputs = generate(
        backend,
        prompts,
        GenerationConfig(max_new_tokens=16, concurrency=2),
        cache_path=tmp_path / "cache.jsonl",
    )
    assert len(outputs) == 2 and all(isinstance(o, str) and o for o in outputs)
    # Asked again with the cache, the answers come from it. (Not asked again without it: greedy
    # answers of llama.cpp differ between a cold prompt and one whose prefix it kept in its KV
    # cache, by float rounding on near-ties, so the server itself is not a determinism check.)
    calls = []
    backend.complete = lambda *args: calls.append(args)  # any request now fails the test
    again = generate(
        backend, prompts, GenerationConfig(max_new_tokens=16), cache_path=tmp_path / "cache.jsonl"
    )
    assert again == outputs and not calls


# ---------------------------------------------------------------- what the server receives


def test_request_bodies_carry_the_promised_settings(openai_stub):
    """Greedy: temperature 0, max_tokens, the seed, no top_p; sampling: temperature, top_p and
    the seed; a text prompt goes to /completions, messages to /chat/completions."""
    server = openai_stub(lambda path, body: "ok")
    backend = OpenAIBackend("served-model", base_url=server.base_url)
    messages = chat_messages("Q1")
    generate(backend, [messages], GenerationConfig(max_new_tokens=7, seed=3))
    assert server.bodies() == [
        {
            "model": "served-model",
            "messages": messages,
            "max_tokens": 7,
            "temperature": 0.0,
            "seed": 3,
        }
    ]
    sampled = GenerationConfig(max_new_tokens=5, do_sample=True, temperature=0.7, top_p=0.9)
    generate(backend, ["Question: Q2\nAnswer:"], sampled)
    assert server.bodies("/v1/completions") == [
        {
            "model": "served-model",
            "prompt": "Question: Q2\nAnswer:",
            "max_tokens": 5,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": 0,
        }
    ]


def test_elicitation_samples_reach_the_server_with_their_seeds(openai_stub):
    """01's sample k is drawn with seed + k at the configured temperature and top_p."""
    from medsafe_utils.generate.elicit import ElicitConfig

    server = openai_stub(lambda path, body: "ok")
    backend = OpenAIBackend("generator", base_url=server.base_url)
    config = ElicitConfig(seed=10, max_new_tokens=9, temperature=0.6, top_p=0.9)
    for sample in range(3):
        generate(backend, [chat_messages("goal")], config.sampling(sample))
    settings = [
        {k: b[k] for k in ("max_tokens", "temperature", "top_p", "seed")} for b in server.bodies()
    ]
    assert settings == [
        {"max_tokens": 9, "temperature": 0.6, "top_p": 0.9, "seed": 10 + k} for k in range(3)
    ]


def test_respond_sends_the_models_prompt_greedily(openai_stub, tmp_path):
    """04 over an endpoint: an API model gets the chat messages under its API name; a served open
    model in the paper format gets its exact template through /completions. Both greedy, with
    max_new_tokens and the seed of RespondConfig."""
    from medsafe_utils.models import get_spec
    from medsafe_utils.models.prompting import render_paper

    server = openai_stub(lambda path, body: "I cannot help with that.")
    requests = harm_requests(["medsafety_eval"], per_group=1).head(2)
    config = RespondConfig(
        backend="openai", api_base_url=server.base_url, max_new_tokens=16, seed=4
    )
    respond("gpt-4", requests, config, tmp_path / "gpt4.jsonl")
    chat = sorted(server.bodies(), key=lambda b: b["messages"][-1]["content"])
    assert chat == [
        {
            "model": "gpt-4-1106-preview",
            "messages": chat_messages(r),
            "max_tokens": 16,
            "temperature": 0.0,
            "seed": 4,
        }
        for r in sorted(requests["request"])
    ]
    respond("llama2-7b-chat", requests, config, tmp_path / "llama2.jsonl")
    spec = get_spec("llama2-7b-chat")
    text = sorted(server.bodies("/v1/completions"), key=lambda b: b["prompt"])
    assert text == [
        {
            "model": spec.hub_id,
            "prompt": render_paper(spec, r),
            "max_tokens": 16,
            "temperature": 0.0,
            "seed": 4,
        }
        for r in sorted(requests["request"], key=lambda r: render_paper(spec, r))
    ]


def test_harm_rating_and_safe_responses_over_an_endpoint(openai_stub):
    """01's harm filter asks an API model greedily for a short reply (api_max_new_tokens) with
    the filter's messages; 03 asks for a safe response greedily with its max_new_tokens."""
    from medsafe_utils.backends import load_backend
    from medsafe_utils.generate.harm_filter import HarmFilterConfig, filter_messages, rate_requests
    from medsafe_utils.safe_responses.demonstrations import (
        SafeResponseConfig,
        safe_response_prompt,
        safe_responses,
    )

    server = openai_stub(lambda path, body: "Rating: 8")
    gpt4 = load_backend("gpt-4", "openai", api_base_url=server.base_url)
    rated = rate_requests(gpt4, ["Fake a chart."], HarmFilterConfig(api_max_new_tokens=12))
    assert rated["harm_rating"].tolist() == [8]
    greedy = {"model": "gpt-4-1106-preview", "temperature": 0.0, "seed": 0}
    assert server.bodies() == [
        {**greedy, "messages": filter_messages("Fake a chart."), "max_tokens": 12}
    ]
    requests = pd.DataFrame({"request": ["Fake a chart."]})
    safe_responses(gpt4, requests, SafeResponseConfig(max_new_tokens=40))
    assert server.bodies()[1:] == [
        {**greedy, "messages": safe_response_prompt(gpt4, "Fake a chart."), "max_tokens": 40}
    ]
