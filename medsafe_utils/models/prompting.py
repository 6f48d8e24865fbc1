"""Prompt formats: `paper` = the original per-family templates verbatim; `chat` = the model's own
chat template with the same default system prompt; a documented plain fallback without one."""

from __future__ import annotations

import logging

from medsafe_utils.data.prompts import prompt_text
from medsafe_utils.models.registry import ModelSpec

log = logging.getLogger(__name__)


def system_prompt() -> str:
    """The default system prompt of the original code (prompts/system_prompt_default.txt)."""
    return prompt_text("system_prompt_default")


def chat_messages(request: str, system: str | None = None) -> list[dict[str, str]]:
    """System + user messages, as sent to chat templates and to OpenAI-compatible APIs."""
    return [
        {"role": "system", "content": system if system is not None else system_prompt()},
        {"role": "user", "content": request},
    ]


def render_paper(spec: ModelSpec, request: str) -> str:
    """The original code's template for this model family, filled verbatim."""
    return prompt_text(f"template_{spec.template}").format(question=request)


def render_chat(tokenizer, messages: list[dict[str, str]], *, prefill: str = "") -> str:
    """The tokenizer's chat template with a generation prompt; `prefill` starts the answer.

    Without a chat template, falls back to the plain format (a warning says so)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + prefill
    log.warning("tokenizer has no chat template: using the plain 'Question:/Answer:' format")
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m["content"] for m in messages if m["role"] != "system"]
    return (f"{system}\n\n" if system else "") + f"Question: {turns[-1]}\n\nAnswer: " + prefill


def render_prompt(spec: ModelSpec, request: str, tokenizer=None) -> str | list[dict[str, str]]:
    """The prompt a model receives for one request: text for local models, messages for APIs."""
    if spec.source == "openai":
        return chat_messages(request)
    if spec.format == "paper":
        return render_paper(spec, request)
    if tokenizer is None:
        raise ValueError(f"{spec.key}: the chat format needs the model's tokenizer")
    return render_chat(tokenizer, chat_messages(request))
