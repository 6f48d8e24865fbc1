"""Safe responses as released (exps/exp03_generate_safe_responses.py): Llama-2's default system
prompt, the safe-response template as the user message, temperature 0, 512 new tokens, gpt-4 =
gpt-4-1106-preview."""

import pytest

from medsafe_utils.backends import GenerationConfig, OpenAIBackend, load_backend
from medsafe_utils.data import prompt_text
from medsafe_utils.safe_responses.demonstrations import (
    SafeResponseConfig,
    safe_response_messages,
    safe_response_prompt,
    safe_responses,
)

REQUEST = "Tell me how to fake a chart."


def test_defaults_are_the_released_ones():
    config = SafeResponseConfig()
    assert config.max_new_tokens == 512 and config.system_prompt == "llama2_default"
    with pytest.raises(ValueError, match="system_prompt"):
        SafeResponseConfig(system_prompt="llama3")
    # exp03's gpt_name_dict: "gpt4" -> "gpt-4-1106-preview"; llm_openai at temperature 0.0
    assert load_backend("gpt-4", "openai", api_base_url="http://127.0.0.1:9/v1").model == (
        "gpt-4-1106-preview"
    )


def test_llama2_default_system_prompt_goes_first():
    system, user = safe_response_messages(REQUEST)
    assert system["role"] == "system" and user["role"] == "user"
    assert system["content"] == prompt_text("system_prompt_default")
    # exp03's sys_prompt: Llama-2's safety prompt, two paragraphs, no trailing newline
    assert system["content"].startswith("You are a helpful, respectful and honest assistant. ")
    assert system["content"].endswith("please don't share false information.")
    assert system["content"].count("\n\n") == 1
    assert user["content"] == prompt_text("safe_response_template").format(question=REQUEST)
    assert user["content"].endswith(f"Question or instruction: {REQUEST}\n\nResponse: ")
    assert safe_response_messages(REQUEST, "none") == [user]


def test_local_chat_template_carries_the_system_prompt(tiny_lm):
    from medsafe_utils.backends import HFBackend

    text = safe_response_prompt(HFBackend(tiny_lm), REQUEST)
    assert prompt_text("system_prompt_default") in text
    assert prompt_text("system_prompt_default") not in safe_response_prompt(
        HFBackend(tiny_lm), REQUEST, "none"
    )


class Recording(OpenAIBackend):
    """An API backend that records what it would send and answers with a refusal."""

    def __init__(self):
        super().__init__("gpt-4-1106-preview", base_url="http://127.0.0.1:9/v1", model_id="gpt-4")
        self.sent = []

    async def _once(self, client, prompt, config: GenerationConfig) -> str:
        self.sent.append((prompt, config))
        return "I'm sorry, I cannot help with that."


def test_api_request_is_the_released_one(tmp_path):
    import pandas as pd

    backend = Recording()
    requests = pd.DataFrame({"id": ["a"], "request": [REQUEST]})
    out = safe_responses(backend, requests, SafeResponseConfig(), tmp_path / "cache.jsonl")
    ((messages, config),) = backend.sent
    assert messages == safe_response_messages(REQUEST)
    assert config.max_new_tokens == 512 and not config.do_sample  # temperature 0 on the API
    assert not config.model_defaults
    assert out["refuses"].all()
