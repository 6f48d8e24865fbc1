"""Every benchmark runs at toy size (so it cannot rot) and exits non-zero when a claim fails.

Each benchmark's `main(argv)` runs in this process; its last line must be `RESULT <name> ...`
with the keys BENCHMARKS.md quotes. A second test per benchmark perturbs one side (a peer that
answers differently) and expects exit code 1 with that claim named in `failed=`."""

from __future__ import annotations

import os
import sys

import pytest

from benchmarks import harness
from benchmarks.harness import Bench, Measured, compare, parse_result, rotations


def run_main(main, argv: list[str], capsys) -> tuple[int, str, dict[str, str]]:
    """(exit code, name, RESULT pairs) of one benchmark run."""
    code = 0
    try:
        main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    name, result = parse_result(capsys.readouterr().out)
    return code, name, result


def assert_keys(result: dict[str, str], keys: list[str]) -> None:
    missing = [k for k in keys if k not in result]
    assert not missing, f"RESULT lacks {missing}: {result}"


# ---------------------------------------------------------------- the harness itself


def test_rotations_start_each_side_first_in_turn():
    assert rotations(["a", "b", "c"], 4) == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_compare_warms_up_rotates_and_takes_measured_time():
    calls = []
    sides = {
        "a": lambda: calls.append("a") or "out-a",
        "b": lambda: calls.append("b") or Measured(2.5, "out-b"),
    }
    runs = compare(sides, repeats=3, warmups={"a": lambda: calls.append("warm-a")})
    assert calls == ["warm-a", "b", "a", "b", "b", "a", "a", "b"]
    assert [r.output for r in runs["a"]] == ["out-a"] * 3
    assert [r.seconds for r in runs["b"]] == [2.5] * 3  # the side's own measure


def test_figures_report_median_and_range():
    assert harness.figures("x", [3.0, 1.0, 2.0]) == {"x": "2.00", "x_range": "1.00..3.00"}
    assert harness.fmt(33811.2, 4) == "33811"  # never exponent notation


def test_finish_exits_1_on_a_failed_claim(capsys):
    bench = Bench("bench_t")
    bench.check("fine", True)
    bench.check("same_outputs", False, "1 differs")
    with pytest.raises(SystemExit) as stop:
        bench.finish(a=1)
    assert stop.value.code == 1
    name, result = parse_result(capsys.readouterr().out)
    assert (name, result) == ("bench_t", {"a": "1", "failed": "same_outputs"})


# ---------------------------------------------------------------- the benchmarks at toy size


@pytest.mark.server
def test_bench_judge(capsys):
    from benchmarks import bench_judge

    argv = ["--n", "20", "--n-sequential", "4", "--repeats", "3"]
    code, name, result = run_main(bench_judge.main, argv, capsys)
    assert (code, name, result["failed"]) == (0, "bench_judge", "none")
    assert_keys(result, ["ours_items_s", "sequential_items_s", "ratio", "ratio_range"])
    assert (result["lost"], result["duplicated"]) == ("0", "0")


@pytest.mark.server
def test_bench_judge_catches_a_mixed_up_item(capsys, monkeypatch):
    from benchmarks import bench_judge

    items = bench_judge.items

    def relabelled(n):  # the last response carries item 0's id: item 0 twice, the last lost
        frame = items(n)
        frame.loc[n - 1, "item_id"] = 0
        return frame

    monkeypatch.setattr(bench_judge, "items", relabelled)
    argv = ["--n", "6", "--n-sequential", "3", "--repeats", "1"]
    code, _, result = run_main(bench_judge.main, argv, capsys)
    assert code == 1
    assert result["failed"] == "none_lost,none_duplicated"


@pytest.mark.server
def test_bench_judge_catches_a_wrong_score(capsys, monkeypatch):
    from benchmarks import bench_judge

    items = bench_judge.items

    def misnamed(n):  # item 2's response names item 3: judged once, with item 3's score
        frame = items(n)
        frame.loc[2, "response"] = "bench item 3: Sure, here it is again."
        return frame

    assert bench_judge.expected_score(2) != bench_judge.expected_score(3)
    monkeypatch.setattr(bench_judge, "items", misnamed)
    argv = ["--n", "6", "--n-sequential", "3", "--repeats", "1"]
    code, _, result = run_main(bench_judge.main, argv, capsys)
    assert (code, result["failed"], result["duplicated"]) == (1, "none_lost", "0")
    # each run loses item 2 (warm-ups are not counted): ours once, sequential once
    assert result["lost"] == "2"


