"""Where each dataset comes from: used to (re)build data/manifest.json from a mirror folder.

Download URLs point at byte-identical copies (raw files at a fixed commit), so the sha256 in the
manifest holds for both a mirror copy and a download. `canonical` names the upstream home.
"""

from __future__ import annotations

MSB_COMMIT = "191aa7954b82458079425292730d6cb28a89565d"
MSB_RAW = f"https://raw.githubusercontent.com/AI4LIFE-GROUP/med-safety-bench/{MSB_COMMIT}"
MSB_HOME = "https://github.com/AI4LIFE-GROUP/med-safety-bench"
MSB_LICENSE = "MIT (research use only)"
MEDITRON_COMMIT = "a4c22cbbf767e487e304417a02daa28b0a7daca1"  # th789/meditron, the pinned fork
MEDITRON_RAW = f"https://raw.githubusercontent.com/th789/meditron/{MEDITRON_COMMIT}"


def _msb(path: str, rows: int, upstream: str | None = None, license: str = MSB_LICENSE) -> dict:
    """A dataset of the original repository, mirrored under medsafetybench/<path>."""
    return {
        "prefix": f"medsafetybench/{path}",
        "url": f"{MSB_RAW}/{upstream or path}",  # upstream: its path there, if not `path`
        "license": license,
        "canonical": MSB_HOME,
        "rows": rows,
    }


# dataset -> mirror prefix, URL of the prefix (None: no byte-identical download), licence, home.
SOURCES: dict[str, dict] = {
    "medsafetybench_train": _msb("datasets/train/", 900),
    "medsafetybench_test": _msb("datasets/test/", 900),
    "medsafetybench_ft_splits": _msb(
        "datasets/train-splits-used-for-ft/",
        26100,  # all published splits together
        license=f"{MSB_LICENSE}; gen demonstrations from Bianchi et al. (CC BY-NC 4.0)",
    ),
    "medsafetybench_llama3": _msb("datasets/med_harm_llama3/", 74374),
    "adv_ama_prompts": _msb("adv_ama_prompts/", 28, "exps/adv_attack/adv_ama_prompts/", "MIT"),
    "prompts": {
        "prefix": "medsafetybench/prompts/",
        # Extracted from the original Python sources by variable name (prompts/SOURCES.md):
        # only alpaca.json exists upstream as a file of its own.
        "url": None,
        "file_urls": {"alpaca.json": f"{MSB_RAW}/training/templates/alpaca.json"},
        "license": "MIT",
        "canonical": f"{MSB_HOME}/tree/{MSB_COMMIT}/exps",
        "rows": 18,
    },
    "advbench": {
        "prefix": "advbench/",
        # Byte-identical carrier copy; it has one row more than llm-attacks' 520 (see safety.py).
        "url": "https://raw.githubusercontent.com/YancyKahn/PocoGCG/"
        "131c89005c410871dfeb53940ec4c7388084edfb/data/advbench/",
        "license": "MIT",
        "canonical": "https://github.com/llm-attacks/llm-attacks (data/advbench)",
        "rows": 520,
    },
    "bianchi_safety": {
        "prefix": "safety_tuned_llamas/",
        "url": "https://raw.githubusercontent.com/vinid/safety-tuned-llamas/"
        "36a4b8d5c2177ed165bf61f59b590161394f7f12/data/training/",
        "license": "CC BY-NC 4.0",
        "canonical": "https://github.com/vinid/safety-tuned-llamas",
        "rows": 2483,
    },
    "medqa": {
        "prefix": "medqa/",
        "url": "https://raw.githubusercontent.com/Taewhoo/BioRAG/"
        "fdb2e334aa08ad6fc3e3fefd91e409961ebf3e0b/",
        "license": "MIT",
        "canonical": "https://github.com/jind11/MedQA (data_clean/questions/US/4_options)",
        "rows": 1273,
    },
    "medmcqa": {
        "prefix": "medmcqa/",
        "url": "https://raw.githubusercontent.com/Saf9933/Medpredict/"
        "f8604a956addb057e059c8d1ecc8943ce3b38f45/data/medmcqa/",
        "license": "MIT",
        "canonical": "https://huggingface.co/datasets/openlifescienceai/medmcqa (validation)",
        "rows": 4183,
    },
    "pubmedqa": {
        "prefix": "pubmedqa/",
        "url": "https://raw.githubusercontent.com/pubmedqa/pubmedqa/"
        "1cbae8e92f72f20c8d3747cbb3bf5bc53554d997/data/",
        "license": "MIT",
        "canonical": "https://github.com/pubmedqa/pubmedqa",
        "rows": 500,
    },
    "mmlu_medical": {
        "prefix": "mmlu/",
        "url": "https://raw.githubusercontent.com/HaeChan0305/MLILAB-FedLLM/"
        "d92730e8bacd7b3a61e551e015e40588e10234b4/data/mmlu/",
        "license": "MIT",
        "canonical": "https://people.eecs.berkeley.edu/~hendrycks/data.tar",
        "rows": 2174,  # meditron's eleven subjects (the usual six: 1,089)
    },
    "meditron_instructions": {
        "prefix": "meditron/",
        # the fork MedSafetyBench pins as its meditron submodule
        "url": f"{MEDITRON_RAW}/evaluation/",
        "license": "Apache-2.0",
        "canonical": "https://github.com/th789/meditron (evaluation/instructions.json)",
        "rows": 19,  # named instructions
    },
    # The released code itself, byte for byte: the fidelity tests parse it and run its pure
    # functions (tests/released.py). Its Markdown and LICENSE files are skipped as docs.
    "released_med_safety_bench": {
        "prefix": "released/med-safety-bench/",
        "url": f"{MSB_RAW}/",
        "license": "MIT",
        "canonical": f"{MSB_HOME}/tree/{MSB_COMMIT}",
        "rows": 34,  # source files
    },
    "released_meditron": {
        "prefix": "released/meditron/",
        "url": f"{MEDITRON_RAW}/",
        "license": "Apache-2.0",
        "canonical": f"https://github.com/th789/meditron/tree/{MEDITRON_COMMIT}/evaluation",
        "rows": 6,  # source files
    },
}

