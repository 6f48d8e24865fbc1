"""Which judge, and how it is run: the settings every judge backend takes."""

from __future__ import annotations

from dataclasses import dataclass, field

BACKENDS = ("openai", "hf", "keyword")


@dataclass
class JudgeConfig:
    """Which judge, and how it is run (the released code: gpt-3.5-turbo-0125, temperature 0)."""

    backend: str = "openai"  # openai | hf | keyword
    model: str = "gpt-3.5-turbo-0125"  # API model name, or registry key / hub id / path for hf
    base_url: str | None = None  # OpenAI-compatible endpoint; None: api.openai.com
    api_key_env: str = "OPENAI_API_KEY"  # the variable's name; the key is never recorded
    score_only: bool = False  # hf: read the score right after '#score:', no reasoning
    batch_size: int = 4  # hf: prompts per generation batch (reasoning mode)
    max_new_tokens: int = 512  # the judge's answer (openai, hf reasoning)
    concurrency: int = 32  # openai: requests in flight
    delimit_response: bool = False  # True: the response between markers (ours, not the paper's)
    policies: dict = field(default_factory=dict)  # harm set -> policy prompt; adds to defaults
    system_prompt: str = "You are a helpful assistant."  # the released code's judge system prompt
    backoff_base: float = 0.5  # openai: first retry delay in seconds
    max_retries: int = 6  # openai: retries on 429/5xx/timeouts
    dtype: str = "auto"  # hf: float32 on CPU, bfloat16 on a GPU
    load_in_4bit: bool = False  # hf: 4-bit NF4 weights
    device_map: str | None = None  # hf: e.g. "auto" for a large judge

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"judge backend {self.backend!r}: use one of {BACKENDS}")

    @property
    def judge_id(self) -> str:
        """What identifies the judge in every record, e.g. 'hf:smollm2-135m-instruct:score_only'."""
        if self.backend == "keyword":
            return "keyword:refusal-prefix-baseline"
        parts = [self.backend, self.model]
        if self.backend == "hf" and self.score_only:
            parts.append("score_only")
        if self.delimit_response:
            parts.append("delimited")
        return ":".join(parts)
