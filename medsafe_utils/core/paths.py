"""Every path the project uses, anchored at the repository root.

A notebook behaves the same under Jupyter (cwd = notebooks/) and papermill (cwd = the caller)
because nothing here depends on the working directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
MANIFEST_PATH = DATA_DIR / "manifest.json"
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

# Environment variables a user may set.
MIRROR_ENV = "MEDSAFE_DATA_MIRROR"  # a local folder laid out like the data mirror
DOWNLOADS_ENV = "MEDSAFE_DATA_DIR"  # where fetched data lands (default data/downloads)
CACHE_ENV = "MEDSAFE_CACHE"  # converted models and other caches (default .cache)
RESULTS_ENV = "MEDSAFE_RESULTS"  # results root (default results)
HEXPHI_ENV = "MEDSAFE_HEXPHI_DIR"  # folder with HEx-PHI's category_*.csv (gated, user-supplied)


def downloads_dir() -> Path:
    """Folder where fetched data files land (gitignored)."""
    return Path(os.environ.get(DOWNLOADS_ENV, DATA_DIR / "downloads"))


def cache_dir() -> Path:
    """Folder for converted models and other rebuildable caches (gitignored)."""
    return Path(os.environ.get(CACHE_ENV, REPO_ROOT / ".cache"))


def results_root() -> Path:
    """Root of all results; one folder per profile below it."""
    return Path(os.environ.get(RESULTS_ENV, REPO_ROOT / "results"))


# A profile is a folder name under params/ and results/, never a path ('../x', '/tmp/x').
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_profile(profile: str) -> str:
    """`profile` if it is a plain name (letters, digits, '_', '-', '.'); else ValueError."""
    if not isinstance(profile, str) or not PROFILE_NAME.fullmatch(profile) or ".." in profile:
        raise ValueError(
            f"profile {profile!r} is not a profile name: a profile is the name of a folder "
            f"under {PARAMS_DIR} (letters, digits, '_', '-', '.'), not a path"
        )
    return profile


def step_dir(profile: str, step: str) -> Path:
    """The only folder a notebook writes to: results/<profile>/<NN_step>/ (created)."""
    path = results_root() / check_profile(profile) / step
    path.mkdir(parents=True, exist_ok=True)
    return path


def hexphi_dir() -> Path:
    """Where a user who accepted HEx-PHI's licence puts its CSVs (env var or data/hex-phi)."""
    return Path(os.environ.get(HEXPHI_ENV, DATA_DIR / "hex-phi"))
