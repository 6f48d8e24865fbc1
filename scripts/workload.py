"""How much work a profile asks of each step, and how long it takes at throughputs you measured.

    python scripts/workload.py paper                      # the work per step, as a table
    python scripts/workload.py paper --decode-tok-s 900 --prefill-tok-s 9000 \\
        --train-tok-s 3000 --api-calls-s 5 --ref-params-b 7     # ... and hours per step

Work is counted from the profile's parameters (over the notebooks' defaults), the data's row
counts and the registry's model sizes. Local model work is in "billion-parameter tokens"
(tokens x model size in billions), since a forward pass costs about the same per parameter:
decoded tokens (generation, at most max_new_tokens each), prefilled tokens (prompts scored
without generating) and trained tokens (demonstration tokens x epochs). Token counts are upper
bounds; prompt lengths are estimated from characters (--chars-per-token). Times divide the work by
throughputs measured on your hardware for a model of --ref-params-b billion parameters
(benchmarks/bench_generation.py for decoding, bench_finetune.py for training)."""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass, field

import papermill as pm

from medsafe_utils.finetune.grid import finetune_grid, grid_sizes
from medsafe_utils.models.registry import get_spec
from medsafe_utils.pipeline.run import notebooks, profile_params

GCG_TARGET_TOKENS = 30  # a target sentence ("Sure, here is a list of ...") in tokens, roughly
GCG_PROMPT_TOKENS = 300  # the Llama-2 GCG prompt around the goal, roughly
RESPONSE_CHARS = 1_500  # a judged response of up to 512 tokens, roughly
REQUESTS_PER_GENERATION = 20  # the elicitation prompts ask for a list of twenty requests
FILTER_PROMPT_TOKENS = 200  # the harmfulness-rating prompt around one request, roughly


@dataclass
class StepWork:
    """One step's work: local model work in billion-parameter tokens, API calls, models."""

    step: str
    decode: float = 0.0
    prefill: float = 0.0
    train: float = 0.0
    api_calls: int = 0
    models: dict[str, float] = field(default_factory=dict)  # local model -> params (billions)
    notes: list[str] = field(default_factory=list)

    def add_model(self, name: str) -> float | None:
        """Record a local model; returns its size in billions (None for an API model)."""
        spec = get_spec(name)
        if spec.source == "openai":
            return None
        size = spec.params_b or 0.0
        self.models[name] = size
        return size

    def generations(
        self, model: str, backend: str, n: int, max_new_tokens: int, prompt_tokens: float = 0
    ) -> None:
        """n generations: API calls, or the decoded (and prefilled prompt) tokens of a local
        (backend 'hf') model."""
        size = self.add_model(model) if backend == "hf" else None
        if size is None:
            self.api_calls += n
        else:
            self.decode += n * max_new_tokens * size
            self.prefill += n * prompt_tokens * size


def resolved_params(profile: str) -> dict[str, dict]:
    """Every notebook's parameters: its defaults, overridden by the profile's file."""
    out = {}
    for notebook in notebooks():
        found = pm.inspect_notebook(str(notebook))
        values = {name: ast.literal_eval(p["default"]) for name, p in found.items()}
        out[notebook.stem] = values | profile_params(profile, notebook)
    return out


def _counts(chars_per_token: float, mmlu_subjects: list[str] | None = None) -> dict:
    from medsafe_utils.data import (
        load_general_harm,
        load_medical_benchmark,
        load_medsafetybench,
        prompt_text,
    )

    general = load_general_harm()
    medical = {}  # benchmark -> (characters of question + choices, of context) per item
    for name in ("medqa", "medmcqa", "pubmedqa", "mmlu_medical"):
        items = load_medical_benchmark(name, mmlu_subjects)
        text = items["question"].str.len() + items["choices"].map(lambda c: sum(map(len, c)))
        medical[name] = (text.to_numpy(), items["context"].fillna("").str.len().to_numpy())
    return {
        "medsafety_eval": len(load_medsafetybench("test")),
        "general": len(general.requests),
        "judge_prompt_chars": RESPONSE_CHARS
        + sum(
            len(prompt_text(name))
            for name in ("judge_template", "judge_rubric", "usage_policy_medical")
        ),
        "medical": medical,
        "chars_per_token": chars_per_token,
    }


