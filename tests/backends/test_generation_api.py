"""The OpenAI-compatible backend: a real local server (llama.cpp), injected 429/500 answers,
a clear error after the last retry, and an API key that never reaches a result file."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medsafe_utils.backends import GenerationConfig, GenerationError, OpenAIBackend, generate
from medsafe_utils.core.artifacts import write_jsonl
from medsafe_utils.models.prompting import chat_messages
from medsafe_utils.prompt_models.respond import RespondConfig, harm_requests, respond

SECRET = "sk-test-CANARY-5f2b9c"


class FlakyServer(ThreadingHTTPServer):
    """Answers chat completions with an echo; fails the first `failures` tries of each prompt."""

    def __init__(self, failures: int):
        super().__init__(("127.0.0.1", 0), FlakyHandler)
        self.failures, self.tries, self.auth = failures, {}, set()
        self.lock = threading.Lock()


class FlakyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        server = self.server
        with server.lock:
            server.auth.add(self.headers.get("Authorization"))
            tries = server.tries[prompt] = server.tries.get(prompt, 0) + 1
        if tries <= server.failures:
            status = 429 if tries % 2 else 500
            return self._send(status, {"error": {"message": "injected", "type": "test"}})
        return self._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": f"echo: {prompt}"},
                    }
                ],
            },
        )

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def flaky_server(request):
    server = FlakyServer(failures=request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.mark.parametrize("flaky_server", [2], indirect=True)
def test_retries_through_429_and_500(flaky_server, tmp_path, monkeypatch):
    server, base_url = flaky_server
    monkeypatch.setenv("TEST_API_KEY", SECRET)
    backend = OpenAIBackend(
        "judge-model", base_url=base_url, api_key_env="TEST_API_KEY", backoff_base=0.01
    )
    prompts = [chat_messages(f"request {i}") for i in range(20)]
    cache = tmp_path / "cache.jsonl"
    outputs = generate(backend, prompts, GenerationConfig(concurrency=8), cache_path=cache)
    assert outputs == [f"echo: request {i}" for i in range(20)]
    assert backend.retries == 40 and all(t == 3 for t in server.tries.values())
    assert server.auth == {f"Bearer {SECRET}"}  # the key from the environment was used...
    assert SECRET not in cache.read_text()  # ...and is written nowhere
    assert generate(backend, prompts, GenerationConfig(), cache_path=cache) == outputs
    assert sum(server.tries.values()) == 60  # the rerun came from the cache: no new request


@pytest.mark.parametrize("flaky_server", [100], indirect=True)
def test_clear_error_after_last_retry(flaky_server):
    _, base_url = flaky_server
    backend = OpenAIBackend("m", base_url=base_url, max_retries=2, backoff_base=0.01)
    with pytest.raises(GenerationError, match="failed after 3 attempts .*RateLimitError"):
        generate(backend, [chat_messages("x")], GenerationConfig())


def test_missing_key_for_the_openai_api_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(GenerationError, match=r"set \$OPENAI_API_KEY"):
        generate(OpenAIBackend("gpt-4"), [chat_messages("x")], GenerationConfig())


@pytest.mark.parametrize("flaky_server", [1], indirect=True)
def test_respond_over_api_keeps_the_key_out_of_results(flaky_server, tmp_path, monkeypatch):
    _, base_url = flaky_server
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
    # Greedy decoding on the server is deterministic: the same question, the same answer.
    again = generate(backend, prompts[:1], GenerationConfig(max_new_tokens=16))
    assert again[0] == outputs[0]
