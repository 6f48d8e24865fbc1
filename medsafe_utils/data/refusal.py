"""Refusal detection by the original GCG code's prefixes (prompts/refusal_prefixes.txt).

Used by the keyword judge (a cheap baseline), GCG's success test and the safe-response check."""

from __future__ import annotations

from medsafe_utils.data.prompts import refusal_prefixes


def refusal_prefix(text: str, prefixes: list[str] | None = None) -> str | None:
    """The first refusal prefix the text contains, or None."""
    prefixes = prefixes if prefixes is not None else refusal_prefixes()
    return next((prefix for prefix in prefixes if prefix in text), None)


def is_refusal(text: str, prefixes: list[str] | None = None) -> bool:
    """True when the text contains any refusal prefix, as in the original `test_prefixes` check."""
    return refusal_prefix(text, prefixes) is not None
