"""QLoRA fine-tuning on safety demonstrations (the paper's released LoRA settings, 4-bit NF4),
with transformers' Trainer, resumable checkpoints, and a guard that training reached the adapter.

    from medsafe_utils.finetune.qlora import QLoRAConfig, train
    result = train(QLoRAConfig("medalpaca-7b", output_dir="adapters/medalpaca-7b__med_n100"), demos)
    # finetune.grid then loads the saved adapter and runs models.adapters.check_adapter on it

The released recipe itself (training/finetuning.py: LoRA on a float16 base, fp16 mixed precision)
is QLoRAConfig(load_in_4bit=False, compute_dtype="float16") on a GPU.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

from medsafe_utils.finetune.alpaca import demonstrations_sha256, tokenized_dataset
from medsafe_utils.models import default_device, load_model, release, resolve_dtype
from medsafe_utils.models.adapters import (
    check_lora_trained,
    keep_4bit_weights_trainable,
)

log = logging.getLogger(__name__)
METRICS_FILE = "training.json"  # written last: its presence marks a finished run
# How a run went, as flat scalars: QLoRAResult.summary's columns after the model and data size.
RUN_COLUMNS = (
    "steps",
    "loss_start",
    "loss_end",
    "eval_loss_before",
    "eval_loss_after",
    "train_tokens",
    "tokens_per_s",
    "wall_s",
    "peak_memory_mb",
    "device",
    "compute_dtype",
    "load_in_4bit",
    "reused",
)


@dataclass
class QLoRAConfig:
    """One fine-tuning run. Defaults: the paper's released settings (alpaca-lora recipe)."""

    base_model: str = "medalpaca-7b"
    output_dir: str = ""  # the adapter folder (peft format + training.json)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    batch_size: int = 128  # demonstrations per optimizer step
    micro_batch_size: int = 4  # per forward pass; gradient accumulation = batch / micro
    num_epochs: float = 3
    learning_rate: float = 3e-4
    warmup_steps: int = 10
    cutoff_len: int = 256  # tokens per demonstration (prompt + response + EOS)
    train_on_inputs: bool = True  # the paper: loss on the whole sequence
    add_eos_token: bool = True
    group_by_length: bool = False  # as released: random order; True: length-grouped (ours)
    pad_to_multiple_of: int = 8
    load_in_4bit: bool = True  # NF4 with double quantization; False: LoRA on the full base
    compute_dtype: str = "auto"  # auto: bfloat16 on a GPU, float32 on CPU; float16: as released
    gradient_checkpointing: bool = True
    max_steps: int = -1  # > 0 stops after that many optimizer steps
    save_steps: int = 10  # checkpoint every this many optimizer steps (resume)
    eval_n: int = 32  # demonstrations whose loss is measured before and after training
    seed: int = 42
    overwrite: bool = False  # retrain even when a finished adapter exists

    def __post_init__(self):
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size "
                f"{self.micro_batch_size}"
            )

    @property
    def gradient_accumulation_steps(self) -> int:
        """Micro-batches per optimizer step."""
        return self.batch_size // self.micro_batch_size


@dataclass
class QLoRAResult:
    """What a run produced: the adapter and how training went."""

    adapter_path: str
    base_model: str
    n_demonstrations: int
    steps: int  # optimizer steps
    loss_curve: list[dict] = field(default_factory=list)  # {step, loss, learning_rate}
    eval_loss_before: float = float("nan")  # mean loss on eval_n training demonstrations
    eval_loss_after: float = float("nan")
    train_tokens: int = 0  # non-pad tokens trained on in this session
    tokens_per_s: float = float("nan")
    wall_s: float = float("nan")  # training time of this session
    cpu_s: float = float("nan")  # process CPU time of the same (robust on a shared machine)
    peak_memory_mb: float = float("nan")
    peak_memory_kind: str = ""  # cuda_max_allocated | cpu_max_rss (whole process)
    device: str = ""
    compute_dtype: str = ""
    load_in_4bit: bool = False
    trainable_params: int = 0
    resumed_from_step: int | None = None
    reused: bool = False  # a finished run was found and not redone

    @property
    def loss_start(self) -> float:
        """First logged training loss."""
        return self.loss_curve[0]["loss"] if self.loss_curve else float("nan")

    @property
    def loss_end(self) -> float:
        """Last logged training loss."""
        return self.loss_curve[-1]["loss"] if self.loss_curve else float("nan")

    @property
    def loss_fell(self) -> bool:
        """The loss on the fixed eval demonstrations fell."""
        return self.eval_loss_after < self.eval_loss_before

    def summary(self) -> dict:
        """Flat scalars for a table row."""
        head = {"base_model": self.base_model, "n_demonstrations": self.n_demonstrations}
        return head | {k: getattr(self, k) for k in RUN_COLUMNS}


