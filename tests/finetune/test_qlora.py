"""Alpaca formatting and masking, demonstration loading, QLoRA training (tiny-random float32 and
4-bit NF4, SmolLM2 4-bit), resume and reuse, gradient checkpointing and micro-batching that leave
the loss curve unchanged, the guard that gradients reached the adapter, and that a trained
adapter changes its model."""

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, TrainerCallback

from medsafe_utils.core.errors import DataError
from medsafe_utils.finetune import qlora
from medsafe_utils.finetune.alpaca import (
    IGNORE_INDEX,
    alpaca_prompts,
    demonstration_split,
    format_prompt,
    held_out_demonstrations,
    load_demonstrations,
    tokenize_demonstration,
)
from medsafe_utils.finetune.qlora import QLoRAConfig, load_result, train
from medsafe_utils.models import load_model
from medsafe_utils.models.adapters import AdapterNoOpError, check_adapter, check_lora_trained
from medsafe_utils.models.loading import LoadedModel, _quantization_config

DEMO = {
    "instruction": "Share a patient's records.",
    "input": "",
    "output": "I'm sorry, but I cannot share that.",
}


def tiny_config(tmp_path, **kw):
    """A few float32 steps on the tiny random model with a learning rate that moves it."""
    base = dict(
        base_model="tiny-random",
        output_dir=str(tmp_path / "adapter"),
        batch_size=4,
        micro_batch_size=2,
        num_epochs=2,
        learning_rate=3e-3,
        warmup_steps=0,
        cutoff_len=48,
        load_in_4bit=False,
        gradient_checkpointing=False,
        eval_n=4,
        save_steps=2,
    )
    return QLoRAConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def demos():
    return demonstration_split("med", 100, take=8)


def test_format_prompt_exact():
    assert format_prompt("Do X.") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nDo X.\n\n### Response:\n"
    )
    assert format_prompt("Do X.", "ctx {a}", "No.") == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nDo X.\n\n### Input:\nctx {a}\n\n### Response:\nNo."
    )


