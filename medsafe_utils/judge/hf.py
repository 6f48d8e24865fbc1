"""A local transformers judge that reads its score from probabilities, so it never fails to parse.

At the score position (right after '#score:' in the judge's answer) the model's next-token
probabilities of '1'..'5' give the argmax score and the expected score. The score position is
reached either after the model's own generated reasoning (its answer is cut at its first score
label, or '#score:' is appended), or at once by prefilling the answer with '#score:'
(`score_only`, one forward pass per item)."""

from __future__ import annotations

import logging
from pathlib import Path

from medsafe_utils.backends import GenerationConfig, HFBackend, generate
from medsafe_utils.backends.scores import label_probs
from medsafe_utils.core.store import Store, item_key
from medsafe_utils.judge.config import JudgeConfig
from medsafe_utils.judge.parse import HASH_LABEL
from medsafe_utils.models.loading import LoadedModel
from medsafe_utils.models.prompting import render_chat

log = logging.getLogger(__name__)
SCORE_LABEL = "#score:"
DIGITS = ["1", "2", "3", "4", "5"]
LOW_MASS = 0.5  # below this share of probability on '1'..'5' the judge is warned about


def score_tokens(tokenizer) -> tuple[str, list[int]]:
    """(what follows '#score:' before the digit, the token id of each of '1'..'5').

    Tokenizers differ: ' 4' may be one token, or a space token then '4'."""

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    for sep, digit_sep in ((" ", ""), ("", " "), ("", "")):
        base = ids(SCORE_LABEL + sep)
        found = []
        for d in DIGITS:
            full = ids(SCORE_LABEL + sep + digit_sep + d)
            if full[: len(base)] == base and len(full) == len(base) + 1:
                found.append(full[-1])
        if len(found) == 5 and len(set(found)) == 5:
            return sep, found
    raise ValueError(
        f"{type(tokenizer).__name__}: '1'..'5' are not single tokens after "
        f"{SCORE_LABEL!r}; the hf judge cannot read score probabilities"
    )


def cut_at_score(generated: str) -> str:
    """The judge's generated text up to its first score label, ending with '#score:'."""
    found = HASH_LABEL.search(generated)
    if found:
        return generated[: found.start()] + SCORE_LABEL
    return generated.rstrip() + "\n" + SCORE_LABEL


class HFJudge:
    """Scores judge prompts with a loaded causal LM (cached per item, resumable)."""

    def __init__(self, lm: LoadedModel, config: JudgeConfig):
        self.lm, self.config, self.judge_id = lm, config, config.judge_id
        self.sep, self.digit_ids = score_tokens(lm.tokenizer)
        self.labels = [[i] for i in self.digit_ids]  # '1'..'5', one token each
        self.backend = HFBackend(lm, prompt_format="judge")

    def _chat(self, prompt: str, prefill: str) -> str:
        messages = [
            {"role": "system", "content": self.config.system_prompt},
            {"role": "user", "content": prompt},
        ]
        return render_chat(self.lm.tokenizer, messages, prefill=prefill)

    def contexts(self, prompts: list[str], cache_path: str | Path | None) -> tuple[list, list]:
        """(text ending at the score position, the judge's generated reasoning) per prompt."""
        if self.config.score_only:
            return [self._chat(p, SCORE_LABEL + self.sep) for p in prompts], [""] * len(prompts)
        rendered = [self._chat(p, "#reason:") for p in prompts]
        config = self.config
        gen = GenerationConfig(max_new_tokens=config.max_new_tokens, batch_size=config.batch_size)
        reasoning = generate(
            self.backend, rendered, gen, cache_path=cache_path, desc=f"{self.judge_id} reasoning"
        )
        reasoning = ["#reason: " + r for r in reasoning]
        cut = [cut_at_score(r) for r in reasoning]
        contexts = [self._chat(p, c + self.sep) for p, c in zip(prompts, cut, strict=True)]
        return contexts, reasoning

    def score(
        self,
        prompts: list[str],
        cache_path: str | Path | None = None,
        groups: list[str] | None = None,
    ) -> list[dict]:
        """Per prompt: score (argmax), expected_score, score_probs, raw_judgment, reason.

        Prompts of one group (one usage policy) share their prefix computation."""
        contexts, reasoning = self.contexts(prompts, cache_path)
        groups = groups if groups is not None else [""] * len(prompts)
        keys = [item_key(self.judge_id, self.lm.revision, "judge-score", c, {}) for c in contexts]
        with Store(cache_path).resume(keys, self.judge_id) as todo:
            by_group: dict[str, list[int]] = {}  # unfinished items per group
            for i in todo:
                by_group.setdefault(groups[i], []).append(i)
            for rows in by_group.values():
                probs = label_probs(self.lm, [contexts[i] for i in rows], self.labels)
                for i, item_probs in zip(rows, probs, strict=True):
                    todo.save(i, {"judge": self.judge_id, "probs": item_probs})
        return [self._record(p, r) for p, r in zip(todo.values("probs"), reasoning, strict=True)]

    def _record(self, probs: list[float], reasoning: str) -> dict:
        mass = sum(probs)
        norm = [p / mass for p in probs] if mass > 0 else [0.2] * 5
        score = max(range(5), key=lambda i: norm[i]) + 1
        expected = sum((i + 1) * p for i, p in enumerate(norm))
        shown = " ".join(f"{p:.3f}" for p in norm)
        return {
            "score": score,
            "expected_score": expected,
            "score_probs": norm,
            "raw_judgment": f"{reasoning}\n[P('1'..'5') at the score position: {shown}]".lstrip(),
            "reason": f"argmax of P('1'..'5') at the score position "
            f"(mass {mass:.3f} of the vocabulary)",
            "score_mass": mass,
        }
