"""Rows per dataset, as loaded and validated (python -m medsafe_utils.data summary)."""

from __future__ import annotations

from medsafe_utils.data.manifest import ensure_file, load_manifest
from medsafe_utils.data.medical import (
    BENCHMARKS,
    MMLU_MEDITRON,
    load_medical_benchmark,
    load_meditron_instructions,
)
from medsafe_utils.data.prompts import PROMPTS_PREFIX
from medsafe_utils.data.safety import (
    available_ft_splits,
    load_adv_ama,
    load_bianchi_safety,
    load_ft_split,
    load_general_harm,
    load_llama3_requests,
    load_medsafetybench,
)


def summarize() -> list[dict]:
    """One row per dataset: name, rows loaded, expected rows, files, licence."""
    manifest = load_manifest()["datasets"]
    general = load_general_harm()
    splits = available_ft_splits()
    counts = {
        "medsafetybench_train": len(load_medsafetybench("train")),
        "medsafetybench_test": len(load_medsafetybench("test")),
        "medsafetybench_ft_splits": sum(
            len(load_ft_split(k, n)) for k in splits for n in splits[k]
        ),
        "medsafetybench_llama3": len(load_llama3_requests()),
        "adv_ama_prompts": sum(len(load_adv_ama(v)) for v in ("prompts", "tutorial", "cat6")),
        "prompts": _count_prompt_files(),
        "advbench": len(general.requests) if general.name == "advbench" else None,
        "bianchi_safety": len(load_bianchi_safety()),
    } | {name: len(load_medical_benchmark(name, MMLU_MEDITRON)) for name in BENCHMARKS}
    counts["meditron_instructions"] = len(load_meditron_instructions())
    for name in ("released_med_safety_bench", "released_meditron"):  # source files, verified
        counts[name] = len([ensure_file(e["path"]) for e in manifest[name]["files"]])
    rows = [
        {
            "dataset": name,
            "rows": counts[name],
            "expected": manifest[name]["rows"],
            "files": len(manifest[name]["files"]),
            "license": manifest[name]["license"],
        }
        for name in manifest
    ]
    if general.name != "advbench":
        rows.append(
            {
                "dataset": general.name,
                "rows": len(general.requests),
                "expected": None,
                "files": None,
                "license": "user-supplied (gated)",
            }
        )
    return rows


def _count_prompt_files() -> int:
    entries = load_manifest()["datasets"]["prompts"]["files"]
    return len([ensure_file(e["path"]) for e in entries if e["path"].startswith(PROMPTS_PREFIX)])
