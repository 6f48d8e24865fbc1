"""What 07 evaluates and how: the settings every protocol takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from medsafe_utils.data import BENCHMARKS, MMLU_MEDITRON
from medsafe_utils.medical_eval.answers import READERS
from medsafe_utils.medical_eval.prompts import PROMPT_VERSION

PROTOCOLS = ("generation", "loglikelihood")
BUDGETS = ("released", "per_item")  # generation: the fork's budget per batch, or each item's own


# th789/meditron's few-shot seeds (inference.py's multi-seed loop; tests read them from there)
FORK_SEEDS = [7825, 1166, 5892, 7036, 4172, 5427, 8147, 3649, 7112, 3035]


def seeds_origin(num_fewshot: list[int], seeds: list[int]) -> str:
    """Whose few-shot seeds a run uses: "fork" (its ten), "ours", or "none" (zero-shot only)."""
    if not any(k > 0 for k in num_fewshot):
        return "none"
    return "fork" if list(seeds) == FORK_SEEDS else "ours"


@dataclass
class MedEvalConfig:
    """What is evaluated and how (defaults: the paper's generation protocol on full sets,
    zero-shot, the fork's reader and budgets)."""

    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    protocols: list[str] = field(default_factory=lambda: ["generation"])
    mmlu_subjects: list[str] = field(default_factory=lambda: list(MMLU_MEDITRON))
    num_fewshot: list[int] = field(default_factory=lambda: [0])
    seeds: list[int] = field(default_factory=lambda: list(FORK_SEEDS))  # few-shot draws, averaged
    answer_reader: str = "fork"  # generation: "fork" (th789/meditron's eval()) or "upstream"
    budget: str = "released"  # generation: "released" (the fork's, per batch) or "per_item"
    batch_size: int = 8  # contexts per forward pass (HFLM) or prompts per generate call
    max_length: int = 0  # tokens; 0: the model's; longer prompts lose their start (flagged)
    max_context_chars: int = 0  # PubMedQA abstracts cut to this many characters; 0 keeps all
    save_every: int = 64  # requests scored between appends to the predictions file
    dtype: str = "auto"
    load_in_4bit: bool = False

    def settings(self) -> dict:
        """What changes log-likelihoods besides the model and the prompt (part of the key)."""
        return {
            "prompt_version": PROMPT_VERSION,
            "max_length": self.max_length,
            "dtype": self.dtype,
            "load_in_4bit": self.load_in_4bit,
        }

    def __post_init__(self):
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise ValueError(f"protocols must be among {PROTOCOLS}, got {self.protocols}")
        if self.answer_reader not in READERS:
            raise ValueError(f"answer_reader must be one of {READERS}, got {self.answer_reader!r}")
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {self.budget!r}")