@pytest.mark.slow
def test_bench_generation(capsys):
    from benchmarks import bench_generation

    argv = ["--n", "3", "--batch-size", "2", "--max-new-tokens", "4", "--repeats", "2"]
    code, name, result = run_main(bench_generation.main, argv, capsys)
    assert (code, name, result["failed"]) == (0, "bench_generation", "none")
    assert_keys(result, ["ours_tok_s", "baseline_tok_s", "ratio", "ratio_range", "prefill_tok_s"])
    assert result["same_outputs"] == "1.00"


@pytest.mark.slow
def test_bench_generation_catches_other_outputs(capsys, monkeypatch):
    from benchmarks import bench_generation

    baseline = bench_generation.baseline_outputs
    monkeypatch.setattr(
        bench_generation,
        "baseline_outputs",
        lambda *a: [t + " (perturbed)" for t in baseline(*a)],
    )
    argv = ["--n", "2", "--batch-size", "2", "--max-new-tokens", "2", "--repeats", "1"]
    code, _, result = run_main(bench_generation.main, argv, capsys)
    assert (code, result["failed"], result["same_outputs"]) == (1, "same_outputs", "0.00")


@pytest.mark.slow
def test_bench_generation_catches_unrepeatable_outputs(capsys, monkeypatch):
    from benchmarks import bench_generation

    ours, calls = bench_generation.ours_outputs, []

    def drifting(*a):  # the warm-up and the first timed run agree with the baseline, then drift
        calls.append(1)
        texts = ours(*a)
        return texts if len(calls) <= 2 else [t + " (drift)" for t in texts]

    monkeypatch.setattr(bench_generation, "ours_outputs", drifting)
    argv = ["--n", "2", "--batch-size", "2", "--max-new-tokens", "2", "--repeats", "2"]
    code, _, result = run_main(bench_generation.main, argv, capsys)
    assert (code, result["failed"], result["same_outputs"]) == (1, "repeatable", "1.00")


MEDEVAL = ["--model", "tiny-random", "--items", "3", "--batch-size", "2"]


def test_bench_medeval(capsys):
    from benchmarks import bench_medeval

    code, name, result = run_main(bench_medeval.main, [*MEDEVAL, "--repeats", "2"], capsys)
    assert (code, name, result["failed"]) == (0, "bench_medeval", "none")
    assert_keys(result, ["ours_items_s", "lmeval_items_s", "naive_items_s", "ratio", "accuracy"])
    assert result["same_choices"] == "True"


def test_bench_medeval_catches_other_choices(capsys, monkeypatch):
    import benchmarks.reference.naive as naive
    from benchmarks import bench_medeval

    scorer = naive.naive_loglikelihoods
    monkeypatch.setattr(  # a peer scoring the choices in reverse order
        naive, "naive_loglikelihoods", lambda *a: [row[::-1] for row in scorer(*a)]
    )
    code, _, result = run_main(bench_medeval.main, [*MEDEVAL, "--repeats", "1"], capsys)
    assert (code, result["failed"], result["same_choices"]) == (1, "same_choices", "False")


FINETUNE = ["--n", "8", "--batch-size", "8", "--cutoff-len", "32", "--no-4bit"]


@pytest.mark.slow
def test_bench_finetune(capsys):
    from benchmarks import bench_finetune

    code, name, result = run_main(bench_finetune.main, [*FINETUNE, "--repeats", "2"], capsys)
    assert (code, name, result["failed"]) == (0, "bench_finetune", "none")
    assert_keys(result, ["ours_tok_s", "original_tok_s", "ratio", "ratio_range", "ratio_cpu"])
    assert abs(float(result["ours_loss"]) / float(result["original_loss"]) - 1) <= 1e-3


@pytest.mark.slow
def test_bench_finetune_catches_another_loss(capsys, monkeypatch):
    from benchmarks import bench_finetune

    # a peer that trains on shorter demonstrations: another loss for the same items
    monkeypatch.setitem(
        bench_finetune.ARMS, "ours", {**bench_finetune.ARMS["ours"], "cutoff_len": 16}
    )
    code, _, result = run_main(bench_finetune.main, [*FINETUNE, "--repeats", "1"], capsys)
    assert (code, result["failed"]) == (1, "same_loss")


DEDUP = ["--n", "40", "--batch-size", "16"]


@pytest.fixture
def small_dedup(monkeypatch):
    """bench_dedup on 200 of the Llama-3 requests (its exact pass covers them all)."""
    from benchmarks import bench_dedup

    sample = bench_dedup.load_llama3_requests().head(200)
    monkeypatch.setattr(bench_dedup, "load_llama3_requests", lambda: sample)
    return bench_dedup


def test_bench_dedup(capsys, small_dedup):
    code, name, result = run_main(small_dedup.main, [*DEDUP, "--repeats", "3"], capsys)
    assert (code, name, result["failed"]) == (0, "bench_dedup", "none")
    assert_keys(result, ["sentences_per_s", "sentences_per_s_range", "near_dup_rate"])


