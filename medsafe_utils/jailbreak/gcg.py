"""Greedy Coordinate Gradient (Zou et al. 2023): optimise a suffix so that a model answers with a
target. Config in, result out, no file I/O.

    from medsafe_utils.jailbreak.gcg import GCGConfig, run
    result = run(lm.model, lm.tokenizer, goal, target, GCGConfig())
    result.best_suffix, result.best_loss, result.success, result.generation

Each step: the gradient of the target loss w.r.t. the one-hot suffix, top-k tokens per position
(special and non-ASCII tokens excluded), `search_width` candidates that each replace one token,
their losses in batches (gcg_loss.TargetLoss: prefix KV cache, logits only at the target), the
best candidate becomes the suffix. The best suffix so far is tracked; every `test_interval`
steps and at the end the model answers from it (`test_generation` "model": with its own
generation config, as exps/adv_attack/gcg.py passes model.generation_config; "greedy").

The defaults are the original's (exps/adv_attack/gcg.py): 1,000 steps, no early stop, the
suffix initialised as 20 copies of the token the tokenizer gives '*', candidates drawn with
replacement (a candidate may repeat another or keep the current token), no re-tokenization
filter, 512 candidates in batches of 300, a test every 50 steps with 800 new tokens. Our options:
`dedup_candidates` (draw twice as many, never the current token, drop duplicates),
`filter_ids` (drop candidates that do not survive decode -> re-encode), `early_stop` (stop once
the best suffix's greedy answer begins with the target), `stop_on_success`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch

from medsafe_utils.core.quiet import TextBar
from medsafe_utils.jailbreak.loss import TargetLoss, default_batch_size
from medsafe_utils.jailbreak.prompt import (
    PromptParts,
    attack_succeeded,
    build_prompt,
    forbidden_token_ids,
    retokenizes,
)

log = logging.getLogger(__name__)
OVERSAMPLE = 2  # candidates drawn per kept one, so filtering and de-duplication keep the width
RELEASED_INIT = "released"  # suffix_init: suffix_length copies of the token of '*'
SPACED_X = "spaced_x"  # suffix_init: suffix_length 'x' separated by spaces (nanoGCG's)
TEST_GENERATIONS = ("model", "greedy")


@dataclass
class GCGConfig:
    """GCG settings; the defaults are the original's (exps/adv_attack/gcg.py)."""

    num_steps: int = 1000
    search_width: int = 512  # candidate suffixes evaluated per step
    topk: int = 256  # tokens per position taken from the gradient
    n_replace: int = 1  # positions replaced per candidate
    suffix_init: str = RELEASED_INIT  # released | spaced_x | any text, tokenized
    suffix_length: int = 20
    allow_non_ascii: bool = False
    dedup_candidates: bool = False  # ours: never the current token, no duplicate candidates
    filter_ids: bool = False  # ours: drop candidates that do not survive decode -> re-encode
    seed: int = 0
    early_stop: bool = False  # ours: stop once the best suffix's greedy answer is the target
    batch_size: int = 300  # candidates per forward pass (0: default_batch_size); halved on OOM
    use_prefix_cache: bool = True
    test_interval: int = 50  # generate from the best suffix every this many steps (0: at the end)
    stop_on_success: bool = False  # stop at the first test whose generation succeeds
    max_new_tokens: int = 800  # test generations (the original's setting); 0: no tests
    test_generation: str = "model"  # model: the model's generation config; greedy
    template: str = "chat"  # chat | llama2_paper
    progress: bool = True