def resolve_compute_dtype(name: str, device: str) -> torch.dtype:
    """bfloat16 on a GPU; float32 on CPU (4-bit layers with bf16 compute crawl there)."""
    if device == "cpu" and name not in ("auto", "float32"):
        log.warning("compute dtype %s on CPU is ~20-120x slower: using float32", name)
    return torch.float32 if device == "cpu" else resolve_dtype(name, device)


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing, non-reentrant, with gradients into the inputs."""
    # transformers renamed gradient_checkpointing_enable (deprecated from 5.x, removed in 6)
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is None:
        model.gradient_checkpointing_enable({"use_reentrant": False})
    else:
        enable({"use_reentrant": False})
    model.enable_input_require_grads()  # the frozen embeddings' output must carry a gradient


def _prepare_model(config: QLoRAConfig, compute_dtype: torch.dtype):
    """Base model (4-bit NF4 or full precision) with fresh LoRA layers; tokenizer right-padded."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    lm = load_model(config.base_model, dtype=compute_dtype, load_in_4bit=config.load_in_4bit)
    model = lm.model
    quantized = getattr(model, "is_loaded_in_4bit", False)
    if config.load_in_4bit and not quantized:
        log.warning(
            "%s was not loaded in 4 bits (its loader builds it in code): full precision",
            config.base_model,
        )
    if quantized:
        keep_4bit_weights_trainable(model)
        # checkpointing is switched on below: peft's own switch calls the deprecated name
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if config.gradient_checkpointing:
        enable_checkpointing(model)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    lm.tokenizer.padding_side = "right"
    return model, lm.tokenizer, quantized


def _training_args(config: QLoRAConfig, out: Path, device: str, compute_dtype: torch.dtype):
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.micro_batch_size,
        per_device_eval_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        weight_decay=0.0,
        bf16=compute_dtype == torch.bfloat16 and device == "cuda",
        fp16=compute_dtype == torch.float16 and device == "cuda",  # mixed precision, as released
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        dataloader_pin_memory=device == "cuda",
        report_to="none",
        include_num_input_tokens_seen="non_padding",
    )


