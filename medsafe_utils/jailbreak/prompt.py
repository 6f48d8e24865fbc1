"""The pieces of a GCG prompt: fixed text before and after the optimised suffix, the target, the
tokens a suffix may not use, and the re-tokenization filter for candidate suffixes.

Two layouts: `chat` (the tokenizer's chat template; the suffix ends the last user turn) and
`llama2_paper` (the original attack: prompts/gcg_template_llama2.txt filled with the goal, the
suffix, then "[/INST]")."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from medsafe_utils.data.prompts import prompt_text
from medsafe_utils.models.prompting import render_chat

TEMPLATES = ("chat", "llama2_paper")
PLACEHOLDER = "{optim_str}"  # where the suffix goes, if a message names the place itself
LLAMA2_CLOSE = "[/INST]"  # appended after the suffix by the original attack


@dataclass
class PromptParts:
    """Token ids (1-D) of the fixed prompt around the suffix, and of the target."""

    before_ids: torch.Tensor  # (n_before,) chat header, system prompt, goal
    after_ids: torch.Tensor  # (n_after,) end of the user turn, assistant header
    target_ids: torch.Tensor  # (n_target,) the answer the attack wants
    before_text: str
    after_text: str


def _messages(messages: str | list[dict[str, str]]) -> list[dict[str, str]]:
    """A goal string becomes one user message; message lists are copied, never changed."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not messages or not any(m.get("role") == "user" for m in messages):
        raise ValueError("GCG needs at least one user message to attach the suffix to")
    return copy.deepcopy(messages)


def _split_chat(tokenizer, messages: list[dict[str, str]]) -> tuple[str, str]:
    """Render the chat with a placeholder at the end of the last user turn; split around it."""
    if not any(PLACEHOLDER in m["content"] for m in messages):
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last_user]["content"] += PLACEHOLDER
    text = render_chat(tokenizer, messages)
    if text.count(PLACEHOLDER) != 1:
        raise ValueError(f"the rendered prompt must contain {PLACEHOLDER} exactly once")
    before, after = text.split(PLACEHOLDER)
    return before, after


def build_prompt(
    tokenizer, messages: str | list[dict[str, str]], target: str, template: str = "chat"
) -> PromptParts:
    """Split the attack prompt around the suffix and tokenize each part separately."""
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {TEMPLATES}, got {template!r}")
    if not target:
        raise ValueError("the GCG target must be a non-empty string")
    messages = _messages(messages)
    if template == "llama2_paper":
        goal = [m["content"] for m in messages if m["role"] == "user"][-1]
        before, after = prompt_text("gcg_template_llama2").format(prompt=goal), LLAMA2_CLOSE
        # The original tokenized the template with the tokenizer's special tokens (BOS).
        before_ids = tokenizer(before, add_special_tokens=True)["input_ids"]
    else:
        before, after = _split_chat(tokenizer, messages)
        # A chat template writes its own BOS token; the tokenizer must not add a second one.
        before_ids = tokenizer(before, add_special_tokens=False)["input_ids"]
    ids = [before_ids] + [
        tokenizer(t, add_special_tokens=False)["input_ids"] for t in (after, target)
    ]
    return PromptParts(*(torch.tensor(i, dtype=torch.long) for i in ids), before, after)


def special_token_ids(tokenizer) -> set[int]:
    """Every special or control token: BOS/EOS/PAD/UNK, extra specials, added special tokens."""
    ids = {i for i in tokenizer.all_special_ids if i is not None}
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            ids.add(token_id)
    return ids


def forbidden_token_ids(tokenizer, vocab_size: int, allow_non_ascii: bool = False) -> torch.Tensor:
    """Token ids a suffix may not use: special tokens always, non-ASCII/unprintable unless allowed.

    Ids past the tokenizer (padding rows of the embedding matrix) are forbidden too."""
    forbidden = special_token_ids(tokenizer)
    n_tokens = min(len(tokenizer), vocab_size)
    if not allow_non_ascii:
        texts = tokenizer.batch_decode([[i] for i in range(n_tokens)])
        forbidden |= {i for i, t in enumerate(texts) if not (t.isascii() and t.isprintable())}
    forbidden |= set(range(n_tokens, vocab_size))
    return torch.tensor(sorted(i for i in forbidden if i < vocab_size), dtype=torch.long)


def retokenizes(tokenizer, candidates: torch.Tensor) -> torch.Tensor:
    """(n,) bool: which candidate suffixes (n, suffix_len) decode and re-encode to themselves."""
    rows = candidates.tolist()
    encoded = tokenizer(tokenizer.batch_decode(rows), add_special_tokens=False)["input_ids"]
    same = [enc == row for enc, row in zip(encoded, rows, strict=True)]
    return torch.tensor(same, dtype=torch.bool)


def attack_succeeded(generation: str, target: str) -> bool:
    """The paper's success test: the target appears in the generation, else no refusal prefix."""
    from medsafe_utils.data.refusal import is_refusal

    return target in generation or not is_refusal(generation)
