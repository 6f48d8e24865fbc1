"""The one resumable store: finished items as JSONL records, keyed by all that determines them.

    keys = [item_key(model, revision, "kind", item, settings) for item in items]
    with Store(path).resume(keys, desc="kind") as todo:
        for rows in todo.batches(8):            # or `for i in todo:`, or a callback
            for i, value in zip(rows, compute([items[i] for i in rows])):
                todo.save(i, {"value": value})  # appended and flushed at once
    values = todo.values("value")               # one per key, in the order of `keys`

A killed run loses at most the work in flight; a rerun computes only the missing keys. A line
that cannot be read (a torn last line, or damage anywhere) costs that line only: it is dropped
with a warning and the file rewritten without it, so appends stay line-aligned.

Shards: jobs of one sweep (pipeline.fanout) each write their own file, <step>/shards/<shard>/NAME,
and never another's. A store reads its file and, read-only, the rest of its family: the main
<step>/NAME and every <step>/shards/*/NAME; a torn line of another's file is skipped, not repaired.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medsafe_utils.core.quiet import TextBar

log = logging.getLogger(__name__)
SHARDS_DIR = "shards"


def family(path: Path) -> list[Path]:
    """The other files of a store's family that exist: the main file and every shard's."""
    step = path.parent.parent.parent if path.parent.parent.name == SHARDS_DIR else path.parent
    candidates = [step / path.name, *sorted((step / SHARDS_DIR).glob(f"*/{path.name}"))]
    own = path.resolve()
    return [p for p in candidates if p.is_file() and p.resolve() != own]


def item_key(model: str, revision: str, kind: str, item, settings: dict) -> str:
    """sha256 over (model, revision, kind of work or prompt format, the item, its settings)."""
    payload = json.dumps(
        {
            "model": model,
            "revision": revision,
            "format": kind,
            "prompt": item,
            "settings": settings,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Store:
    """Finished records by key, kept in a JSONL file (or only in memory when path is None)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._records: dict[str, dict] = {}
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for other in family(self.path):
                self._read_other(other)
            if self.path.exists():
                self._load()

    def _read_other(self, path: Path) -> None:
        """Another job's records, read-only: a line it is still writing is skipped."""
        for line in path.read_bytes().splitlines():
            try:
                record = json.loads(line)
                self._records.setdefault(record["key"], record)
            except (ValueError, KeyError, TypeError):
                log.info("%s: skipping a torn or unfinished line (not ours to repair)", path)

    def _load(self) -> None:
        raw = self.path.read_bytes()
        good, damaged = [], False
        for lineno, line in enumerate(raw.splitlines(keepends=True), start=1):
            try:
                record = json.loads(line)
                self._records.setdefault(record["key"], record)
                good.append(line if line.endswith(b"\n") else line + b"\n")
            except (ValueError, KeyError, TypeError):  # ValueError: bad JSON or UTF-8
                log.warning(
                    "%s:%d: dropping a torn or damaged line (the item is computed again)",
                    self.path,
                    lineno,
                )
                damaged = True
        if damaged or (raw and not raw.endswith(b"\n")):  # rewrite so that appends stay aligned
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(b"".join(good))
            os.replace(tmp, self.path)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict | None:
        """The stored record of a key, or None."""
        return self._records.get(key)

    def add(self, record: dict) -> None:
        """Keep a finished record (with its 'key'; a known key is ignored), flushed at once.

        A killed process loses nothing added; there is no fsync (it costs ~5 ms and stalls every
        request in flight), so a power cut may lose the last few records."""
        if record["key"] in self._records:
            return
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._records[record["key"]] = record

    @contextmanager
    def resume(self, keys: list[str], desc: str = "") -> Iterator[Pending]:
        """The unfinished items of `keys` with a progress bar (started at the finished ones)."""
        first: dict[str, int] = {}  # each key's first position
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        indices = [i for key, i in first.items() if key not in self]
        bar = TextBar(total=len(first), initial=len(first) - len(indices), desc=desc, unit="item")
        todo = Pending(self, keys, indices, bar)
        try:
            yield todo
        finally:
            todo.bar.close()


class Pending:
    """The items still to compute, as positions in `keys` (one per unfinished key, in order)."""

    def __init__(self, store: Store, keys: list[str], indices: list[int], bar: TextBar):
        self.store, self.keys, self.indices, self.bar = store, keys, indices, bar

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def batches(self, size: int) -> Iterator[list[int]]:
        """The positions in batches of `size`."""
        for start in range(0, len(self.indices), size):
            yield self.indices[start : start + size]

    def save(self, index: int, record: dict) -> None:
        """Store the finished item at position `index` (its key goes first in the record)."""
        self.store.add({"key": self.keys[index], **record})
        self.bar.update(1)

    def values(self, field: str | None = None) -> list:
        """One stored record (or its `field`) per key, in the order of the keys."""
        records = [self.store.get(k) for k in self.keys]
        if None in records:
            raise KeyError(f"{records.count(None)} of {len(records)} items were not saved")
        return records if field is None else [r[field] for r in records]
