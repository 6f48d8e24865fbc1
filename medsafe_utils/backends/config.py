"""Generation settings shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationConfig:
    """Greedy by default, as in the paper (max 512 new tokens)."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8  # local backend: prompts per forward pass
    share_prefix: bool = True  # local backend: encode the prefix all prompts of a batch share once
    concurrency: int = 16  # API backend: requests in flight
    # vLLM's / OpenAI's frequency_penalty: each logit minus penalty x its token's count so far in
    # the output (not the prompt); 0 leaves the logits alone
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()  # the output ends before the first of these strings
    strip: bool = True  # strip white space around the output (False: as generated)
    # True: the model's own generation settings decide how to decode (a local model's
    # generation_config.json, an API server's defaults), as a script that calls
    # model.generate(ids, max_new_tokens=...) gets; do_sample, temperature and top_p are unused.
    model_defaults: bool = False

    def cache_settings(self) -> dict:
        """The settings that change an output (batching and concurrency do not).

        Settings left at their defaults are not listed, so older cache keys stay valid."""
        if self.model_defaults:
            settings = {"max_new_tokens": self.max_new_tokens, "generation": "model"}
            settings["seed"] = self.seed
        else:
            settings = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample and not self.model_defaults:
            settings |= {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        if self.frequency_penalty:
            settings["frequency_penalty"] = self.frequency_penalty
        if self.stop:
            settings["stop"] = list(self.stop)
        if not self.strip:
            settings["strip"] = False
        return settings


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """The text before the first occurrence of any stop string (all of it if none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]