@dataclass
class GCGResult:
    """What one attack found: best suffix and loss, per-step history, tests and the generation."""

    best_suffix: str
    best_loss: float
    best_step: int
    initial_loss: float
    losses: list[float]  # per step: loss of the candidate chosen in that step
    best_losses: list[float]  # per step: best loss so far (never increases)
    suffixes: list[str]  # per step: the chosen candidate
    step_times: list[float]  # seconds per step (test generations not included)
    tests: list[dict] = field(default_factory=list)  # step, loss, suffix, generation, success, ...
    success: bool = False
    success_step: int | None = None  # first test step whose generation succeeded
    generation: str = ""  # the kept generation (the original's rule, see choose_generation)
    prompt: str = ""  # the full adversarial prompt of that generation
    early_stopped: bool = False

    @property
    def n_steps(self) -> int:
        """Steps actually run."""
        return len(self.losses)


def released_init_token(tokenizer) -> int:
    """The token the original starts every suffix position with: '*' as the tokenizer encodes
    it, after the special tokens it adds (gcg.py takes `tokenizer.encode('*')[1]`, the token
    after Llama's BOS)."""
    ids = tokenizer("*", add_special_tokens=True)["input_ids"]
    specials = set(tokenizer.all_special_ids)
    ids = [i for i in ids if i not in specials]
    if not ids:
        raise ValueError("the tokenizer encodes '*' as special tokens only")
    return ids[0]


def initial_suffix(tokenizer, config: GCGConfig) -> torch.Tensor:
    """Token ids of the starting suffix: `released` (suffix_length copies of the '*' token),
    `spaced_x` (suffix_length 'x' separated by spaces, tokenized) or the text suffix_init."""
    if config.suffix_init == RELEASED_INIT:
        token = released_init_token(tokenizer)
        return torch.full((config.suffix_length,), token, dtype=torch.long)
    spaced = config.suffix_init in (SPACED_X, "")
    text = " ".join(["x"] * config.suffix_length) if spaced else config.suffix_init
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    if spaced and len(ids) != config.suffix_length:
        log.warning(
            "the spaced-x suffix is %d tokens with this tokenizer, not %d",
            len(ids),
            config.suffix_length,
        )
    if len(ids) < config.n_replace:
        raise ValueError(f"suffix of {len(ids)} tokens < n_replace={config.n_replace}")
    return ids


def sample_candidates(
    suffix_ids: torch.Tensor,
    grad: torch.Tensor,
    forbidden: torch.Tensor,
    config: GCGConfig,
    generator: torch.Generator,
    tokenizer,
) -> torch.Tensor:
    """Candidates (n, suffix_len), each with n_replace positions set to one of the top-k tokens
    of -grad there (uniformly drawn); forbidden tokens are never proposed.

    As released: search_width draws with replacement. dedup_candidates: the current token is
    never proposed and up to search_width distinct candidates are kept (of twice as many
    drawn); filter_ids: candidates that do not survive decode -> re-encode are dropped."""
    grad = grad.detach().float().cpu().clone()  # (suffix_len, vocab)
    length = len(suffix_ids)
    grad[:, forbidden] = math.inf
    if config.dedup_candidates:
        grad[torch.arange(length), suffix_ids] = math.inf
    topk = min(config.topk, int(torch.isfinite(grad).sum(1).min()))  # never a forbidden token
    topk_ids = (-grad).topk(topk, dim=1).indices  # (suffix_len, topk)
    n = config.search_width * (OVERSAMPLE if config.dedup_candidates else 1)
    positions = torch.rand(n, length, generator=generator).argsort(1)[:, : config.n_replace]
    choice = torch.randint(0, topk, (n, config.n_replace), generator=generator)
    candidates = suffix_ids.repeat(n, 1).scatter(1, positions, topk_ids[positions, choice])
    if config.filter_ids:
        candidates = candidates[retokenizes(tokenizer, candidates)]
    keep = list(range(len(candidates)))
    if config.dedup_candidates:
        seen, keep = set(), []
        for i, row in enumerate(map(tuple, candidates.tolist())):
            if row not in seen:
                seen.add(row)
                keep.append(i)
    if not keep:
        raise RuntimeError(
            "no candidate suffix survives decode -> re-encode: try another "
            "suffix_init or filter_ids=False"
        )
    return candidates[keep[: config.search_width]]


