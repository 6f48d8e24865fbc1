"""The task's samples: 04's harmful requests (the validated data layer, same subset for the same
per_group and seed), each rendered in the chosen prompt format, with its id and groups as
metadata."""

from __future__ import annotations

from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageSystem, ChatMessageUser

from medsafe_utils.models.prompting import chat_messages, render_paper
from medsafe_utils.models.registry import get_spec
from medsafe_utils.prompt_models.respond import MEDICAL_SET, harm_requests

ORIGINS = ("gpt4", "llama2")  # MedSafety-Eval's two origins
GENERAL = "general"  # the general-harm set in use (HEx-PHI if supplied, else AdvBench)
SETS = (*ORIGINS, GENERAL)
FORMATS = ("chat", "paper")


def parse_sets(sets: str | list[str]) -> list[str]:
    """The chosen sets from 'gpt4,llama2,general' or a list; an unknown name is an error."""
    chosen = [s.strip() for s in (sets.split(",") if isinstance(sets, str) else sets)]
    unknown = [s for s in chosen if s not in SETS]
    if unknown or not chosen:
        raise ValueError(f"sets {chosen}: choose among {list(SETS)} (comma-separated)")
    return chosen


def sample_input(
    request: str, prompt_format: str, paper_model: str, system_prompt: str | None
) -> str | list:
    """What the model receives: the paper's per-family template of `paper_model` as one raw
    prompt, or system + user messages for the model's own chat template (04's two formats)."""
    if prompt_format == "paper":
        return render_paper(get_spec(paper_model), request)
    messages = chat_messages(request, system_prompt)
    if system_prompt == "":  # no system message at all
        messages = messages[1:]
    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser}
    return [kinds[m["role"]](content=m["content"]) for m in messages]


def check_format(prompt_format: str, paper_model: str, system_prompt: str | None) -> None:
    """A clear error for a format without what it needs, or with what it cannot use."""
    if prompt_format not in FORMATS:
        raise ValueError(f"prompt_format {prompt_format!r}: use one of {FORMATS}")
    if prompt_format == "paper":
        if not paper_model:
            raise ValueError(
                "prompt_format 'paper' needs paper_model: the registry key whose "
                "per-family template to use (e.g. llama2-7b-chat, medalpaca-7b)"
            )
        if get_spec(paper_model).template == "api":
            raise ValueError(f"{paper_model} has no paper template (an API model): use 'chat'")
        if system_prompt is not None:
            raise ValueError(
                "the paper's templates carry their own system prompt: "
                "leave system_prompt unset with prompt_format 'paper'"
            )


def medsafety_samples(
    sets: str | list[str],
    per_group: int = 0,
    n_general: int = 0,
    seed: int = 0,
    prompt_format: str = "chat",
    paper_model: str = "",
    system_prompt: str | None = None,
) -> MemoryDataset:
    """One Sample per request of the chosen sets, id = 04's item_id; metadata: harm_set,
    origin, category (the AMA principle, 1-9; 0 for the general set) and the request."""
    check_format(prompt_format, paper_model, system_prompt)
    sets = parse_sets(sets)
    harm_sets = ([MEDICAL_SET] if set(sets) & set(ORIGINS) else []) + (
        [GENERAL] if GENERAL in sets else []
    )
    requests = harm_requests(harm_sets, per_group=per_group, n_general=n_general, seed=seed)
    keep = (requests["harm_set"] != MEDICAL_SET) | requests["origin"].isin(sets)
    samples = [
        Sample(
            id=row.item_id,
            input=sample_input(row.request, prompt_format, paper_model, system_prompt),
            metadata={
                "harm_set": row.harm_set,
                "origin": row.origin,
                "category": int(row.category),
                "request": row.request,
            },
        )
        for row in requests[keep].itertuples()
    ]
    return MemoryDataset(samples, name="medsafetybench")
