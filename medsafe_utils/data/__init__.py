"""Data layer: a manifest with checksums, fetch from URL or mirror, validated loaders.

from medsafe_utils.data import load_medsafetybench
test = load_medsafetybench("test")   # 900 rows: request, safe_response, category, origin, ...
"""

from medsafe_utils.data.manifest import ensure_file, fetch, load_manifest
from medsafe_utils.data.medical import (
    BENCHMARKS,
    MMLU_MEDICAL,
    load_medical_benchmark,
    load_mmlu_medical,
)
from medsafe_utils.data.prompts import alpaca_template, prompt_text, refusal_prefixes
from medsafe_utils.data.safety import (
    CATEGORIES,
    ORIGINS,
    GeneralHarmSet,
    available_ft_splits,
    load_adv_ama,
    load_bianchi_safety,
    load_ft_split,
    load_general_harm,
    load_llama3_requests,
    load_medsafetybench,
)
from medsafe_utils.data.sampling import sample_per_group

__all__ = [
    "BENCHMARKS",
    "CATEGORIES",
    "MMLU_MEDICAL",
    "ORIGINS",
    "GeneralHarmSet",
    "alpaca_template",
    "available_ft_splits",
    "ensure_file",
    "fetch",
    "load_adv_ama",
    "load_bianchi_safety",
    "load_ft_split",
    "load_general_harm",
    "load_llama3_requests",
    "load_manifest",
    "load_medical_benchmark",
    "load_medsafetybench",
    "load_mmlu_medical",
    "prompt_text",
    "refusal_prefixes",
    "sample_per_group",
]
