"""Models: a registry of the paper's models, loading (dtype, 4-bit, adapters), prompt formats.

from medsafe_utils.models import load_model
lm = load_model("smollm2-135m-instruct")   # the embedded small model, float32 on CPU
"""

from medsafe_utils.models.loading import (
    LoadedModel,
    default_device,
    load_model,
    load_tokenizer,
    release,
    resolve_dtype,
)
from medsafe_utils.models.registry import ModelSpec, get_spec, registry

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "default_device",
    "get_spec",
    "load_model",
    "load_tokenizer",
    "registry",
    "release",
    "resolve_dtype",
]
