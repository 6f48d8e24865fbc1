"""Data layer: a manifest with checksums, fetch from URL or mirror, validated loaders.

from medsafe_utils.data import load_medsafetybench
test = load_medsafetybench("test")   # 900 rows: request, safe_response, category, origin, ...
"""

from medsafe_utils.data.manifest import ensure_file, fetch, load_manifest
from medsafe_utils.data.medical import (
    BENCHMARKS,
    MMLU_MEDICAL,
    MMLU_MEDITRON,
    fewshot_pool,
    load_medical_benchmark,
    load_meditron_instructions,
    load_mmlu_medical,
    scored_items,
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
    "MMLU_MEDITRON",
    "ORIGINS",
    "GeneralHarmSet",
    "alpaca_template",
    "available_ft_splits",
    "ensure_file",
    "fetch",
    "fewshot_pool",
    "load_adv_ama",
    "load_bianchi_safety",
    "load_ft_split",
    "load_general_harm",
    "load_llama3_requests",
    "load_manifest",
    "load_medical_benchmark",
    "load_meditron_instructions",
    "load_medsafetybench",
    "load_mmlu_medical",
    "prompt_text",
    "refusal_prefixes",
    "sample_per_group",
    "scored_items",
]
