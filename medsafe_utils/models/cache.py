"""The keyword that hands a KV cache to a model's forward and generate: transformers 5.x renamed
`past_key_values` to `cache` (the old name warns, and goes in 6); older 5.x takes only the old
name, and would silently drop the new one into **kwargs, so the model's own signature decides."""

from __future__ import annotations

import functools
import inspect


@functools.cache
def _keyword(model_class: type) -> str:
    parameters = inspect.signature(model_class.forward).parameters  # through deprecate_kwarg
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(model, cache) -> dict:
    """{keyword: cache} for calling `model` or its generate (a peft wrapper: its base model's)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_keyword(type(base)): cache}
