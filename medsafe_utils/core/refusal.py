"""Refusal detection by the original GCG code's prefixes (prompts/refusal_prefixes.txt).

Used by the keyword judge (a cheap baseline), GCG's success test and the safe-response check."""

from __future__ import annotations

from medsafe_utils.data.prompts import refusal_prefixes


def is_refusal(text: str, prefixes: list[str] | None = None) -> bool:
    """True when the text contains any refusal prefix, as in the original `test_prefixes` check."""
    prefixes = prefixes if prefixes is not None else refusal_prefixes()
    return any(prefix in text for prefix in prefixes)