def test_bench_dedup_catches_unstable_embeddings(capsys, monkeypatch, small_dedup):
    embed, calls = small_dedup.embed, []

    def drifting(texts, *a, **k):  # each call drifts 1e-3 further
        calls.append(1)
        return embed(texts, *a, **k) + 1e-3 * len(calls)

    monkeypatch.setattr(small_dedup, "embed", drifting)
    code, _, result = run_main(small_dedup.main, [*DEDUP, "--repeats", "2"], capsys)
    assert (code, result["failed"]) == (1, "same_vectors")


def test_bench_dedup_catches_unstable_near_duplicates(capsys, monkeypatch, small_dedup):
    import dataclasses

    deduplicate, calls = small_dedup.deduplicate, []

    def unstable(*a, **k):  # the second timed pass flags one more request
        calls.append(1)
        result = deduplicate(*a, **k)
        if len(calls) < 3:
            return result
        near = result.near.copy()
        near[int(result.keep.argmax())] = True
        return dataclasses.replace(result, near=near)

    monkeypatch.setattr(small_dedup, "deduplicate", unstable)
    code, _, result = run_main(small_dedup.main, [*DEDUP, "--repeats", "2"], capsys)
    assert (code, result["failed"]) == (1, "same_near_duplicates")


@pytest.fixture
def small_gcg(monkeypatch):
    """bench_gcg with 8 candidates of 8 top tokens a step (toy size)."""
    from benchmarks import bench_gcg

    monkeypatch.setattr(bench_gcg, "WIDTH", 8)
    monkeypatch.setattr(bench_gcg, "TOPK", 8)
    return bench_gcg


@pytest.mark.slow
def test_bench_gcg(capsys, small_gcg):
    argv = ["--only", "ours", "original", "--seeds", "0", "1", "--steps", "1"]
    code, name, result = run_main(small_gcg.main, argv, capsys)
    assert (code, name, result["failed"]) == (0, "bench_gcg", "none")
    assert_keys(result, ["ours_s_step", "ours_s_step_range", "original_s_step", "ours_loss"])
    assert float(result["objective_rel_diff"]) <= 1e-4


@pytest.mark.slow
def test_bench_gcg_catches_another_objective(capsys, small_gcg, monkeypatch):
    target_loss = small_gcg.original_target_loss
    monkeypatch.setattr(small_gcg, "original_target_loss", lambda *a: 1.01 * target_loss(*a))
    argv = ["--only", "ours", "--seeds", "0", "--steps", "1"]
    code, _, result = run_main(small_gcg.main, argv, capsys)
    assert (code, result["failed"]) == (1, "same_objective")


@pytest.mark.slow
@pytest.mark.parametrize("claim", ["nanogcg_same_prompt", "nanogcg_same_model"])
def test_bench_gcg_catches_a_nanogcg_worker_on_another_prompt_or_model(
    capsys, small_gcg, monkeypatch, smollm2, claim
):
    """The nanoGCG worker (its own venv) is stood in for by one that reports the prompt and the
    first logits it sees: ours, computed here, but for the one perturbed."""
    import torch

    from medsafe_utils.data import load_adv_ama
    from medsafe_utils.jailbreak.prompt import build_prompt

    pair = load_adv_ama("tutorial").iloc[0]
    parts = build_prompt(smollm2.tokenizer, pair.goal, pair.target)
    template = parts.before_text + "{optim_str}" + parts.after_text
    with torch.no_grad():
        ids = torch.tensor([small_gcg.CHECK_IDS])
        logits = smollm2.model(input_ids=ids).logits[0, -1, :8].tolist()
    if claim == "nanogcg_same_prompt":  # e.g. a space before the suffix
        template = template.replace("{optim_str}", " {optim_str}")
    else:  # e.g. rope_theta read as 10000: logits beyond the 1e-3 tolerance
        logits = [x + 2e-3 for x in logits]

    class Worker:
        def __init__(self, spec):
            self.hello = {"ready": True, "check_logits": logits, "template": template}

        def attack(self, seed, steps):
            return {"losses": [1.0], "best_loss": 1.0, "wall": [0.1], "cpu": [0.1]}

        def close(self):
            pass

    monkeypatch.setattr(small_gcg, "NanoGCG", Worker)
    argv = ["--only", "ours", "nanogcg", "--seeds", "0", "--steps", "1"]
    code, _, result = run_main(small_gcg.main, argv, capsys)
    assert (code, result["failed"]) == (1, claim)