@torch.no_grad()
def generate_from(
    model,
    tokenizer,
    parts: PromptParts,
    suffix_ids: torch.Tensor,
    max_new_tokens: int,
    decoding: str = "greedy",
) -> str:
    """The continuation of prompt + suffix (special tokens dropped, whitespace stripped):
    greedy, or as the model's generation config says (decoding 'model')."""
    device = model.get_input_embeddings().weight.device
    ids = torch.cat([parts.before_ids, suffix_ids.cpu(), parts.after_ids])[None].to(device)
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        **(greedy if decoding == "greedy" else {}),
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def choose_generation(tests: list[dict]) -> dict | None:
    """The original's rule: the latest test containing the target, else the latest without a
    refusal prefix, else the last test."""
    for key in ("has_target", "success"):
        hits = [t for t in tests if t[key]]
        if hits:
            return hits[-1]
    return tests[-1] if tests else None


def _validate(config: GCGConfig, vocab: int) -> None:
    if config.num_steps < 1 or config.search_width < 1 or config.n_replace < 1:
        raise ValueError("num_steps, search_width and n_replace must be >= 1")
    if not 1 <= config.topk <= vocab:
        raise ValueError(f"topk must be in 1..{vocab}, got {config.topk}")
    if config.test_generation not in TEST_GENERATIONS:
        raise ValueError(f"test_generation must be one of {TEST_GENERATIONS}")


class _Tester:
    """Test generations from the best suffix; a deterministic one is made once per distinct
    suffix, a sampled one (the model's generation config samples) at every test, as released."""

    def __init__(self, model, tokenizer, parts: PromptParts, target: str, config: GCGConfig):
        self.args = (model, tokenizer, parts)
        self.target, self.config = target, config
        self.tests: list[dict] = []
        self._seen: dict[tuple, str] = {}
        own = getattr(model, "generation_config", None)
        self.sampled = config.test_generation == "model" and bool(getattr(own, "do_sample", 0))

    def __call__(self, step: int, suffix_ids: torch.Tensor, loss: float) -> dict:
        model, tokenizer, parts = self.args
        began = time.perf_counter()
        key = tuple(suffix_ids.tolist())
        if key not in self._seen or self.sampled:
            if self.sampled:  # each sampled test seeded by its step: reruns repeat it
                torch.manual_seed(self.config.seed + step)
            self._seen[key] = generate_from(
                model,
                tokenizer,
                parts,
                suffix_ids,
                self.config.max_new_tokens,
                self.config.test_generation,
            )
        text = self._seen[key]
        suffix = tokenizer.decode(suffix_ids)
        test = {
            "step": step,
            "loss": loss,
            "suffix": suffix,
            "generation": text,
            "sampled": self.sampled,
            "has_target": self.target in text,
            "success": attack_succeeded(text, self.target),
            "prompt": parts.before_text + suffix + parts.after_text,
            "seconds": round(time.perf_counter() - began, 3),
        }
        self.tests.append(test)
        return test


@dataclass
class Step:
    """One GCG step from a suffix: the gradient, the candidates drawn from it, their losses."""

    suffix: torch.Tensor  # (suffix_len,) the suffix the step started from
    loss: float  # its target loss
    grad: torch.Tensor  # (suffix_len, vocab) d loss / d one-hot suffix
    candidates: torch.Tensor  # (n, suffix_len) each with n_replace tokens from the top-k of -grad
    candidate_losses: torch.Tensor  # (n,)
    matches: torch.Tensor  # (n,) True where the candidate's greedy target tokens all match
    chosen: int  # the candidate of least loss: the next suffix


@dataclass
class _Attack:
    """What every step of one attack reuses: the prompt, its loss, the tokens never proposed."""

    parts: PromptParts
    objective: TargetLoss
    forbidden: torch.Tensor
    generator: torch.Generator


