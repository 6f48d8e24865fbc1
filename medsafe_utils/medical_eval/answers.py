"""Reading the answer out of a generated text, by the rules of meditron's evaluate.py (the
scorer the paper used):

1. lower-case; if the text holds "\\n##", keep the first line after it;
2. with shots, keep what comes before the first blank line ("\\n\\n");
3. every character other than a-z and 0-9 becomes a space; spaces are collapsed and stripped;
4. multiple choice: the answer is the first character (so the first letter of the first word);
   PubMedQA: the whole remaining text, after "yesyes"/"nono"/"yesno"/"noyes" are collapsed;
5. the answer counts only if it is one of a, b, c, d, e, yes, no; anything else is
   "unable to find answer", which is scored as wrong and counted apart.

Note rule 5: meditron never accepts "maybe", so a PubMedQA item whose gold label is "maybe" can
not be answered correctly. `read_maybe=True` accepts it (a documented departure); the default
keeps the released behaviour."""

from __future__ import annotations

import re

from medsafe_utils.data.medical import PUBMEDQA_LABELS

READABLE = ("a", "b", "c", "d", "e", "yes", "no")
_DOUBLED = (("yesyes", "yes"), ("nono", "no"), ("yesno", "yes"), ("noyes", "no"))


def _collapse_doubled(text: str) -> str:
    """meditron's clean_double_answer: the first of its four doubled forms that occurs."""
    for doubled, single in _DOUBLED:
        if doubled in text:
            return text.replace(doubled, single)
    return text


def read_answer(output: str, benchmark: str, with_shots: bool, read_maybe: bool = False):
    """The answer read from `output` ('a'..'e', 'yes', 'no', or 'maybe' with read_maybe), or
    None when it cannot be read."""
    text = output.lower()
    if "\n##" in text:
        text = text.split("\n##")[1].split("\n")[0].strip()
    if with_shots:
        text = text.split("\n\n")[0].strip()
    text = re.sub(r"[^a-z0-9]", " ", text)
    text = re.sub(" +", " ", text).strip()
    if benchmark == "pubmedqa":
        answer = _collapse_doubled(text)
    else:
        answer = text[:1]
    accepted = READABLE + (("maybe",) if read_maybe else ())
    return answer if answer in accepted else None


def answer_index(answer: str | None, benchmark: str) -> int:
    """0-based choice index of a read answer; -1 when unreadable. 'e' (a fifth option) and a
    yes/no answer to a lettered question keep an index that matches no gold of four options."""
    if answer is None:
        return -1
    if benchmark == "pubmedqa":
        return PUBMEDQA_LABELS.index(answer) if answer in PUBMEDQA_LABELS else -1
    return "abcde".index(answer) if len(answer) == 1 and answer in "abcde" else -1