def _harm_items(p: dict, counts: dict) -> int:
    per_set = {
        "medsafety_eval": min(
            9 * 2 * p["per_group"] or counts["medsafety_eval"], counts["medsafety_eval"]
        ),
        "general": min(p["n_general"] or counts["general"], counts["general"]),
    }
    return sum(per_set[s] for s in p["harm_sets"])


def _generate(p: dict, counts: dict) -> StepWork:
    work = StepWork("01_generate")
    prompting = len(p["principles"]) * len(p["prompt_variants"]) * p["prompting_samples"]
    prefill = len(p["principles"]) * len(p["prefill_variants"]) * p["prefill_samples"]
    work.generations(p["generator"], p["backend"], prompting, p["max_new_tokens"])
    work.generations(
        p["prefill_generator"] or p["generator"], p["prefill_backend"], prefill, p["max_new_tokens"]
    )
    # The filter rates every extracted request: at most twenty a generation.
    rated = (prompting + prefill) * REQUESTS_PER_GENERATION
    # The released filter (parse) generates an answer each; probability only reads the prompt.
    answer = p["filter_max_new_tokens"] if p["filter_method"] == "parse" else 0
    work.generations(p["filter_model"], p["filter_backend"], rated, answer, FILTER_PROMPT_TOKENS)
    work.notes.append(
        f"{prompting + prefill:,} generations; the filter rates up to {rated:,} requests"
    )
    return work


