"""Guard against the known failure of an adapter that is loaded but changes nothing: compare the
model's logits with the adapter enabled and disabled on held-out prompts.

    check = verify_adapter("medalpaca-7b", "results/paper/06_finetune/adapters/...", prompts)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from medsafe_utils.finetune.alpaca import format_prompt
from medsafe_utils.models import load_model


class AdapterNoOpError(RuntimeError):
    """An adapter that leaves the model's outputs unchanged (never trained, or not applied)."""


@dataclass
class AdapterCheck:
    """How far an adapter moves the base model's next-token logits on held-out prompts."""

    adapter_path: str
    n_prompts: int
    n_positions: int
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    top1_changed: float  # fraction of positions whose most likely next token changed


def keep_4bit_weights_trainable(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference (AVX512-BF16 machines).

    Its first no-grad forward in eval mode (our loss before training) converts them for good to a
    layout whose matmul has no backward: training then runs but no gradient reaches the LoRA
    layers, and the adapter stays a no-op (seen with bitsandbytes 0.50)."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and module.support_avx512bf16_for_cpu:
            module.support_avx512bf16_for_cpu = False


def check_lora_trained(model) -> None:
    """LoRA B starts at zero: if every B is still zero, no gradient reached the adapter."""
    moved = [p.abs().max().item() for n, p in model.named_parameters() if "lora_B" in n]
    if moved and max(moved) == 0.0:
        raise AdapterNoOpError("training left every LoRA B matrix at zero (the adapter would be a "
                               "no-op): no gradient reached it, or the learning rate stayed 0 "
                               "(a warm-up longer than the run starts at 0)")


@torch.no_grad()
def verify_adapter(base: str, adapter_path: str | Path, prompts: list[str], *,
                   load_in_4bit: bool = False, dtype: str = "auto", atol: float = 1e-6,
                   lm=None) -> AdapterCheck:
    """Compare logits with the adapter enabled and disabled; raise AdapterNoOpError if equal."""
    from peft import PeftModel

    lm = lm or load_model(base, dtype=dtype, load_in_4bit=load_in_4bit, adapter_path=adapter_path)
    model = lm.model
    if not isinstance(model, PeftModel):
        raise AdapterNoOpError(f"{adapter_path}: the model was loaded without its adapter")
    batch = lm.tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with_adapter = model(**batch).logits.float()  # (n_prompts, seq, vocab)
    with model.disable_adapter():
        without = model(**batch).logits.float()
    mask = batch["attention_mask"].bool()
    diff = (with_adapter - without).abs()[mask]  # (n_positions, vocab)
    check = AdapterCheck(
        adapter_path=str(adapter_path), n_prompts=len(prompts), n_positions=int(mask.sum()),
        max_abs_logit_diff=float(diff.max()), mean_abs_logit_diff=float(diff.mean()),
        top1_changed=float((with_adapter.argmax(-1) != without.argmax(-1))[mask].float().mean()))
    if check.max_abs_logit_diff <= atol:
        raise AdapterNoOpError(f"{adapter_path}: logits with and without the adapter are identical "
                               f"(max |diff| {check.max_abs_logit_diff:.2e} <= {atol}) on "
                               f"{len(prompts)} prompts: the adapter is a no-op")
    return check


def alpaca_prompts(demonstrations: pd.DataFrame) -> list[str]:
    """The alpaca prompts (no response) of demonstrations, for verify_adapter."""
    return [format_prompt(r["instruction"], r["input"] or "")
            for r in demonstrations.to_dict("records")]
