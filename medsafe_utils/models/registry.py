"""Model registry (registry.yaml): a key, a hub id or a local path -> a ModelSpec."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import yaml

REGISTRY_PATH = Path(__file__).with_name("registry.yaml")
FORMATS = ("paper", "chat")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how to prompt it."""

    key: str
    source: str  # hf | gguf-package | tiny-random | openai
    hub_id: str | None = None  # hub id or local path (source hf)
    template: str = "pythia"  # prompts/template_<name>.txt, or "api"
    format: str = "chat"  # paper | chat
    group: str = "general"  # general | medical
    aligned: bool = False
    params_b: float | None = None
    revision: str | None = None
    api_model: str | None = None  # source openai: the model name the endpoint knows
    exp01_name: str | None = None  # its name in the released exp01; None: not in the study
    display: str | None = None  # its name in figures (models.labels); None: the key
    extra: dict = field(default_factory=dict)  # source-specific fields (package, gguf_file, ...)

    @property
    def in_exp01(self) -> bool:
        """Whether the released study (exps/exp01_prompt_models.py) prompted this model."""
        return self.exp01_name is not None


@cache
def registry() -> dict[str, ModelSpec]:
    """All registered models by key."""
    raw = yaml.safe_load(REGISTRY_PATH.read_text(encoding="utf-8"))
    known = set(ModelSpec.__dataclass_fields__) - {"key", "extra"}
    specs = {}
    for key, entry in raw.items():
        fields = {k: v for k, v in entry.items() if k in known}
        extra = {k: v for k, v in entry.items() if k not in known}
        specs[key] = ModelSpec(key=key, extra=extra, **fields)
    return specs


@cache
def exp01_names() -> dict[str, str]:
    """The released exp01's model names -> registry keys (e.g. 'llama3-1-8b' -> 'llama3.1-8b')."""
    return {s.exp01_name: key for key, s in registry().items() if s.exp01_name is not None}


def get_spec(name: str, *, format: str | None = None) -> ModelSpec:
    """A registry key or the released exp01's name of a model, else a local path or a hub id
    (prompted with its own chat template)."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"prompt format must be one of {FORMATS}, got {format!r}")
    specs = registry()
    name = name if name in specs else exp01_names().get(name, name)
    if name in specs:
        spec = specs[name]
    elif Path(name).expanduser().exists() or "/" in name:
        spec = ModelSpec(key=name, source="hf", hub_id=name, format="chat")
    else:
        raise KeyError(
            f"unknown model {name!r}: not in {REGISTRY_PATH.name} "
            f"({', '.join(sorted(specs))}), not a local path, not a hub id (org/name)"
        )
    if format is not None and format != spec.format:
        spec = replace(spec, format=format)
    return spec
