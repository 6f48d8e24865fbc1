"""Which paper figure or table each artifact regenerates, and results/<profile>/INDEX.md."""

from __future__ import annotations

from pathlib import Path

# Artifact stem -> what it regenerates in the paper (Han et al., NeurIPS 2024 D&B).
PAPER_MAP: dict[str, str] = {
    "tab_dataset_stats": "Dataset statistics: requests per principle and origin (Sec. 3)",
    "tab_generation_funnel": "Generation funnel: generated, extracted, filtered, deduplicated",
    "fig_requests_per_principle": "Requests per AMA principle (Sec. 3)",
    "tab_gcg": "GCG jailbreak of Llama-2-7b-chat, per goal (Sec. 3, App.)",
    "fig_gcg_loss": "GCG loss curves (App.)",
    "tab_splits": "Structure of the published fine-tuning splits (App.)",
    "tab_responses_summary": "Responses collected per model and harm set (Sec. 4)",
    "fig_harmfulness_by_model": "Fig. 2: mean harmfulness per model and harm set (95% interval)",
    "fig_score_distribution": "Figs. 4–5: distribution of harmfulness scores per model and set",
    "fig_harmfulness_by_category": "Per-principle breakdown of harmfulness (App.)",
    "tab_harmfulness": "Fig. 2 as a table: mean, SE, 95% CI, n per model × set, origin, principle",
    "tab_judge_agreement": "Agreement between judges (beyond the paper)",
    "fig_before_after": "Fig. 3: harmfulness before vs after fine-tuning, per type and set",
    "fig_harm_vs_n": "Harmfulness against the number of safety demonstrations (Fig. 3, App.)",
    "tab_finetune_harmfulness": "Fig. 3 as a table: harmfulness per base model, type, n and set",
    "tab_training": "Fine-tuning runs: loss, steps, throughput (beyond the paper)",
    "tab_medical_accuracy": "Table: medical accuracy before and after fine-tuning",
    "fig_medical_before_after": "Medical accuracy before and after fine-tuning (table as a figure)",
}


def artifacts(profile_dir: Path) -> list[Path]:
    """Every figure (PNG) and table (CSV) of a profile's step folders."""
    found = []
    for step in sorted(p for p in profile_dir.iterdir() if p.is_dir() and p.name[:2].isdigit()):
        found += sorted(step.glob("fig_*.png")) + sorted(step.glob("tab_*.csv"))
    return found


def write_index(profile_dir: Path) -> Path:
    """results/<profile>/INDEX.md: each figure and table with what it regenerates."""
    lines = [f"# Results index: {profile_dir.name}", "", "| file | regenerates |", "|---|---|"]
    for path in artifacts(profile_dir):
        rel = path.relative_to(profile_dir).as_posix()
        lines.append(f"| [{rel}]({rel}) | {PAPER_MAP.get(path.stem, 'beyond the paper')} |")
    index = profile_dir / "INDEX.md"
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index