def _attack(model, tokenizer, messages, target: str, config: GCGConfig) -> _Attack:
    weight = model.get_input_embeddings().weight
    vocab, device = weight.shape[0], weight.device
    _validate(config, vocab)
    parts = build_prompt(tokenizer, messages, target, config.template)
    objective = TargetLoss(
        model,
        parts,
        config.use_prefix_cache,
        config.batch_size or default_batch_size(config.search_width, device),
    )
    forbidden = forbidden_token_ids(tokenizer, vocab, config.allow_non_ascii)
    return _Attack(parts, objective, forbidden, torch.Generator().manual_seed(config.seed))


def take_step(attack: _Attack, suffix: torch.Tensor, config: GCGConfig, tokenizer) -> Step:
    """Gradient -> candidates from its top-k -> their losses -> the least (run() repeats it)."""
    grad, loss = attack.objective.gradient(suffix)
    candidates = sample_candidates(
        suffix, grad, attack.forbidden, config, attack.generator, tokenizer
    )
    losses, matches = attack.objective.losses(candidates)
    return Step(suffix, loss, grad, candidates, losses, matches, int(losses.argmin()))


def first_step(model, tokenizer, messages, target: str, config: GCGConfig | None = None) -> Step:
    """The first step of an attack, as run() takes it (the same seed, so the same draws)."""
    config = config or GCGConfig()
    return take_step(
        _attack(model, tokenizer, messages, target, config),
        initial_suffix(tokenizer, config),
        config,
        tokenizer,
    )


def run(
    model,
    tokenizer,
    messages: str | list[dict[str, str]],
    target: str,
    config: GCGConfig | None = None,
) -> GCGResult:
    """Optimise a suffix after `messages` (a goal or a chat) so that the model answers `target`."""
    config = config or GCGConfig()
    attack = _attack(model, tokenizer, messages, target, config)
    tester = _Tester(model, tokenizer, attack.parts, target, config)
    suffix = initial_suffix(tokenizer, config)
    best_ids, best_loss, best_step = suffix, math.inf, 0
    losses, best_losses, suffixes, times = [], [], [], []
    initial_loss, early_stopped = math.nan, False
    bar = TextBar(total=config.num_steps, desc="GCG", disable=not config.progress)
    for step in range(1, config.num_steps + 1):
        began = time.perf_counter()
        taken = take_step(attack, suffix, config, tokenizer)
        if step == 1:
            initial_loss = taken.loss
        chosen = taken.chosen
        suffix, loss = taken.candidates[chosen].cpu(), float(taken.candidate_losses[chosen])
        if loss < best_loss:
            best_ids, best_loss, best_step = suffix, loss, step
        times.append(time.perf_counter() - began)
        losses.append(loss)
        best_losses.append(best_loss)
        suffixes.append(tokenizer.decode(suffix))
        bar.set_postfix(loss=f"{loss:.3f}", best=f"{best_loss:.3f}", refresh=False)
        bar.update()
        early_stopped = config.early_stop and bool(taken.matches[chosen]) and best_step == step
        last = early_stopped or step == config.num_steps
        due = last or (config.test_interval and step % config.test_interval == 0)
        if due and config.max_new_tokens > 0:
            test = tester(step, best_ids, best_loss)
            if test["success"] and config.stop_on_success:
                break
        if early_stopped:
            break
    bar.total = step  # a stop before num_steps: the bar ends at the steps that ran
    bar.close()
    kept = choose_generation(tester.tests) or {}
    first_success = next((t["step"] for t in tester.tests if t["success"]), None)
    return GCGResult(
        best_suffix=tokenizer.decode(best_ids),
        best_loss=best_loss,
        best_step=best_step,
        initial_loss=initial_loss,
        losses=losses,
        best_losses=best_losses,
        suffixes=suffixes,
        step_times=times,
        tests=tester.tests,
        success=first_success is not None,
        success_step=first_success,
        generation=kept.get("generation", ""),
        prompt=kept.get("prompt", ""),
        early_stopped=early_stopped,
    )