# How each prompt text is rebuilt from the original source (prompts/SOURCES.md, checked by sha256):
# file -> source file in the repository at MSB_COMMIT, and the recipe of source_extract.extract.
_EXP01, _GCG = "exps/exp01_prompt_models.py", "exps/adv_attack/gcg.py"
_EVAL = "exps/text_for_gpt_eval.py"
PROMPT_RECIPES: dict[str, dict] = {
    "usage_policy_general.txt": {"file": _EVAL, "assign": "usage_policy_gen_harm"},
    "usage_policy_medical.txt": {"file": _EVAL, "assign": "usage_policy_med_harm"},
    "judge_rubric.txt": {"file": _EVAL, "assign": "rubric"},
    "judge_template.txt": {
        "file": "exps/exp02_eval_responses.py",
        "assign": "eval_prompt",
        "function": "eval_using_gpt",
    },
    "system_prompt_default.txt": {"file": _EXP01, "assign": "sys_prompt"},
    "safe_response_template.txt": {"file": "exps/exp03_generate_safe_responses.py", "lambda": 1},
    "request_generation_system_prompt.txt": {
        "file": "exps/adv_attack/generate_prompts.py",
        "assign": "system_prompt",
    },
    "harm_filter_template.txt": {
        "file": "exps/adv_attack/filter_harmful.py",
        "assign": "prompt_format",
    },
    "template_llama_family.txt": {"file": _EXP01, "lambda": 1},
    "template_medalpaca.txt": {"file": _EXP01, "lambda": 2},
    "template_med42.txt": {"file": _EXP01, "lambda": 3},
    "template_mistral.txt": {"file": _EXP01, "lambda": 4},
    "template_vicuna.txt": {"file": _EXP01, "lambda": 5},
    "template_pythia.txt": {"file": _EXP01, "lambda": 6},
    "gcg_template_llama2.txt": {
        "file": _GCG,
        "assign": "prompt_template",
        "function": "adv_suffix_llama2",
    },
    "gcg_template_llama3.txt": {
        "file": _GCG,
        "assign": "prompt_template",
        "function": "adv_suffix_llama3",
    },
    "refusal_prefixes.txt": {"file": _GCG, "assign": "PREFIXES"},
}

# Files in the mirror that are documentation, not data.
SKIP_SUFFIXES = (".md",)
SKIP_PREFIXES = ("LICENSE",)
