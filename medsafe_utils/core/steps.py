"""The step graph: the seven steps, which earlier steps' results each one reads, and the names of
the files they hand to each other (under results/<profile>/<step>/).

    from medsafe_utils.core import steps
    steps.step_file("smoke", "04_prompt_models", "responses")  # .../04_.../responses.jsonl
    steps.split_path("smoke", "med", 100)  # .../03_.../splits/ft_safety_med_n100.json
"""

from __future__ import annotations

import re
from pathlib import Path

from medsafe_utils.core import paths

STEPS = (
    "01_generate",
    "02_jailbreak",
    "03_safe_responses",
    "04_prompt_models",
    "05_judge",
    "06_finetune",
    "07_medical_eval",
)

# Upstream steps whose results a step reads (the pipeline reruns it when they change).
DEPENDS = {
    "03_safe_responses": ("01_generate", "02_jailbreak"),
    "05_judge": ("04_prompt_models",),
    "06_finetune": ("03_safe_responses",),
    "07_medical_eval": ("06_finetune",),
}

# What a step hands to later steps: a name for it, and its path in the step's folder.
HANDOFFS = {
    "01_generate": {"requests": "requests.jsonl"},  # harmful requests, read by 03
    "02_jailbreak": {"requests": "requests.jsonl"},  # GCG requests, read by 03
    "03_safe_responses": {"splits": "splits"},  # a folder of split files, read by 06
    "04_prompt_models": {"responses": "responses.jsonl"},  # judged by 05
    "06_finetune": {"adapters": "adapters.jsonl"},  # one AdapterRecord per line, read by 07
}

# Fine-tuning split files, named as the released ones (03 writes its own under the same names).
SPLIT_FILE = re.compile(r"ft_safety_(med|gen|both)_n(\d+)\.json")


def handoff_name(step: str, what: str) -> str:
    """The path, inside `step`'s folder, of what it hands on ('requests', 'splits', ...)."""
    try:
        return HANDOFFS[step][what]
    except KeyError:
        raise ValueError(
            f"{step} hands on no {what!r} (see HANDOFFS: {HANDOFFS.get(step, 'nothing')})"
        ) from None


def step_file(profile: str, step: str, what: str) -> Path:
    """results/<profile>/<step>/<file> of what `step` hands on, for a later step to read."""
    return paths.results_root() / profile / step / handoff_name(step, what)


def split_file(kind: str, n: int) -> str:
    """The name of the n-demonstration split of a kind, e.g. ft_safety_med_n100.json."""
    return f"ft_safety_{kind}_n{n}.json"


def split_path(profile: str, kind: str, n: int) -> Path:
    """Where 03_safe_responses writes a fresh split (06_finetune reads it)."""
    return step_file(profile, "03_safe_responses", "splits") / split_file(kind, n)


def parse_split_file(name: str | Path) -> tuple[str, int] | None:
    """(kind, n) of a split file's name or path; None when it is not one."""
    match = SPLIT_FILE.fullmatch(Path(name).name)
    return (match[1], int(match[2])) if match else None
