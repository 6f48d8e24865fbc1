"""Reading the answer out of a generated text. Two readers, chosen by `answer_reader`:

"fork" (the paper's): the reader of th789/meditron, the fork of meditron the study ran
(evaluation/evaluate.py, its `eval()`), quirks included:

1. lower-case; every character other than a-z and 0-9 becomes a space; the FIRST WORD is kept
   (an empty text has an empty first word);
2. multiple choice: the answer is that word's first character (so "Answer: B" reads "a");
   PubMedQA: the word itself, after the first of "yesyes", "nono", "yesno", "noyes" that occurs
   in it is collapsed to its first half ("yesno" reads "yes");
3. the answer counts only if it is one of a, b, c, d, e, yes, maybe, no (a letter to PubMedQA
   or "e" to a four-option question is readable, and wrong); anything else is "unable to find
   answer", scored as wrong and counted apart.

"upstream" (this project's earlier reader, from upstream meditron's rules): after "\\n##" the
next line only; with shots the text before the first blank line; multiple choice the first
character of the whole cleaned text, PubMedQA the whole cleaned text (so "yes, because" is
unreadable); "maybe" never read."""

from __future__ import annotations

import re

from medsafe_utils.data.medical import PUBMEDQA_LABELS

READERS = ("fork", "upstream")
ACCEPTED = {
    "fork": ("a", "b", "c", "d", "e", "yes", "maybe", "no"),
    "upstream": ("a", "b", "c", "d", "e", "yes", "no"),
}
_DOUBLED = (("yesyes", "yes"), ("nono", "no"), ("yesno", "yes"), ("noyes", "no"))
BOOLEAN = ("pubmedqa",)  # the fork's answer type "boolean"; every other benchmark is "mcq"


def _collapse_doubled(text: str) -> str:
    """The first of the four doubled forms that occurs, replaced everywhere by its first half."""
    for doubled, single in _DOUBLED:
        if doubled in text:
            return text.replace(doubled, single)
    return text


def _alphanumeric(text: str) -> str:
    """Lower-case, every character but a-z and 0-9 a space (lower-casing first, as the fork)."""
    return re.sub(r"[^a-z0-9]", " ", text.lower())


def read_fork(output: str, benchmark: str) -> str | None:
    """The fork's reading of `output` (see the module text), or None when unreadable."""
    words = _alphanumeric(output).split()
    word = words[0] if words else ""
    answer = _collapse_doubled(word) if benchmark in BOOLEAN else word[:1]
    return answer if answer in ACCEPTED["fork"] else None


def read_upstream(output: str, benchmark: str, with_shots: bool) -> str | None:
    """The earlier reader's reading of `output` (see the module text), or None when unreadable."""
    text = output.lower()
    if "\n##" in text:
        text = text.split("\n##")[1].split("\n")[0].strip()
    if with_shots:
        text = text.split("\n\n")[0].strip()
    text = re.sub(" +", " ", _alphanumeric(text)).strip()
    answer = _collapse_doubled(text) if benchmark in BOOLEAN else text[:1]
    return answer if answer in ACCEPTED["upstream"] else None


def read_answer(output: str, benchmark: str, with_shots: bool, reader: str = "fork"):
    """The answer read from `output` ('a'..'e', 'yes', 'no', 'maybe'), None when unreadable."""
    if reader == "fork":
        return read_fork(output, benchmark)
    if reader == "upstream":
        return read_upstream(output, benchmark, with_shots)
    raise ValueError(f"answer_reader must be one of {READERS}, got {reader!r}")


def answer_index(answer: str | None, benchmark: str) -> int:
    """0-based choice index of a read answer; -1 when unreadable. 'e' (a fifth option) and a
    yes/no answer to a lettered question keep an index that matches no gold of four options."""
    if answer is None:
        return -1
    if benchmark in BOOLEAN:
        return PUBMEDQA_LABELS.index(answer) if answer in PUBMEDQA_LABELS else -1
    return "abcde".index(answer) if len(answer) == 1 and answer in "abcde" else -1
