"""The Llama-3 prompt string as the original scripts wrote it by hand (prefill = "released").

exps/adv_attack/generate_prompts.py (the "Sure!" requests) and filter_harmful.py (the harm
filter) do not use the tokenizer's chat template: they write the special tokens out and tokenize
the text without adding special tokens. Their layout differs from Llama-3's own template in one
quirk: a newline follows every `<|eot_id|>`. Both scripts share the layout

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>\\n
    <|start_header_id|>user<|end_header_id|>\\n\\n{user}<|eot_id|>\\n
    <|start_header_id|>assistant<|end_header_id|>\\n\\n{answer start}

(one string; the line breaks above are the `\\n` after each `<|eot_id|>`). The texts that fill
it (system prompts, the filter's user text) are data: prompts/*.txt in the data mirror.
"""

from __future__ import annotations

PROMPT_FORMATS = ("released", "chat_template")
BEGIN = "<|begin_of_text|>"
EOT = "<|eot_id|>\n"  # the original's quirk: a newline after each end of turn


def header(role: str) -> str:
    """A Llama-3 turn header: the role between header tokens, then a blank line."""
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


def released_llama3_prompt(system: str, user: str, answer_start: str = "") -> str:
    """The original's hand-written Llama-3 prompt: system turn, user turn, assistant header and
    the start of the answer (e.g. "Sure!"), each finished turn followed by `<|eot_id|>\\n`."""
    return (
        f"{BEGIN}{header('system')}{system}{EOT}{header('user')}{user}{EOT}"
        f"{header('assistant')}{answer_start}"
    )


def check_prompt_format(name: str, value: str) -> None:
    """A ValueError naming the parameter unless `value` is a known prompt format."""
    if value not in PROMPT_FORMATS:
        raise ValueError(f"{name} must be one of {PROMPT_FORMATS}, got {value!r}")
