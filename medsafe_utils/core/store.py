"""An append-only JSONL cache of generations, keyed by everything that determines the output.

Each finished item is appended and flushed at once, so a killed run loses at most the work in
flight; a rerun skips finished keys; a torn last line (killed mid-write) is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def cache_key(model: str, revision: str, prompt_format: str, prompt, settings: dict) -> str:
    """sha256 over (model, revision, prompt format, prompt, generation settings)."""
    payload = json.dumps(
        {
            "model": model,
            "revision": revision,
            "format": prompt_format,
            "prompt": prompt,
            "settings": settings,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class GenerationCache:
    """Finished generations of one JSONL file: `get`, `__contains__`, `append`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, dict] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        good_end = 0
        for line in raw.splitlines(keepends=True):
            try:
                record = json.loads(line)
                self._records.setdefault(record["key"], record)
            except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
                log.warning(
                    "%s: ignoring a torn or invalid line at byte %d (left by a killed run)",
                    self.path,
                    good_end,
                )
                break
            good_end += len(line)
        if good_end < len(raw) or (raw and not raw.endswith(b"\n")):
            with open(self.path, "r+b") as fh:  # drop the torn tail so appends stay line-aligned
                fh.truncate(good_end)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict | None:
        """The cached record for a key, or None."""
        return self._records.get(key)

    def append(self, records: list[dict]) -> None:
        """Append finished records (each with a 'key'), flushed to the OS at once.

        A killed process loses nothing appended; there is no fsync per record (it costs ~5 ms
        and stalls every request in flight), so a power cut may lose the last few records."""
        fresh = [r for r in records if r["key"] not in self._records]
        if not fresh:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            for record in fresh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
        for record in fresh:
            self._records[record["key"]] = record
