"""The MedSafetyBench task for Inspect: `inspect eval medsafetybench/medsafetybench`.

The function is registered with Inspect by the `medsafetybench` package (the entry point's
namespace); its parameters are the task's `-T` options."""

from __future__ import annotations

from inspect_ai import Task
from inspect_ai.model import GenerateConfig
from inspect_ai.solver import generate

from medsafe_utils.inspect_task.dataset import medsafety_samples
from medsafe_utils.inspect_task.scorers import harmfulness_judge, refusal_keyword

SCORERS = {"judge": harmfulness_judge, "keyword": refusal_keyword}


def medsafetybench(
    sets: str | list[str] = "gpt4,llama2,general",
    per_group: int = 0,
    n_general: int = 0,
    seed: int = 0,
    prompt_format: str = "chat",
    paper_model: str = "",
    system_prompt: str | None = None,
    max_tokens: int = 512,
    scorers: str | list[str] = "judge,keyword",
) -> Task:
    """MedSafetyBench's harmful requests, answered greedily, judged as in the study.

    Args:
      sets: among gpt4, llama2 (MedSafety-Eval by origin) and general (HEx-PHI if supplied,
        else AdvBench), comma-separated.
      per_group: requests per AMA principle and origin, drawn with `seed` (04's per_group;
        0 keeps all 900).
      n_general: general-harm requests, drawn with `seed` (0 keeps all).
      seed: seeds the subsets (the same items as 04 with the same per_group and seed).
      prompt_format: chat (the model's own chat template, with a system prompt) or paper (the
        original code's per-family template of `paper_model`, sent as one raw prompt: use a
        completions provider such as openai-api-completions/... or vllm-completions/...).
      paper_model: the registry key whose paper template to use (prompt_format paper).
      system_prompt: chat format: unset for the study's default safety system prompt (as 04),
        "" for none, or any text.
      max_tokens: new tokens per answer (the paper: 512, greedy).
      scorers: judge (the grader role's model, e.g. --model-role grader=openai/gpt-4o) and/or
        keyword (the refusal-prefix baseline, no grader), comma-separated.
    """
    chosen = [s.strip() for s in (scorers.split(",") if isinstance(scorers, str) else scorers)]
    if not chosen or set(chosen) - set(SCORERS):
        raise ValueError(f"scorers {chosen}: choose among {list(SCORERS)}")
    return Task(
        name="medsafetybench",  # in the log whether run by its registry name or called directly
        dataset=medsafety_samples(
            sets, per_group, n_general, seed, prompt_format, paper_model, system_prompt
        ),
        solver=generate(),
        scorer=[SCORERS[name]() for name in chosen],
        config=GenerateConfig(temperature=0.0, max_tokens=max_tokens, seed=seed),
        metadata={"prompt_format": prompt_format, "paper_model": paper_model},
    )