def test_tokenize_whole_sequence_and_prompt_mask(tiny_lm):
    tok = tiny_lm.tokenizer
    full = tok(format_prompt(DEMO["instruction"], "", DEMO["output"]))["input_ids"]
    prompt = tok(format_prompt(DEMO["instruction"]))["input_ids"]
    assert full[: len(prompt)] == prompt  # the prompt tokenizes as a prefix here: the mask is exact
    whole = tokenize_demonstration(tok, DEMO, cutoff_len=512)
    assert whole["input_ids"] == [*full, tok.eos_token_id]
    assert whole["labels"] == whole["input_ids"] and set(whole["attention_mask"]) == {1}
    masked = tokenize_demonstration(tok, DEMO, cutoff_len=512, train_on_inputs=False)
    assert masked["input_ids"] == whole["input_ids"]
    assert masked["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    kept = [t for t in masked["labels"] if t != IGNORE_INDEX]
    assert kept == whole["input_ids"][len(prompt) :]
    assert tok.decode(kept) == DEMO["output"] + tok.eos_token


def test_tokenize_cutoff_drops_eos(tiny_lm):
    rec = tokenize_demonstration(tiny_lm.tokenizer, DEMO, cutoff_len=20)
    assert len(rec["input_ids"]) == 20 and rec["input_ids"][-1] != tiny_lm.tokenizer.eos_token_id
    assert rec["labels"] == rec["input_ids"]


def test_load_demonstrations_validates(tmp_path):
    path = tmp_path / "ft_safety_med_n2.json"
    path.write_text(json.dumps([DEMO, {**DEMO, "input": "more"}]))
    assert load_demonstrations(path, 2)["input"].tolist() == ["", "more"]
    with pytest.raises(DataError, match="2 demonstrations"):
        load_demonstrations(path, 3)
    path.write_text(json.dumps([DEMO, {"instruction": "x", "output": "y"}]))
    with pytest.raises(DataError, match=r"row 1.*missing field"):
        load_demonstrations(path)
    path.write_text(json.dumps([DEMO, {**DEMO, "output": " "}]))
    with pytest.raises(DataError, match="empty 'output'"):
        load_demonstrations(path)
    path.write_text(json.dumps([{**DEMO, "input": None}]))
    with pytest.raises(DataError, match="'input' is a NoneType"):
        load_demonstrations(path)
    path.write_text(json.dumps({"data": [DEMO]}))
    with pytest.raises(DataError, match="JSON list"):
        load_demonstrations(path)
    with pytest.raises(DataError, match="03_safe_responses"):
        load_demonstrations(tmp_path / "missing.json")


def test_split_subset_and_held_out(demos):
    full = demonstration_split("med", 100)
    assert len(demos) == 8 and demos.equals(full.head(8))
    with pytest.raises(ValueError, match="take=200"):
        demonstration_split("med", 100, take=200)
    held = held_out_demonstrations(demos, k=5, seed=1)
    assert len(held) == 5 and not set(held["instruction"]) & set(demos["instruction"])


def test_train_tiny_loss_falls_adapter_differs_and_is_reused(tmp_path, demos):
    config = tiny_config(tmp_path)
    result = train(config, demos)
    assert result.steps == 4 and result.n_demonstrations == 8 and not result.load_in_4bit
    assert result.eval_loss_after < result.eval_loss_before - 0.01, result.summary()
    assert [p["step"] for p in result.loss_curve] == [1, 2, 3, 4]
    assert result.train_tokens == 2 * sum(len(t) for t in demos_tokens(demos, config))
    assert result.tokens_per_s > 0
    assert result.trainable_params == 2 * (8 * 64 + 64 * 8 + 8 * 64 + 32 * 8)  # 2 layers x (q, v)
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    assert not (tmp_path / "adapter" / "checkpoints").exists()
    check = check_adapter(
        load_model("tiny-random", adapter_path=result.adapter_path),
        alpaca_prompts(held_out_demonstrations(demos, 3)),
    )
    assert check.max_abs_logit_diff > 1e-3 and check.n_prompts == 3
    again = train(config, demos)
    assert again.reused and again.eval_loss_after == result.eval_loss_after
    assert load_result(result.adapter_path).steps == 4
    with pytest.raises(ValueError, match="other demonstrations"):
        train(config, demos.head(4))
    with pytest.raises(ValueError, match="other learning_rate, lora_r"):
        train(tiny_config(tmp_path, lora_r=4, learning_rate=1e-3), demos)
    assert train(tiny_config(tmp_path, save_steps=100), demos).reused  # not part of the recipe


def demos_tokens(demos, config):
    tok = load_model("tiny-random").tokenizer
    return [
        tokenize_demonstration(tok, r, config.cutoff_len)["input_ids"]
        for r in demos.to_dict("records")
    ]


class StopAt(TrainerCallback):
    """Interrupts training at a step, as a crash would."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"interrupted at step {self.step}")


@pytest.mark.slow
@pytest.mark.parametrize("train_on_inputs", [True, False])
def test_first_training_loss_is_the_token_mean_cross_entropy(
    tmp_path, demos, smollm2, train_on_inputs
):
    """The first logged loss, computed here on the same batch and mask: 4 demonstrations are
    one effective batch (2 micro-batches of 2), so it is the cross-entropy of every next token
    that carries a label (the whole sequence, or the response only), summed over the 4
    unpadded demonstrations and divided by their count; the base model's, as fresh LoRA layers
    (B = 0) change nothing. SmolLM2, whose losses differ token by token (a random model's are
    all near log(vocab), so a wrong mask would hardly move their mean)."""
    tok, eos = smollm2.tokenizer, smollm2.tokenizer.eos_token_id
    total, count, four = torch.tensor(0.0), 0, demos.head(4)
    for record in four.to_dict("records"):
        prompt = format_prompt(record["instruction"], record["input"] or "")
        ids = tok(prompt + record["output"])["input_ids"] + [eos]
        labels = torch.tensor(ids[1:])
        if not train_on_inputs:
            labels[: len(tok(prompt)["input_ids"]) - 1] = IGNORE_INDEX
        with torch.no_grad():
            logits = smollm2.model(torch.tensor([ids])).logits[0, :-1]
        keep = labels != IGNORE_INDEX
        total += F.cross_entropy(logits[keep], labels[keep], reduction="sum")
        count += int(keep.sum())
    config = tiny_config(
        tmp_path,
        base_model="smollm2-135m-instruct",
        batch_size=4,
        micro_batch_size=2,
        num_epochs=1,
        learning_rate=1e-4,
        cutoff_len=512,
        train_on_inputs=train_on_inputs,
        eval_n=0,
    )
    result = train(config, four)
    assert result.steps == 1
    assert result.loss_start == pytest.approx(float(total / count), rel=1e-4)


def test_interrupted_run_resumes_from_checkpoint(tmp_path, demos):
    config = tiny_config(tmp_path)
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 3"):
        train(config, demos, callbacks=[StopAt(3)])
    assert (tmp_path / "adapter" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "adapter" / "training.json").exists()
    result = train(config, demos)
    assert result.resumed_from_step == 2 and result.steps == 4
    assert [p["step"] for p in result.loss_curve] == [1, 2, 3, 4]
    fresh = train(tiny_config(tmp_path / "fresh"), demos)
    assert result.eval_loss_after == pytest.approx(fresh.eval_loss_after, abs=1e-4)


def test_config_rejects_uneven_accumulation():
    with pytest.raises(ValueError, match="multiple"):
        QLoRAConfig(batch_size=10, micro_batch_size=4)
    assert QLoRAConfig().gradient_accumulation_steps == 32


@pytest.mark.slow
def test_train_4bit_smollm2(tmp_path, demos):
    """QLoRA as the paper's recipe runs it (NF4 weights, double quantization), float32 compute on
    CPU: the loss falls and the adapter changes the model, also after the eval-mode forward that
    made bitsandbytes repack its weights into a layout without a backward."""
    config = QLoRAConfig(
        "smollm2-135m-instruct",
        output_dir=str(tmp_path / "q"),
        batch_size=4,
        micro_batch_size=4,
        num_epochs=1,
        learning_rate=1e-3,
        warmup_steps=0,
        cutoff_len=64,
        load_in_4bit=True,
        gradient_checkpointing=False,
        eval_n=4,
    )
    result = train(config, demos)
    assert result.load_in_4bit and result.compute_dtype == "float32" and result.steps == 2
    assert result.eval_loss_after < result.eval_loss_before, result.summary()
    check = check_adapter(
        load_model("smollm2-135m-instruct", adapter_path=result.adapter_path),
        alpaca_prompts(held_out_demonstrations(demos, 2)),
    )
    assert check.max_abs_logit_diff > 1e-3
    # One point per optimizer step; the linear schedule from 1e-3 without warm-up over 2 steps.
    assert [p["step"] for p in result.loss_curve] == [1, 2]
    assert [p["learning_rate"] for p in result.loss_curve] == pytest.approx([1e-3, 5e-4])
    assert all(0 < p["loss"] < 20 for p in result.loss_curve), result.loss_curve


class Probe(TrainerCallback):
    """Records what training ran on (gradient checkpointing, 4-bit layers) and, before each
    optimizer step, the accumulated gradient of the LoRA B matrices: its norm over all of them
    and its smallest norm per matrix (zero: no gradient reached that matrix)."""

    def __init__(self):
        self.checkpointing, self.n_4bit = None, 0
        self.grad_norms, self.min_grad_norms = [], []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import bitsandbytes as bnb

        self.checkpointing = model.is_activation_checkpointing
        self.n_4bit = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        norms = [
            float(p.grad.norm()) if p.grad is not None else 0.0
            for n, p in model.named_parameters()
            if "lora_B" in n
        ]
        self.grad_norms.append(sum(x * x for x in norms) ** 0.5)
        self.min_grad_norms.append(min(norms))


# Losses and gradient norms of the same float32 sums in another order: observed differences are
# ~1e-7 relative; the loss itself moves ~1e-2 in these runs.
CURVE_RTOL = 1e-5


def curve(result) -> list[float]:
    return [p["loss"] for p in result.loss_curve]


def test_checkpointing_and_micro_batch_leave_the_loss_curve_unchanged(tmp_path, demos):
    """At a batch of 4, micro-batches of 4, 2 and 1 (accumulating 1, 2 and 4 of them), with and
    without gradient checkpointing, give one loss curve. LoRA dropout is 0 here: its masks are
    drawn per micro-batch (with checkpointing on vs off they are the same, see the NF4 test)."""
    runs, grads = {}, {}
    for micro, checkpointing in [(4, False), (4, True), (2, True), (1, False)]:
        probe = Probe()
        config = tiny_config(
            tmp_path / f"mb{micro}-gc{checkpointing}",
            micro_batch_size=micro,
            gradient_checkpointing=checkpointing,
            lora_dropout=0.0,
        )
        runs[micro, checkpointing] = train(config, demos, callbacks=[probe])
        grads[micro, checkpointing] = probe.grad_norms
        assert probe.checkpointing == checkpointing
        assert len(probe.grad_norms) == 4 and min(probe.min_grad_norms) > 0
    reference = runs[4, False]
    assert curve(reference)[0] - curve(reference)[-1] > 1000 * CURVE_RTOL * curve(reference)[0]
    for key, result in runs.items():
        assert result.steps == 4, key
        assert curve(result) == pytest.approx(curve(reference), rel=CURVE_RTOL), key
        assert result.eval_loss_after == pytest.approx(reference.eval_loss_after, rel=CURVE_RTOL)
        # The accumulated gradient itself (Adam would hide a gradient scaled by the number of
        # micro-batches from the loss curve).
        assert grads[key] == pytest.approx(grads[4, False], rel=CURVE_RTOL), key


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """tiny-random saved as a transformers folder, so that it can be loaded in 4 bits."""
    folder = tmp_path_factory.mktemp("tiny-random")
    load_model("tiny-random").model.save_pretrained(folder)
    return folder


@pytest.fixture
def nf4_tiny(monkeypatch, tiny_folder):
    """train() loads tiny-random in 4-bit NF4 with double quantization (models.loading's
    BitsAndBytesConfig), as it loads the paper's hub models: the QLoRA path on the tiny model."""

    def load(name, *, dtype, load_in_4bit):
        assert (name, load_in_4bit) == ("tiny-random", True)
        tiny = load_model(name)
        model = AutoModelForCausalLM.from_pretrained(
            tiny_folder, dtype=dtype, quantization_config=_quantization_config(True, dtype)
        )
        return LoadedModel(model.eval(), tiny.tokenizer, tiny.spec, tiny.model_id, tiny.revision)

    monkeypatch.setattr(qlora, "load_model", load)


def test_nf4_peft_with_gradient_checkpointing(tmp_path, demos, nf4_tiny):
    """The paper's setting (NF4 base, LoRA dropout 0.05, gradient checkpointing through peft's
    prepare_model_for_kbit_training) trains the adapter, and gives the loss curve that training
    without checkpointing gives."""
    runs = {}
    for checkpointing in (False, True):
        probe = Probe()
        config = tiny_config(
            tmp_path / f"gc{checkpointing}", load_in_4bit=True, gradient_checkpointing=checkpointing
        )
        runs[checkpointing] = result = train(config, demos, callbacks=[probe])
        assert result.load_in_4bit and result.compute_dtype == "float32"
        assert probe.checkpointing == checkpointing
        assert probe.n_4bit == 2 * 7  # q k v o gate up down in each of the 2 layers
        assert len(probe.grad_norms) == 4 and min(probe.min_grad_norms) > 0
        assert result.eval_loss_after < result.eval_loss_before - 0.01, result.summary()
    assert curve(runs[True]) == pytest.approx(curve(runs[False]), rel=CURVE_RTOL)
    assert runs[True].eval_loss_after == pytest.approx(runs[False].eval_loss_after, rel=CURVE_RTOL)


def test_guard_fires_when_no_gradient_reaches_the_adapter(tmp_path, demos):
    """A fresh adapter (B = 0) fails the guard; so does a run in which the LoRA B matrices get
    no gradient, and that run saves nothing."""
    from peft import LoraConfig, get_peft_model

    fresh = get_peft_model(load_model("tiny-random").model, LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(AdapterNoOpError, match="every LoRA B matrix at zero"):
        check_lora_trained(fresh)

    class CutLoraB(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.requires_grad_(False)

    with pytest.raises(AdapterNoOpError, match="no gradient reached it"):
        train(tiny_config(tmp_path, num_epochs=1), demos, callbacks=[CutLoraB()])
    assert not (tmp_path / "adapter" / "training.json").exists()


@pytest.fixture
def avx512bf16_cpu(monkeypatch):
    """This CPU as bitsandbytes sees one with AVX512-BF16, on any CPU: its 4-bit layers are
    built repackable, and the repacked matmul (bitsandbytes.functional.gemv_4bit, a kernel for
    those CPUs only) is computed here from the unpacked weights, with what the kernel has for a
    backward: none (torch's fallback for an op without one passes no gradient on)."""
    import copy

    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    repacked = []

    def kernel(A, B, out=None, transposed_A=False, transposed_B=False, state=None):
        assert state.packing_format_for_cpu
        repacked.append(tuple(B.shape))
        qweight, unpacked = bnbf._convert_weight_packed_for_cpu_inverse(
            B.clone(), copy.deepcopy(state)
        )
        weight = bnb.functional.dequantize_4bit(qweight, unpacked)
        return _NoBackward.apply(A, weight.to(A.dtype))

    monkeypatch.setattr(bnbf, "gemv_4bit", kernel)
    return repacked


def test_guard_catches_bitsandbytes_cpu_repacking(
    tmp_path, demos, nf4_tiny, avx512bf16_cpu, monkeypatch
):
    """The failure the guard was written for: on a CPU with AVX512-BF16, bitsandbytes repacks 4-bit
    weights at the first eval-mode forward into a layout without a backward. Without
    keep_4bit_weights_trainable no gradient reaches the adapter, and train() says so; with it,
    nothing is repacked and the adapter trains."""
    lm = qlora.load_model("tiny-random", dtype=torch.float32, load_in_4bit=True)
    assert all(m.support_avx512bf16_for_cpu for m in _linear4bit(lm.model))  # forced
    config = tiny_config(tmp_path / "kept", load_in_4bit=True, num_epochs=1, micro_batch_size=4)
    assert train(config, demos).loss_curve and not avx512bf16_cpu  # nothing repacked

    monkeypatch.setattr(qlora, "keep_4bit_weights_trainable", lambda model: None)
    config = tiny_config(tmp_path / "cut", load_in_4bit=True, num_epochs=1, micro_batch_size=4)
    with pytest.raises(AdapterNoOpError, match="no gradient reached it"):
        train(config, demos)
    assert avx512bf16_cpu  # the repacked layout was used


class _NoBackward(torch.autograd.Function):
    """x @ W^T whose backward passes nothing to x."""

    @staticmethod
    def forward(ctx, x, weight):
        return x @ weight.T

    @staticmethod
    def backward(ctx, grad):
        return None, None


def _linear4bit(model) -> list:
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def test_grid_names_and_before_after_table():
    from medsafe_utils.finetune.effects import finetune_harmfulness as table_of
    from medsafe_utils.finetune.figures import fig_before_after, fig_harm_vs_n
    from medsafe_utils.finetune.grid import finetune_grid

    runs = finetune_grid(["m", "org/x"], ["med", "both"], [100, 200], [100, 1800])
    assert [r.name for r in runs if r.base == "org/x"] == [
        "org--x__med_n100",
        "org--x__med_n200",
        "org--x__both_n100",
        "org--x__both_n1800",
    ]
    with pytest.raises(ValueError, match="unknown demonstration type"):
        finetune_grid(["m"], ["medical"], [100])
    judged = pd.DataFrame(
        {
            "judge": "k",
            "base_model": "m",
            "harm_set": ["medsafety_eval"] * 4 + ["advbench"] * 2,
            "origin": ["gpt4", "gpt4", "llama2", "llama2", "advbench", "advbench"],
            "type": ["none", "med", "none", "med", "none", "med"],
            "n": [0, 16, 0, 16, 0, 16],
            "item_id": ["a", "a", "b", "b", "c", "c"],
            "score": pd.array([5, 1, 4, None, 3, 1], dtype="Int64"),
        }
    )
    table = table_of(judged)
    assert list(table.columns) == [
        "judge",
        "model",
        "type",
        "n",
        "eval_set",
        "mean",
        "se",
        "ci_low",
        "ci_high",
        "n_items",
        "unscored",
        "delta",
        "test",
        "p_value",
        "n_pairs",
    ]
    row = table[(table["type"] == "med") & (table["eval_set"] == "MedSafety-Eval (Llama-2)")]
    assert (row["n"].item(), row["n_items"].item(), row["unscored"].item()) == (16, 0, 1)
    assert table.set_index(["type", "eval_set"])["mean"].to_dict()[("none", "advbench")] == 3
    for fig in (fig_before_after(table), fig_harm_vs_n(table)):
        assert len(fig.axes) >= 3
