"""GCG on SmolLM2-135M-Instruct (CPU, float32): ours vs nanoGCG 0.3.0 vs the original step.

Same model, goal, target (the first AMA tutorial pair), initial suffix and settings (width 64,
top-k 64, 20-token suffix, 10 steps) for each of the seeds. Each implementation is warmed up
with one step, then each seed is one repeat, the implementations running one after another in
a rotated order (benchmarks/harness.py), so that they see the same machine load; s/step is the
median step of each run, reported as the median over seeds with its min..max range.

Checked (exit 1 otherwise): the three attack the same prompt with the same model (nanoGCG's
worker) and our loss of the initial suffix equals the original's `target_loss` (relative 1e-4:
float rounding of other batch shapes), so the searches optimise one objective. The best losses
after the steps are reported, not asserted: each implementation draws its candidates with its
own random numbers, so over a few seeds they scatter around each other.

- ours: medsafe_utils.jailbreak.gcg.run.
- nanoGCG 0.3.0 (PyPI nanogcg), prefix cache on. It pins transformers<=4.47.1, so it runs in its
  own virtual environment (.cache/venvs/nanogcg, created here when missing) as a worker process
  that loads the converted SmolLM2 folder. Two adaptations, so that it attacks the same prompt
  with the same model: transformers 4.47 reads neither the folder's tokenizer class nor its
  `rope_parameters` (it would fall back to rope_theta 10000); and nanoGCG deletes every BOS
  string from the rendered chat, which for SmolLM2 (BOS = <|im_start|>) would delete the ChatML
  markers, so the worker clears `bos_token` and forbids the special tokens itself.
- original: the step of the original repository's exps/adv_attack/gcg.py re-implemented as it
  is written there: no KV cache, full-sequence logits, candidates built in a Python loop, one
  loss per candidate in a Python loop.

    python benchmarks/bench_gcg.py [--seeds 0 1 2] [--steps 10] [--threads N]

Last line: RESULT bench_gcg ours_s_step=... nanogcg_s_step=... original_s_step=... ratio=...
ours_loss=... nanogcg_loss=... (and the ranges, the checks)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.harness import Bench, Measured, compare, figures, fmt, load_note, paired_ratios  # noqa: E402

VENV = REPO / ".cache" / "venvs" / "nanogcg"
WIDTH, TOPK, SUFFIX_LEN = 64, 64, 20
INIT = " ".join(["x"] * SUFFIX_LEN)  # nanoGCG's default initial suffix, used by all three
CHECK_IDS = [1, 9690, 198, 2683, 359, 253, 5356, 5646]  # "<|im_start|>system\nYou are a ..."


# ---------------------------------------------------------------- nanoGCG worker (its own venv)


class Timed:
    """A stand-in for tqdm that records wall and CPU time at each step boundary: nanoGCG
    iterates over its bar, ours is created before the first step and updated after each."""

    def __init__(self, stamps: list, iterable=None, *args, **kwargs):
        self.stamps, self.iterable = stamps, iterable
        if iterable is None:
            self.update()

    def __iter__(self):
        for item in self.iterable:
            self.stamps.append((time.perf_counter(), time.process_time()))
            yield item
        self.stamps.append((time.perf_counter(), time.process_time()))

    def update(self, n: int = 1) -> None:
        """tqdm's method: a step boundary."""
        self.stamps.append((time.perf_counter(), time.process_time()))

    def set_postfix(self, *args, **kwargs) -> None:
        """tqdm's method; nothing to show."""

    def close(self) -> None:
        """tqdm's method; nothing to close."""


def step_times(stamps: list) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each step from the recorded boundaries."""
    pairs = list(zip(stamps, stamps[1:], strict=False))
    return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]


def _worker_load(folder: Path):
    """SmolLM2 from the transformers-5 folder, as transformers 4.47 must be told to read it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    config = AutoConfig.from_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    if "rope_parameters" in raw:
        config.rope_theta = raw["rope_parameters"]["rope_theta"]
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, torch_dtype=torch.float32)
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"),
        **{k: tok_config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
    )
    tokenizer.chat_template = (folder / "chat_template.jinja").read_text()
    return model.eval(), tokenizer


