"""The generation protocol: the model completes each instruction prompt greedily, as meditron's
vLLM call does (temperature 0, frequency_penalty 1.0, stop at "###" or the end-of-sequence
token), for as many new tokens as the gold answer has (+8 with shots); the answer is read from
the text (medical_eval.answers), and an unreadable one is scored wrong and flagged."""

from __future__ import annotations

from collections.abc import Sequence

from medsafe_utils.backends import GenerationConfig, HFBackend
from medsafe_utils.medical_eval.answers import answer_index, read_answer
from medsafe_utils.medical_eval.instructed import PROMPT_VERSION, GenRequest

FREQUENCY_PENALTY = 1.0
STOP = ("###",)
EXTRA_TOKENS_WITH_SHOTS = 8
PROMPT_FORMAT = "meditron-instructions"  # raw text prompts, no chat template


def max_new_tokens(tokenizer, request: GenRequest) -> int:
    """Tokens of the gold answer text, + 8 with shots (meditron's budget for an MCQ answer)."""
    n = len(tokenizer(request.gold, add_special_tokens=False)["input_ids"])
    return n + (EXTRA_TOKENS_WITH_SHOTS if request.num_fewshot else 0)


def generation_config(max_tokens: int, batch_size: int) -> GenerationConfig:
    """Greedy with meditron's frequency penalty and stop string; the text kept as generated."""
    return GenerationConfig(
        max_new_tokens=max_tokens,
        batch_size=batch_size,
        frequency_penalty=FREQUENCY_PENALTY,
        stop=STOP,
        strip=False,
    )


def generation_settings(read_maybe: bool, dtype: str, load_in_4bit: bool) -> dict:
    """What changes a generation or its reading besides the model and prompt (part of the key)."""
    return {
        "prompt_version": PROMPT_VERSION,
        "frequency_penalty": FREQUENCY_PENALTY,
        "stop": list(STOP),
        "read_maybe": read_maybe,
        "dtype": dtype,
        "load_in_4bit": load_in_4bit,
    }


def generate_answers(
    backend: HFBackend,
    requests: Sequence[GenRequest],
    budgets: Sequence[int],
    batch_size: int,
    on_result,
) -> None:
    """Generate every request, grouped by its token budget; on_result(j, text) for request j."""
    groups: dict[int, list[int]] = {}
    for j, budget in enumerate(budgets):
        groups.setdefault(budget, []).append(j)
    for budget, members in groups.items():
        backend.run(
            [requests[j].prompt for j in members],
            generation_config(budget, batch_size),
            lambda i, text, members=members: on_result(members[i], text),
        )


def reading(request: GenRequest, output: str, read_maybe: bool) -> dict:
    """What the output answers: the read answer (None: unreadable), its index, correctness."""
    answer = read_answer(output, request.benchmark, request.num_fewshot > 0, read_maybe)
    return {
        "output": output,
        "parsed": answer,
        "pred": answer_index(answer, request.benchmark),
        "unreadable": answer is None,
        "correct": int(answer is not None and answer == request.gold.lower()),
    }
