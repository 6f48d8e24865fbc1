"""LoRA adapters as 06_finetune trains them and 07_medical_eval loads them: the record of each
adapter in 06's adapters.jsonl, and the check that an adapter really changes its model (the known
failure: an adapter that is loaded but changes nothing).

    lm = load_model("smollm2-135m-instruct", adapter_path=folder)
    check = check_adapter(lm, ["Question: ..."])   # raises AdapterNoOpError on a no-op adapter
    next_token_shift(lm, "Question: ...")          # the next token's top choices, without/with
    records = read_adapter_records("results/smoke/06_finetune/adapters.jsonl")
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import pandas as pd
import torch

from medsafe_utils.core.artifacts import write_jsonl
from medsafe_utils.core.errors import DataError
from medsafe_utils.core.readers import read_jsonl
from medsafe_utils.models.loading import LoadedModel

log = logging.getLogger(__name__)


class AdapterNoOpError(RuntimeError):
    """An adapter that leaves the model's outputs unchanged (never trained, or not applied)."""


@dataclass
class AdapterCheck:
    """How far an adapter moves its base model's next-token logits on probe prompts."""

    model_id: str
    n_prompts: int
    n_positions: int
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    top1_changed: float  # fraction of positions whose most likely next token changed


@torch.no_grad()
def check_adapter(
    lm: LoadedModel, prompts: list[str], *, atol: float = 1e-6, max_tokens: int = 512
) -> AdapterCheck:
    """Compare logits with the adapter enabled and disabled; raise AdapterNoOpError if equal.

    Each prompt is cut to its first `max_tokens` tokens."""
    from peft import PeftModel

    model = lm.model
    if not isinstance(model, PeftModel):
        raise AdapterNoOpError(f"{lm.model_id}: the model was loaded without its adapter")
    batch = lm.tokenizer(
        prompts, return_tensors="pt", padding=True, truncation=True, max_length=max_tokens
    ).to(model.device)
    with_adapter = model(**batch).logits.float()  # (n_prompts, seq, vocab)
    with model.disable_adapter():
        without = model(**batch).logits.float()
    mask = batch["attention_mask"].bool()
    diff = (with_adapter - without).abs()[mask]  # (n_positions, vocab)
    check = AdapterCheck(
        model_id=lm.model_id,
        n_prompts=len(prompts),
        n_positions=int(mask.sum()),
        max_abs_logit_diff=float(diff.max()),
        mean_abs_logit_diff=float(diff.mean()),
        top1_changed=float((with_adapter.argmax(-1) != without.argmax(-1))[mask].float().mean()),
    )
    if check.max_abs_logit_diff <= atol:
        raise AdapterNoOpError(
            f"{lm.model_id}: logits with and without the adapter are identical "
            f"(max |diff| {check.max_abs_logit_diff:.2e} <= {atol}) on "
            f"{len(prompts)} prompts: the adapter is a no-op (zero LoRA B "
            f"weights, wrong target modules, or it was not applied)"
        )
    log.info(
        "%s: the adapter changes logits by up to %.3g on %d prompts",
        lm.model_id,
        check.max_abs_logit_diff,
        len(prompts),
    )
    return check


def check_lora_trained(model) -> None:
    """LoRA B starts at zero: if every B is still zero, no gradient reached the adapter."""
    moved = [p.abs().max().item() for n, p in model.named_parameters() if "lora_B" in n]
    if moved and max(moved) == 0.0:
        raise AdapterNoOpError(
            "training left every LoRA B matrix at zero (the adapter would be a "
            "no-op): no gradient reached it, or the learning rate stayed 0 "
            "(a warm-up longer than the run starts at 0)"
        )


def keep_4bit_weights_trainable(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference (AVX512-BF16 machines).

    Its first no-grad forward in eval mode (our loss before training) converts them for good to a
    layout whose matmul has no backward: training then runs but no gradient reaches the LoRA
    layers, and the adapter stays a no-op (seen with bitsandbytes 0.50)."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and module.support_avx512bf16_for_cpu:
            module.support_avx512bf16_for_cpu = False


@dataclass(frozen=True)
class AdapterRecord:
    """A line of 06_finetune's adapters.jsonl: a trained LoRA adapter and what it learned from."""

    base_model: str  # registry key of the base model
    type: str  # demonstrations: med | gen | both
    n: int  # number of demonstrations
    path: str  # the adapter folder; relative paths are relative to the index's folder
    adapter: str  # the folder's name, e.g. smollm2-135m-instruct__med_n100
    source: str  # the demonstration splits: published | fresh


def write_adapter_records(records: list[AdapterRecord], path: str | Path) -> Path:
    """adapters.jsonl: one AdapterRecord per line."""
    return write_jsonl([asdict(r) for r in records], path)


def read_adapter_records(index: str | Path) -> list[AdapterRecord]:
    """The records of an adapters.jsonl, each path resolved to an existing adapter folder."""
    index = Path(index)
    return [_adapter_record(raw, index, row) for row, raw in enumerate(read_jsonl(index), start=1)]


def _adapter_record(raw, index: Path, row: int) -> AdapterRecord:
    """A validated record: exactly AdapterRecord's fields, n a positive integer, text not empty."""
    names = [f.name for f in fields(AdapterRecord)]
    if not isinstance(raw, dict):
        raise DataError(index, f"row is a {type(raw).__name__}", row=row, expected="an object")
    missing, unknown = [f for f in names if f not in raw], sorted(set(raw) - set(names))
    if missing or unknown:
        raise DataError(
            index,
            f"missing field(s) {missing}" if missing else f"unknown field(s) {unknown}",
            row=row,
            expected=f"the fields {names}",
        )
    for name in names:
        value = raw[name]
        if name == "n":
            if type(value) is not int or value <= 0:
                raise DataError(index, f"'n' is {value!r}", row=row, expected="a positive integer")
        elif not isinstance(value, str) or not value.strip():
            raise DataError(index, f"{name!r} is {value!r}", row=row, expected="non-empty text")
    folder = (index.parent / raw["path"]).resolve()
    if not (folder / "adapter_config.json").exists():
        raise DataError(
            index,
            f"adapter folder {raw['path']!r} not found (or it has no adapter_config.json)",
            row=row,
            expected="a peft adapter folder, relative to the index's folder",
        )
    return replace(AdapterRecord(**raw), path=str(folder))


@torch.no_grad()
def next_token_shift(lm: LoadedModel, prompt: str, k: int = 5) -> pd.DataFrame:
    """What an adapter changes in one prompt's next token: the k most likely tokens of the model
    without its adapter and of the model with it (their union), each with both probabilities."""
    from peft import PeftModel

    if not isinstance(lm.model, PeftModel):
        raise AdapterNoOpError(f"{lm.model_id}: the model was loaded without its adapter")
    batch = lm.tokenizer([prompt], return_tensors="pt").to(lm.model.device)
    with_adapter = lm.model(**batch).logits[0, -1].float().softmax(-1)
    with lm.model.disable_adapter():
        without = lm.model(**batch).logits[0, -1].float().softmax(-1)
    top = dict.fromkeys([*without.topk(k).indices.tolist(), *with_adapter.topk(k).indices.tolist()])
    frame = pd.DataFrame(
        {
            "token_id": list(top),
            "token": [lm.tokenizer.decode([t]) for t in top],
            "p_without_adapter": [float(without[t]) for t in top],
            "p_with_adapter": [float(with_adapter[t]) for t in top],
        }
    )
    return frame.sort_values("p_with_adapter", ascending=False, ignore_index=True)