@pytest.mark.slow
def test_bench_gpu_tiny_on_cpu(capsys):
    from benchmarks import bench_gpu

    code, name, result = run_main(bench_gpu.main, ["--shape", "tiny", "--repeats", "1"], capsys)
    assert (code, name, result["failed"]) == (0, "bench_gpu", "none")
    assert_keys(result, ["gcg_s_step", "decode_ms_step_b8", "qlora_tok_s", "qlora_fast_loss"])
    assert result["gcg_nf4_s_step"] == "nan"  # NF4 needs CUDA


@pytest.mark.slow
def test_bench_gpu_catches_another_loss(capsys, monkeypatch):
    from benchmarks import bench_gpu

    train = bench_gpu.train

    def perturbed(config, demos):  # the fast arm (no checkpointing) reports another first loss
        result = train(config, demos)
        if not config.gradient_checkpointing:
            result.loss_curve[0]["loss"] *= 1.01
        return result

    monkeypatch.setattr(bench_gpu, "train", perturbed)
    argv = ["--shape", "tiny", "--parts", "qlora", "--repeats", "1"]
    code, _, result = run_main(bench_gpu.main, argv, capsys)
    assert (code, result["failed"]) == (1, "qlora_same_loss")


@pytest.mark.slow
def test_bench_gpu_catches_a_sliced_head_off_the_logits(capsys, monkeypatch):
    """The CPU's float32 claim; sliced_head_nf4 (and _bf16) run only with CUDA."""
    from benchmarks import bench_gpu

    class OffByOne(bench_gpu.TargetLoss):  # the sliced head's losses 1e-2 off the logits'
        def _candidate_loss(self, outputs):
            loss, match = super()._candidate_loss(outputs)
            return (loss + 1e-2, match) if self.head is not None else (loss, match)

    monkeypatch.setattr(bench_gpu, "TargetLoss", OffByOne)
    argv = ["--shape", "tiny", "--parts", "gcg", "--repeats", "1"]
    code, _, result = run_main(bench_gpu.main, argv, capsys)
    assert (code, result["failed"]) == (1, "sliced_head_float32")


WORKERS = ["--model", "tiny-random", "--workers", "2", "--repeats", "1"]


def _jobs_printing(code: str):
    """A stand-in for bench_workers' job: a Python process that prints what `code` evaluates to
    (a model's job imports torch: seconds a process, each of the seven a run starts)."""
    return lambda model, prompts, tokens: [sys.executable, "-c", f"import os; print({code})"]


@pytest.mark.slow
def test_bench_workers(capsys, monkeypatch):
    from benchmarks import bench_workers

    # the job itself, here: the same tokens twice
    assert bench_workers.job("tiny-random", 2, 4) == bench_workers.job("tiny-random", 2, 4)
    monkeypatch.setattr(bench_workers, "command", _jobs_printing("'same digest'"))
    code, name, result = run_main(bench_workers.main, WORKERS, capsys)
    assert (code, name, result["failed"]) == (0, "bench_workers", "none")
    assert_keys(result, ["serial_s", "all_cores_s", "shared_s", "ratio_shared", "ratio_all_cores"])
    assert result["threads_shared"] == str(max(1, (os.cpu_count() or 1) // 2))


def test_bench_workers_catches_a_job_that_decodes_otherwise(capsys, monkeypatch):
    from benchmarks import bench_workers

    # the shared side's jobs answer otherwise: they print the threads they were given
    threads = _jobs_printing("os.environ.get('OMP_NUM_THREADS')")
    monkeypatch.setattr(bench_workers, "command", threads)
    code, _, result = run_main(bench_workers.main, WORKERS, capsys)
    assert (code, result["failed"]) == (1, "same_outputs")


SWEEP = ["--model", "tiny-random", "--per-group", "1", "--n-general", "2"]
SWEEP += ["--max-new-tokens", "2", "--split-n", "100", "--micro-batch-size", "8"]


@pytest.mark.slow
def test_sweep_teach_at_toy_size(capsys):
    from benchmarks import sweep_teach

    argv = [*SWEEP, "--settings", "med:8:2:0.001"]
    code, name, result = run_main(sweep_teach.main, argv, capsys)
    assert (code, name, result["failed"]) == (0, "sweep_teach", "none")
    assert_keys(result, ["base_medsafety_eval", "base_advbench", "med_n8_e2_lr0.001"])


@pytest.mark.slow
def test_sweep_teach_catches_a_loss_that_did_not_fall(capsys):
    from benchmarks import sweep_teach

    # a learning rate too small to move a float32 weight: the eval loss stays where it was
    argv = [*SWEEP, "--settings", "med:8:2:1e-30"]
    code, _, result = run_main(sweep_teach.main, argv, capsys)
    assert (code, result["failed"]) == (1, "med_n8_e2_lr1e-30_loss_fell")
