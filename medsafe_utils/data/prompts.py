"""The exact prompt texts of the original experiments (data/medsafetybench/prompts)."""

from __future__ import annotations

import json
from functools import cache

from medsafe_utils.core.readers import read_text
from medsafe_utils.data.manifest import ensure_file

PROMPTS_PREFIX = "medsafetybench/prompts/"


@cache
def prompt_text(name: str) -> str:
    """One prompt text by file stem (e.g. 'judge_template'), verified against its sha256."""
    return read_text(ensure_file(f"{PROMPTS_PREFIX}{name}.txt"))


@cache
def alpaca_template() -> dict[str, str]:
    """The fine-tuning template (prompt_input, prompt_no_input, response_split)."""
    return json.loads(read_text(ensure_file(f"{PROMPTS_PREFIX}alpaca.json")))


def refusal_prefixes() -> list[str]:
    """The refusal prefixes of the original GCG code, one per line."""
    return [line for line in prompt_text("refusal_prefixes").splitlines() if line.strip()]