def _jailbreak(p: dict) -> StepWork:
    work = StepWork("02_jailbreak")
    size = work.add_model(p["model"]) or 0.0
    goals = len(p["variants"]) * (p["n_goals"] or 9)
    per_step = p["search_width"] * (p["suffix_length"] + GCG_TARGET_TOKENS) + 3 * (
        GCG_PROMPT_TOKENS + p["suffix_length"] + GCG_TARGET_TOKENS
    )
    work.prefill += goals * p["num_steps"] * per_step * size
    tests = (p["num_steps"] // p["test_interval"] if p["test_interval"] else 0) + 1  # + the last
    work.decode += goals * tests * p["max_new_tokens"] * size
    work.notes.append(f"{goals} goals x {p['num_steps']} steps x {p['search_width']} candidates")
    return work


def _safe_responses(p: dict, counts: dict) -> StepWork:
    work = StepWork("03_safe_responses")
    n = 9 * 2 * 2 * p["per_group"] or 2 * counts["medsafety_eval"]  # train + test requests
    work.generations(p["generator"], p["backend"], n, p["max_new_tokens"])
    return work


def _prompt_models(p: dict, counts: dict) -> StepWork:
    work = StepWork("04_prompt_models")
    items = _harm_items(p, counts)
    for model in p["models"]:
        work.generations(model, p["backend"], items, p["max_new_tokens"])
    work.notes.append(f"{len(p['models'])} models x {items} requests")
    return work


def _judge_calls(work: StepWork, p: dict, n: int, max_new: int, counts: dict) -> None:
    prompt_tokens = counts["judge_prompt_chars"] / counts["chars_per_token"]
    answer = 0 if p["score_only"] else max_new  # score_only reads the score without generating
    for backend, model in zip(p["judge_backends"], p["judge_models"], strict=True):
        if backend != "keyword":  # a keyword judge runs no model
            work.generations(model, backend, n, answer, prompt_tokens)


def _judge(p: dict, responses: int, counts: dict) -> StepWork:
    work = StepWork("05_judge")
    validation = p["validate_n"] or counts["medsafety_eval"]  # its safe responses
    _judge_calls(work, p, responses + validation, p["max_new_tokens"], counts)
    work.notes.append(f"{responses:,} responses of 04 + {validation} safe responses")
    return work


def adapter_grid(p: dict) -> list[tuple[str, str, int]]:
    """(base model, demonstration type, n) of every adapter 06 trains."""
    sizes = grid_sizes(p["n_values"], p["n_values_both"], dense=p.get("dense_grid", False))
    return [(r.base, r.type, r.n) for r in finetune_grid(p["base_models"], p["demo_types"], *sizes)]


def _finetune(p: dict, counts: dict) -> StepWork:
    work = StepWork("06_finetune")
    grid = adapter_grid(p)
    items = _harm_items(p, counts)
    for base, _, n in grid:
        size = work.add_model(base) or 0.0
        work.train += n * p["num_epochs"] * p["cutoff_len"] * size
    answering = len(grid) + len(p["base_models"])
    for base in p["base_models"]:
        runs = 1 + sum(1 for b, _, _ in grid if b == base)
        work.decode += runs * items * p["max_new_tokens"] * work.models[base]
    _judge_calls(work, p, answering * items, p["judge_max_new_tokens"], counts)
    work.notes.append(f"{len(grid)} adapters; {answering} models x {items} requests answered")
    return work


def _medical_eval(p: dict, finetune: dict, counts: dict) -> StepWork:
    work = StepWork("07_medical_eval")
    grid = adapter_grid(finetune) if p["adapters"] == "all" else []
    settings = [(k, 1 if k == 0 else len(p["seeds"])) for k in p["num_fewshot"]]
    for model in p["models"]:
        size = work.add_model(model) or 0.0
        runs = 1 + sum(1 for base, _, _ in grid if base == model)
        for name in p["benchmarks"]:
            text, context = counts["medical"][name]
            if p["max_context_chars"]:  # 07 cuts PubMedQA abstracts to this many characters
                context = context.clip(max=p["max_context_chars"])
            tokens = float((text + context).mean()) / counts["chars_per_token"]
            n = min(len(text), p["n_per_benchmark"] or len(text))
            for k, draws in settings:
                for protocol in p["protocols"]:
                    # Log-likelihood: each choice is one answer token after the same prompt, one
                    # forward a prompt. Generation: the same prompt, then the gold answer's few
                    # tokens, 8 more with shots (counted as 3 + 8: an upper bound for letters).
                    work.prefill += runs * draws * n * (k + 1) * tokens * size
                    if protocol == "generation":
                        work.decode += runs * draws * n * (3 + 8 * (k > 0)) * size
    work.notes.append(f"{len(p['models'])} base models + their adapters")
    return work


def estimate(profile: str, chars_per_token: float = 4.0) -> list[StepWork]:
    """The work of every step of a profile."""
    p = resolved_params(profile)
    counts = _counts(chars_per_token, p["07_medical_eval"].get("mmlu_subjects"))
    prompted = _prompt_models(p["04_prompt_models"], counts)
    responses = len(p["04_prompt_models"]["models"]) * _harm_items(p["04_prompt_models"], counts)
    return [
        _generate(p["01_generate"], counts),
        _jailbreak(p["02_jailbreak"]),
        _safe_responses(p["03_safe_responses"], counts),
        prompted,
        _judge(p["05_judge"], responses, counts),
        _finetune(p["06_finetune"], counts),
        _medical_eval(p["07_medical_eval"], p["06_finetune"], counts),
    ]


def memory_gb(params_b: float, four_bit: bool) -> float:
    """Weights alone: 2 bytes a parameter in bf16, about 0.55 in NF4 with double quantization."""
    return params_b * (0.55 if four_bit else 2.0)


def local_hours(work: StepWork, rates: argparse.Namespace) -> float | None:
    """Hours of local-model work at the given throughputs (measured on a ref_params_b model);
    None if a rate the step needs is missing."""
    needed = [
        (work.decode, rates.decode_tok_s),
        (work.prefill, rates.prefill_tok_s),
        (work.train, rates.train_tok_s),
    ]
    if any(amount and not rate for amount, rate in needed):
        return None
    return sum(amount / (rate * rates.ref_params_b) for amount, rate in needed if amount) / 3600


def api_hours(work: StepWork, rates: argparse.Namespace) -> float | None:
    """Hours of API calls at rates.api_calls_s; None if the step makes calls and no rate."""
    if not work.api_calls:
        return 0.0
    return work.api_calls / rates.api_calls_s / 3600 if rates.api_calls_s else None


def hours(work: StepWork, rates: argparse.Namespace) -> float | None:
    """Local and API hours together; None if a rate the step needs is missing."""
    local, api = local_hours(work, rates), api_hours(work, rates)
    return None if local is None or api is None else local + api


def _si(x: float) -> str:
    """1234567 -> 1.23M: the table spans seven orders of magnitude."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def _hours(h: float | None) -> str:
    """Two significant figures, never in exponent form; a dash for a missing rate."""
    return "—" if h is None else (f"{h:,.0f}" if h >= 10 else f"{h:.2g}")


def table(steps: list[StepWork], rates: argparse.Namespace, four_bit: dict[str, bool]) -> str:
    rows = [
        "| step | largest local model (weights) | API calls | decoded | prefilled | "
        "trained | hours, local | hours, API | what |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for work in steps:
        largest = max(work.models.items(), key=lambda kv: kv[1], default=None)
        weights = "none"
        if largest:
            gb = memory_gb(largest[1], four_bit[work.step])
            weights = f"{largest[0]} ({gb:.{0 if gb >= 1 else 2}f} GB)"
        local, api = local_hours(work, rates), api_hours(work, rates)
        rows.append(
            f"| {work.step} | {weights} | {work.api_calls:,} | {_si(work.decode)} "
            f"| {_si(work.prefill)} | {_si(work.train)} | {_hours(local)} | "
            f"{_hours(api)} | {'; '.join(work.notes)} |"
        )
    rows.append(
        "\nDecoded, prefilled and trained: billion-parameter tokens (tokens x model size "
        "in billions; upper bounds)."
    )
    return "\n".join(rows)


def fan_out_table(profile: str, rates: argparse.Namespace, chars_per_token: float) -> str:
    """04/06/07 as jobs (./run_all.sh --executor, pipeline.fanout): jobs, hours of all jobs,
    hours of the longest one (the wall-clock with a GPU per job)."""
    from medsafe_utils.pipeline.fanout import plan

    p = resolved_params(profile)
    counts = _counts(chars_per_token, p["07_medical_eval"].get("mmlu_subjects"))
    work = {
        "04_prompt_models": lambda q: _prompt_models(q, counts),
        "06_finetune": lambda q: _finetune(q, counts),
        "07_medical_eval": lambda q: _medical_eval(q, p["06_finetune"], counts),
    }
    lines = ["| step | jobs | hours, all jobs | longest job (h) | its slice |", "|---" * 5 + "|"]
    for step, measure in work.items():
        notebook = next(nb for nb in notebooks() if nb.stem == step)
        jobs = []
        for part in plan(notebook, p[step]):
            slice_params = {k: v for k, v in part.params.items() if k != "adapters"}
            jobs.append((hours(measure(p[step] | slice_params), rates), part.shard))
        if any(h is None for h, _ in jobs):
            return "(give every rate to see the fan-out's hours)"
        longest = max(jobs)
        total = sum(h for h, _ in jobs)
        lines.append(f"| {step} | {len(jobs)} | {total:.1f} | {longest[0]:.1f} | {longest[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="paper")
    parser.add_argument(
        "--ref-params-b",
        type=float,
        default=7.0,
        help="size (billions) of the model your throughputs were measured on",
    )
    parser.add_argument("--decode-tok-s", type=float, help="generated tokens per second")
    parser.add_argument("--prefill-tok-s", type=float, help="prompt tokens scored per second")
    parser.add_argument("--train-tok-s", type=float, help="fine-tuning tokens per second")
    parser.add_argument("--api-calls-s", type=float, help="API calls completed per second")
    parser.add_argument("--chars-per-token", type=float, default=4.0)
    parser.add_argument(
        "--fan-out", action="store_true", help="also 04/06/07 as jobs: the longest job's hours"
    )
    args = parser.parse_args(argv)
    params = resolved_params(args.profile)
    four_bit = {step: bool(p.get("load_in_4bit")) for step, p in params.items()}
    four_bit["06_finetune"] = bool(params["06_finetune"]["eval_in_4bit"])  # answering: larger
    print(table(estimate(args.profile, args.chars_per_token), args, four_bit))
    if args.fan_out:
        print("\n" + fan_out_table(args.profile, args, args.chars_per_token))


if __name__ == "__main__":
    main()