class _Meter(TrainerCallback):
    """Trainer callback: wall time, process CPU time and non-pad tokens of this session."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = (time.perf_counter(), time.process_time(), state.num_input_tokens_seen)

    def on_train_end(self, args, state, control, **kwargs):
        self.end = (time.perf_counter(), time.process_time(), state.num_input_tokens_seen)


def last_checkpoint(out: Path) -> Path | None:
    """The newest Trainer checkpoint of an unfinished run, if any."""
    found = sorted(
        (out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
    )
    return found[-1] if found else None


def _peak_memory(device: str) -> tuple[float, str]:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"


def load_result(adapter_path: str | Path) -> QLoRAResult:
    """The result of a finished run, read back from its training.json."""
    record = json.loads((Path(adapter_path) / METRICS_FILE).read_text(encoding="utf-8"))
    return QLoRAResult(**record["result"])


def train(
    config: QLoRAConfig, demonstrations: pd.DataFrame, callbacks: list[TrainerCallback] = ()
) -> QLoRAResult:
    """Fine-tune LoRA adapters on alpaca demonstrations; resumes, and reuses a finished run.

    `callbacks` are extra Trainer callbacks (early stopping; tests interrupt a run with one)."""
    if not config.output_dir:
        raise ValueError("QLoRAConfig.output_dir is required (the adapter folder)")
    out = Path(config.output_dir)
    if (out / METRICS_FILE).exists() and not config.overwrite:
        log.info("%s: finished adapter found, not retrained", out)
        return _reused(out, config, demonstrations)
    if config.overwrite:
        shutil.rmtree(out, ignore_errors=True)
    device = default_device()
    compute_dtype = resolve_compute_dtype(config.compute_dtype, device)
    if device == "cpu":
        log.warning(
            "training on CPU with %s compute%s",
            compute_dtype,
            " (4-bit NF4 weights)" if config.load_in_4bit else "",
        )
    torch.manual_seed(config.seed)
    model, tokenizer, quantized = _prepare_model(config, compute_dtype)
    dataset = tokenized_dataset(
        tokenizer, demonstrations, config.cutoff_len, config.train_on_inputs, config.add_eos_token
    )
    eval_set = dataset.select(range(min(config.eval_n, len(dataset))))
    collator = DataCollatorForSeq2Seq(
        tokenizer, padding=True, pad_to_multiple_of=config.pad_to_multiple_of or None
    )
    meter = _Meter()
    trainer = Trainer(
        model=model,
        args=_training_args(config, out, device, compute_dtype),
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[meter, *callbacks],
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = _eval_loss(trainer, eval_set)
    resume = last_checkpoint(out)
    if resume is not None:
        log.info("%s: resuming from %s", out, resume.name)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    after = _eval_loss(trainer, eval_set)
    check_lora_trained(model)
    wall, cpu, tokens = (end - start for start, end in zip(meter.start, meter.end, strict=True))
    peak, kind = _peak_memory(device)
    result = QLoRAResult(
        adapter_path=str(out),
        base_model=config.base_model,
        n_demonstrations=len(dataset),
        steps=trainer.state.global_step,
        loss_curve=_loss_curve(trainer),
        eval_loss_before=float(before),
        eval_loss_after=float(after),
        train_tokens=int(tokens),
        tokens_per_s=tokens / wall if wall > 0 else float("nan"),
        wall_s=wall,
        cpu_s=cpu,
        peak_memory_mb=peak,
        peak_memory_kind=kind,
        device=device,
        compute_dtype=str(compute_dtype).removeprefix("torch."),
        load_in_4bit=quantized,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        resumed_from_step=int(resume.name.split("-")[-1]) if resume else None,
    )
    _save(model, out, config, result, demonstrations_sha256(demonstrations))
    del trainer, model
    release()  # before the next run loads
    return result


def _eval_loss(trainer, eval_set) -> float:
    """Mean loss on the fixed eval demonstrations (NaN when eval_n is 0)."""
    return trainer.evaluate(eval_set)["eval_loss"] if len(eval_set) else float("nan")


def _loss_curve(trainer) -> list[dict]:
    """The loss curve over all sessions: Trainer's log history survives a resume."""
    return [
        {
            "step": h["step"],
            "loss": float(h["loss"]),
            "learning_rate": float(h.get("learning_rate", 0.0)),
        }
        for h in trainer.state.log_history
        if "loss" in h
    ]


def _recipe(config: QLoRAConfig) -> dict:
    """The settings that shape an adapter (not where it is saved or how often it checkpoints)."""
    settings = {**asdict(config), "target_modules": list(config.target_modules)}
    return {k: v for k, v in settings.items() if k not in ("output_dir", "overwrite", "save_steps")}


def _save(model, out: Path, config: QLoRAConfig, result: QLoRAResult, demos_sha: str) -> None:
    """Adapter in peft format, then training.json (recipe + result) last; drop checkpoints."""
    model.save_pretrained(str(out))
    record = {
        "config": _recipe(config),
        "demonstrations_sha256": demos_sha,
        "result": asdict(result),
    }
    tmp = out / (METRICS_FILE + ".partial")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.rename(out / METRICS_FILE)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def _reused(out: Path, config: QLoRAConfig, demonstrations: pd.DataFrame) -> QLoRAResult:
    """A finished run's result, if it was trained with this recipe on these demonstrations."""
    record = json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
    recipe = _recipe(config)
    changed = sorted(k for k in recipe if record["config"].get(k) != recipe[k])
    if record.get("demonstrations_sha256") != demonstrations_sha256(demonstrations):
        changed.append("demonstrations")
    if changed:
        raise ValueError(
            f"{out} holds an adapter trained with other {', '.join(changed)}: "
            "use overwrite=True or another output_dir"
        )
    return QLoRAResult(**{**record["result"], "reused": True})