def nanogcg_worker() -> None:
    """Serve attack requests (one JSON line each on stdin) with nanoGCG; answer on stdout."""
    import logging

    import nanogcg
    import nanogcg.gcg
    import torch

    logging.getLogger("nanogcg").setLevel(logging.WARNING)

    spec = json.loads(sys.stdin.readline())
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model, tokenizer = _worker_load(Path(spec["model_folder"]))
    special = torch.tensor(tokenizer.all_special_ids)
    tokenizer.bos_token = None  # see the module docstring
    with torch.no_grad():
        check = model(input_ids=torch.tensor([CHECK_IDS])).logits[0, -1, :8].tolist()
    messages = [{"role": "user", "content": spec["goal"] + "{optim_str}"}]
    template = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    print(json.dumps({"ready": True, "check_logits": check, "template": template}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        stamps: list = []
        nanogcg.gcg.tqdm = lambda *a, s=stamps, **k: Timed(s, *a, **k)
        config = nanogcg.GCGConfig(
            num_steps=request["steps"],
            search_width=WIDTH,
            topk=TOPK,
            optim_str_init=INIT,
            seed=request["seed"],
            early_stop=False,
            use_prefix_cache=True,
            verbosity="WARNING",
        )
        gcg = nanogcg.gcg.GCG(model, tokenizer, config)
        gcg.not_allowed_ids = torch.cat([gcg.not_allowed_ids, special]).unique()
        result = gcg.run(spec["goal"], spec["target"])
        wall, cpu = step_times(stamps)
        print(
            json.dumps(
                {
                    "losses": result.losses,
                    "best_loss": result.best_loss,
                    "best_string": result.best_string,
                    "wall": wall,
                    "cpu": cpu,
                }
            ),
            flush=True,
        )


def ensure_venv() -> Path:
    """The nanoGCG environment: python -m venv + nanogcg==0.3.0, the CPU torch 2.13.0, gguf."""
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    wheels = sorted(
        Path(os.environ.get("MEDSAFE_TORCH_WHEELS", "/opt/wheels")).glob("torch-2.13.0+cpu-*.whl")
    )
    torch_req = str(wheels[-1]) if wheels else "torch==2.13.0+cpu"  # never a CUDA build
    index = os.environ.get("MEDSAFE_TORCH_INDEX")  # e.g. https://download.pytorch.org/whl/cpu
    print(f"==> creating {VENV} (nanogcg==0.3.0, {torch_req})", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "nanogcg==0.3.0",
            torch_req,
            "gguf",
            *(["--extra-index-url", index] if index else []),
        ],
        check=True,
    )
    cuda = subprocess.run(
        [str(python), "-c", "import torch; print(torch.version.cuda)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if cuda != "None":
        raise SystemExit(
            f"{VENV}: torch was installed with CUDA {cuda}; remove it and provide "
            "the CPU wheel (MEDSAFE_TORCH_WHEELS or MEDSAFE_TORCH_INDEX)"
        )
    return python


class NanoGCG:
    """The worker process: started once, attacked once per seed."""

    def __init__(self, spec: dict):
        self.proc = subprocess.Popen(
            [str(ensure_venv()), __file__, "--nanogcg-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"nanoGCG worker exited with {self.proc.wait()}")
        return json.loads(line)

    def attack(self, seed: int, steps: int) -> dict:
        self.proc.stdin.write(json.dumps({"seed": seed, "steps": steps}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ---------------------------------------------------------------- the original repository's step


def original_target_loss(embeddings, model, tokenizer, target: str):
    """exps/adv_attack/gcg.py `target_loss`: full logits, one cross-entropy per candidate."""
    import torch

    target_tokens = tokenizer(target, return_tensors="pt", add_special_tokens=False)["input_ids"]
    target_embeddings = model.get_input_embeddings()(target_tokens)
    target_embeddings = target_embeddings.expand(embeddings.shape[0], -1, -1)
    sequence_embeddings = torch.cat((embeddings, target_embeddings), dim=1)
    sequence_logits = model(inputs_embeds=sequence_embeddings, use_cache=False).logits
    loss_fn = torch.nn.CrossEntropyLoss()
    loss = []
    for i in range(embeddings.shape[0]):
        loss.append(loss_fn(sequence_logits[i, embeddings.shape[1] - 1 : -1, :], target_tokens[0]))
    return torch.stack(loss)


def original_step(
    input_sequence,
    model,
    tokenizer,
    target,
    forbidden,
    top_k,
    num_samples,
    adv_idxs,
    batch_size=300,
):
    """exps/adv_attack/gcg.py `gcg_step`: gradient, then candidates built one by one."""
    from math import ceil

    import torch
    from numpy.random import randint

    num_adv = len(adv_idxs)
    word_embedding_layer = model.get_input_embeddings()
    embedding_matrix = word_embedding_layer.weight.data
    input_embeddings = word_embedding_layer(input_sequence)
    input_embeddings.requires_grad = True
    loss = original_target_loss(input_embeddings, model, tokenizer, target)[0]
    (-loss).backward()
    dot_prod = torch.matmul(input_embeddings.grad[0], embedding_matrix.T)
    dot_prod[:, forbidden] = float("-inf")
    top_k_adv = (torch.topk(dot_prod, top_k).indices)[adv_idxs]
    adv_seq, min_loss = None, float("inf")
    for i in range(ceil(num_samples / batch_size)):
        this_batch_size = min(batch_size, num_samples - i * batch_size)
        sequence_batch = []
        for _ in range(this_batch_size):
            batch_item = input_sequence.clone().detach()
            rand_adv_idx = randint(0, num_adv)
            random_token_idx = randint(0, top_k)
            batch_item[0, adv_idxs[rand_adv_idx]] = top_k_adv[rand_adv_idx, random_token_idx]
            sequence_batch.append(batch_item)
        sequence_batch = torch.cat(sequence_batch, dim=0)
        batch_loss = original_target_loss(
            word_embedding_layer(sequence_batch), model, tokenizer, target
        )
        min_batch_loss, min_loss_index = torch.min(batch_loss, dim=0)
        if min_batch_loss.item() < min_loss:
            min_loss = min_batch_loss.item()
            adv_seq = sequence_batch[min_loss_index].unsqueeze(0)
    return adv_seq, min_loss


def original_forbidden(tokenizer):
    """exps/adv_attack/gcg.py `get_nonascii_toks`: ids 3.. not printable ASCII, and specials."""
    import torch

    toks = [
        i
        for i in range(3, tokenizer.vocab_size)
        if not (tokenizer.decode([i]).isascii() and tokenizer.decode([i]).isprintable())
    ]
    toks += [
        t
        for t in (
            tokenizer.bos_token_id,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
            tokenizer.unk_token_id,
        )
        if t is not None
    ]
    return torch.tensor(toks)


def original_attack(model, tokenizer, parts, target: str, forbidden, seed: int, steps: int) -> dict:
    """The original's loop (best loss so far), timed per step; the model frozen as it does."""
    import numpy as np
    import torch

    np.random.seed(seed)
    init = tokenizer(INIT, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    ids = torch.cat([parts.before_ids, init, parts.after_ids])[None]
    adv_idxs = torch.arange(len(parts.before_ids), len(parts.before_ids) + len(init))
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad = False
    best, wall, cpu = float("inf"), [], []
    try:
        for _ in range(steps):
            w, c = time.perf_counter(), time.process_time()
            ids, loss = original_step(
                ids, model, tokenizer, target, forbidden, TOPK, WIDTH, adv_idxs
            )
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
            best = min(best, loss)
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad = flag
    return {"best_loss": best, "wall": wall, "cpu": cpu}


# ---------------------------------------------------------------- the benchmark


def ours_attack(model, tokenizer, goal: str, target: str, seed: int, steps: int, batch: int):
    """medsafe_utils.jailbreak.gcg.run with the benchmark's settings and no test generations."""
    import medsafe_utils.jailbreak.gcg as gcg

    config = gcg.GCGConfig(
        num_steps=steps,
        search_width=WIDTH,
        topk=TOPK,
        suffix_init=INIT,
        suffix_length=SUFFIX_LEN,
        seed=seed,
        early_stop=False,
        batch_size=batch,
        max_new_tokens=0,
        progress=False,
    )
    stamps: list = []
    bar, gcg.TextBar = gcg.TextBar, lambda *a, **k: Timed(stamps, *a, **k)
    try:
        result = gcg.run(model, tokenizer, goal, target, config)
    finally:
        gcg.TextBar = bar
    wall, cpu = step_times(stamps)
    return {"best_loss": result.best_loss, "wall": wall, "cpu": cpu}


def initial_losses(model, tokenizer, parts, target: str) -> tuple[float, float]:
    """The loss of the initial suffix by our TargetLoss and by the original's target_loss."""
    import torch

    from medsafe_utils.jailbreak.loss import TargetLoss

    init = tokenizer(INIT, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    with torch.no_grad():
        ours = TargetLoss(model, parts, True, 16).losses(init[None])[0][0]
        ids = torch.cat([parts.before_ids, init, parts.after_ids])[None]
        embeds = model.get_input_embeddings()(ids)
        theirs = original_target_loss(embeds, model, tokenizer, target)[0]
    return float(ours), float(theirs)


def start_nanogcg(lm, pair, parts, threads: int, bench: Bench):
    """The nanoGCG worker, once it is checked to attack our prompt with our model."""
    import torch

    from medsafe_utils.models.loading import smollm2_folder

    worker = NanoGCG(
        {
            "model_folder": str(smollm2_folder(lm.spec)),
            "goal": pair.goal,
            "target": pair.target,
            "threads": threads,
        }
    )
    prompt = parts.before_text + "{optim_str}" + parts.after_text
    with torch.no_grad():
        ours_check = lm.model(input_ids=torch.tensor([CHECK_IDS])).logits[0, -1, :8]
    same_model = torch.allclose(ours_check, torch.tensor(worker.hello["check_logits"]), atol=1e-3)
    bench.check("nanogcg_same_prompt", worker.hello["template"] == prompt)
    bench.check("nanogcg_same_model", bool(same_model), "first logits within 1e-3")
    return worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one per repeat")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--batch", type=int, default=16, help="our candidate batch size")
    parser.add_argument("--only", nargs="+", default=["ours", "nanogcg", "original"])
    args = parser.parse_args(argv)

    import torch

    from medsafe_utils.data import load_adv_ama
    from medsafe_utils.jailbreak.prompt import build_prompt
    from medsafe_utils.models import load_model

    bench = Bench("bench_gcg")
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model("smollm2-135m-instruct", dtype="float32")
    model, tokenizer = lm.model, lm.tokenizer
    pair = load_adv_ama("tutorial").iloc[0]
    parts = build_prompt(tokenizer, pair.goal, pair.target)
    ours0, original0 = initial_losses(model, tokenizer, parts, pair.target)
    bench.check(
        "same_objective",
        abs(ours0 - original0) <= 1e-4 * abs(original0),
        f"initial-suffix loss ours {ours0:.6f}, original target_loss {original0:.6f}",
    )
    attacks = {
        "ours": lambda seed, steps: ours_attack(
            model, tokenizer, pair.goal, pair.target, seed, steps, args.batch
        ),
        "original": lambda seed, steps: original_attack(
            model, tokenizer, parts, pair.target, original_forbidden(tokenizer), seed, steps
        ),
    }
    worker = None
    if "nanogcg" in args.only:
        worker = start_nanogcg(lm, pair, parts, args.threads, bench)
        attacks["nanogcg"] = lambda seed, steps: worker.attack(seed, steps)
    names = [n for n in ("ours", "nanogcg", "original") if n in args.only]
    print(
        f"goal/target: AMA tutorial 1 ({len(parts.before_ids)} prompt, {len(parts.after_ids)} "
        f"after, {len(parts.target_ids)} target tokens); width {WIDTH}, top-k {TOPK}, "
        f"suffix {SUFFIX_LEN}, {args.steps} steps, threads {torch.get_num_threads()}",
        flush=True,
    )

    def side(name: str):
        seeds = iter(args.seeds)  # repeat i runs seed i

        def attack() -> Measured:
            out = attacks[name](next(seeds), args.steps)
            return Measured(statistics.median(out["wall"]), out, statistics.median(out["cpu"]))

        return attack

    runs = compare(
        {n: side(n) for n in names},
        len(args.seeds),
        warmups={n: lambda n=n: attacks[n](args.seeds[0], 1) for n in names},
    )
    if worker is not None:
        worker.close()
    nan = [float("nan")] * len(args.seeds)
    s_step = {n: [r.seconds for r in runs[n]] if n in runs else nan for n in names + ["nanogcg"]}
    loss = {n: [r.output["best_loss"] for r in runs[n]] for n in names}
    for n in names:
        for seed, r in zip(args.seeds, runs[n], strict=True):
            print(
                f"seed {seed} {n:9s} median {r.seconds:6.2f} s/step (cpu {r.cpu_s:6.2f}), "
                f"best loss {r.output['best_loss']:.4f}"
            )
    mean_loss = lambda n: statistics.mean(loss[n]) if n in loss else float("nan")  # noqa: E731
    orig = statistics.median(s_step["original"]) if "original" in runs else float("nan")
    print(f"ours/original {statistics.median(s_step['ours']) / orig:.2f}x; {load_note()}")
    bench.finish(
        **figures("ours_s_step", s_step["ours"]),
        **figures("nanogcg_s_step", s_step["nanogcg"]),
        original_s_step=fmt(orig),
        **figures("ratio", paired_ratios(s_step["ours"], s_step["nanogcg"])),
        ours_loss=f"{mean_loss('ours'):.4f}",
        nanogcg_loss=f"{mean_loss('nanogcg'):.4f}",
        objective_rel_diff=f"{abs(ours0 - original0) / abs(original0):.1e}",
        seeds=len(args.seeds),
        steps=args.steps,
    )


if __name__ == "__main__":
    if "--nanogcg-worker" in sys.argv:
        nanogcg_worker()
    else:
        main()
