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

    def cache_settings(self) -> dict:
        """The settings that change an output (batching and concurrency do not)."""
        settings = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            settings |= {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        return settings
