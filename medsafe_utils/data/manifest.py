"""The data manifest (URL, sha256, size, licence per file) and the fetch that honours it.

Files land in `paths.downloads_dir()`, copied from the mirror named by MEDSAFE_DATA_MIRROR when it
is set, else downloaded from their URLs. Every file is checked against its sha256 before use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from medsafe_utils.core import paths
from medsafe_utils.core.errors import DataError
from medsafe_utils.core.quiet import TextBar
from medsafe_utils.core.readers import read_json, sha256_of
from medsafe_utils.data.source_extract import extract
from medsafe_utils.data.sources import (
    MSB_RAW,
    PROMPT_RECIPES,
    SKIP_PREFIXES,
    SKIP_SUFFIXES,
    SOURCES,
)


def load_manifest(path: Path = paths.MANIFEST_PATH) -> dict:
    """The committed manifest: {dataset: {license, canonical, rows, files: [...]}}."""
    return read_json(Path(path))


def manifest_entry(relpath: str, manifest: dict | None = None) -> dict:
    """The manifest record of one file, by its path relative to the data root."""
    manifest = manifest or load_manifest()
    for name, dataset in manifest["datasets"].items():
        for entry in dataset["files"]:
            if entry["path"] == relpath:
                return {**entry, "dataset": name}
    raise DataError(
        paths.MANIFEST_PATH,
        f"no entry for {relpath!r}",
        expected="a path listed in data/manifest.json",
    )


def build_manifest(mirror: Path) -> dict:
    """Rebuild the manifest from a mirror folder (maintainers: after the mirror changes)."""
    datasets = {}
    for name, source in SOURCES.items():
        files = []
        for path in sorted((mirror / source["prefix"]).rglob("*")):
            if (
                not path.is_file()
                or path.suffix in SKIP_SUFFIXES
                or path.name.startswith(SKIP_PREFIXES)
            ):
                continue
            rel = path.relative_to(mirror).as_posix()
            inner = rel[len(source["prefix"]) :]
            url = source.get("file_urls", {}).get(inner) or (
                source["url"] + urllib.parse.quote(inner) if source["url"] else None
            )
            entry = {
                "path": rel,
                "url": url,
                "sha256": sha256_of(path),
                "size": path.stat().st_size,
            }
            if url is None and inner in PROMPT_RECIPES:
                recipe = dict(PROMPT_RECIPES[inner])
                entry["extract"] = {"source": f"{MSB_RAW}/{recipe.pop('file')}", **recipe}
            files.append(entry)
        datasets[name] = {k: source[k] for k in ("license", "canonical", "rows")} | {"files": files}
    return {"version": 1, "datasets": datasets}


def _copy_or_download(entry: dict, target: Path, mirror: Path | None) -> None:
    """Put one file at `target`, atomically, from the mirror or its URL."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        if mirror is not None:
            source = mirror / entry["path"]
            if not source.is_file():
                raise DataError(
                    source,
                    "missing from the data mirror",
                    expected=f"the file {entry['path']} under {mirror}",
                )
            shutil.copyfile(source, tmp_path)
        elif entry.get("extract"):
            recipe = {k: v for k, v in entry["extract"].items() if k != "source"}
            source = entry["extract"]["source"]
            tmp_path.write_bytes(extract(_download_text(source), recipe, where=source).encode())
        elif entry.get("url"):
            tmp_path.write_bytes(_download(entry["url"], entry["path"]))  # files of a few MB
        else:
            raise DataError(
                entry["path"],
                "has no byte-identical download URL "
                "(extracted from the original sources, see the manifest's canonical)",
                expected=f"a data mirror named by {paths.MIRROR_ENV}",
            )
        _check(tmp_path, entry, shown_as=entry["path"])
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _check(path: Path, entry: dict, shown_as: str | Path) -> None:
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise DataError(
            shown_as,
            f"checksum mismatch: sha256 {actual} (size {path.stat().st_size})",
            expected=f"sha256 {entry['sha256']} (size {entry['size']}); "
            "the file is truncated or altered: delete it and fetch again",
        )


def mirror_dir() -> Path | None:
    """The local mirror folder named by MEDSAFE_DATA_MIRROR, if any."""
    value = os.environ.get(paths.MIRROR_ENV)
    if not value:
        return None
    mirror = Path(value).expanduser()
    if not mirror.is_dir():
        raise DataError(
            mirror, f"{paths.MIRROR_ENV} names no folder", expected="a data mirror folder"
        )
    return mirror


def ensure_file(relpath: str, manifest: dict | None = None) -> Path:
    """Local path of a manifest file: fetched if missing, always checked against its sha256."""
    entry = manifest_entry(relpath, manifest)
    target = paths.downloads_dir() / relpath
    if not target.exists():
        _copy_or_download(entry, target, mirror_dir())
    _check(target, entry, shown_as=target)
    return target


def fetch(datasets: list[str] | None = None, manifest: dict | None = None) -> list[Path]:
    """Fetch (and verify) every file of the named datasets, or of all; returns their paths."""
    manifest = manifest or load_manifest()
    names = datasets or list(manifest["datasets"])
    unknown = sorted(set(names) - set(manifest["datasets"]))
    if unknown:
        raise DataError(
            paths.MANIFEST_PATH,
            f"unknown dataset(s) {unknown}",
            expected=f"one of {sorted(manifest['datasets'])}",
        )
    entries = [e for n in names for e in manifest["datasets"][n]["files"]]
    return [ensure_file(e["path"], manifest) for e in TextBar(entries, desc="fetch", unit="file")]


_sources: dict[str, str] = {}


def _download(url: str, name: str) -> bytes:
    """The bytes at `url`; a DataError naming the file, its URL and the mirror variable when
    they cannot be had (no network, a proxy, HTTP 404, a timeout, a dropped connection)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.read()
    except (OSError, ValueError) as err:  # URLError, HTTPError and timeouts are OSErrors
        reason = getattr(err, "reason", None) or err
        raise DataError(
            name,
            f"could not be downloaded from {url} ({type(err).__name__}: {reason})",
            expected="network access to that URL, or a local copy of the data mirror in a "
            f"folder named by {paths.MIRROR_ENV}",
        ) from None


def _download_text(url: str) -> str:
    """A source file's text, downloaded once per process."""
    if url not in _sources:
        _sources[url] = _download(url, url.rpartition("/")[2] or url).decode("utf-8")
    return _sources[url]
