"""Alpaca formatting and masking, demonstration loading, QLoRA training (tiny-random float32 and
SmolLM2 4-bit), resume and reuse, and that a trained adapter changes its model."""

import json

import pandas as pd
import pytest
import torch
from transformers import TrainerCallback

from medsafe_utils.core.errors import DataError
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
from medsafe_utils.models.adapters import check_adapter

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


def test_interrupted_run_resumes_from_checkpoint(tmp_path, demos):
    config = tiny_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
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
    assert isinstance(pd.DataFrame(result.loss_curve), pd.DataFrame) and torch.isfinite(
        torch.tensor(result.eval_loss_after)
    )


def test_grid_names_and_before_after_table():
    from medsafe_utils.finetune.figures import fig_before_after, fig_harm_vs_n
    from medsafe_utils.finetune.grid import finetune_grid
    from medsafe_utils.finetune.grid import finetune_harmfulness as table_of

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
        "n_items",
        "unscored",
    ]
    row = table[(table["type"] == "med") & (table["eval_set"] == "MedSafety-Eval (Llama-2)")]
    assert (row["n"].item(), row["n_items"].item(), row["unscored"].item()) == (16, 0, 1)
    assert table.set_index(["type", "eval_set"])["mean"].to_dict()[("none", "advbench")] == 3
    for fig in (fig_before_after(table), fig_harm_vs_n(table)):
        assert len(fig.axes) >= 3
