"""The README as a newcomer reads it: every path it names exists, every command it shows parses,
and its data table says what the manifest downloads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from medsafe_utils.data.sources import SOURCES
from medsafe_utils.pipeline.run import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Paths a run or the set-up makes, so a fresh clone does not have them yet.
MADE_BY_A_RUN = ("results/", "data/downloads/", "data/hex-phi/", ".venv/", "scratch/", ".cache/")
TOP = {p.name for p in REPO.iterdir()} - {".git"}


def _links(text: str) -> set[str]:
    """Relative link targets (they resolve from the document's own folder, as on GitHub)."""
    return {m for m in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in m}


def _ticked_paths(text: str) -> set[str]:
    """Backticked words that start at a top-level entry of the repository (paths from its root)."""
    ticked = set()
    for word in re.findall(r"`([^`\s]+)`", text):
        if word.split("/")[0] in TOP and ("/" in word or "." in word) and "*" not in word:
            ticked.add(word.rstrip(".,:;"))
    return ticked


def _placeholder(path: str) -> bool:
    return path.startswith(MADE_BY_A_RUN) or bool(re.search(r"<[^>]+>|NN|\{", path))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_named_exists(doc):
    text = doc.read_text(encoding="utf-8")
    missing = [p for p in sorted(_links(text)) if not (doc.parent / p).exists()]
    missing += [
        p for p in sorted(_ticked_paths(text)) if not _placeholder(p) and not (REPO / p).exists()
    ]
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def _commands(text: str, program: str) -> list[list[str]]:
    """Each `program ...` line of the bash blocks, continuation lines joined, comments cut."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    found = []
    for line in lines:
        words = shlex.split(line, comments=True)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]  # VAR=value before the command
        if words and words[0] == program:
            found.append(words[1:])
    return found


def test_run_all_commands_parse():
    text = "\n".join(doc.read_text(encoding="utf-8") for doc in DOCS)
    commands = _commands(text, "./run_all.sh")
    assert len(commands) >= 5, f"expected the README's ./run_all.sh commands, found {commands}"
    parser = build_parser()
    for args in commands:
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"./run_all.sh {shlex.join(args)} does not parse")


def test_two_commands_are_the_scripts_as_typed():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == [
        "./run_all.sh",
        "./run_tests.sh",
    ]


def test_data_table_names_the_download_source():
    """Each repository the data table says a file downloads from is in that dataset's URL."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    urls = " ".join(
        f"{s.get('url')} {' '.join(s.get('file_urls', {}).values())}" for s in SOURCES.values()
    )
    table = text.split("| dataset | rows | downloaded from", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| [^|]+ \| [^|]+ \| ([^|]+) \| [^|]+ \|$", table, flags=re.M)
    named = {m for cell in rows for m in re.findall(r"\b([\w.-]+/[\w.-]+)\b", cell)}
    named = {n for n in named if not n.startswith(("exps/", "data/", "training/", "evaluation/"))}
    assert named, "the README's data table names no repository"
    assert not [n for n in named if n not in urls], f"not where the manifest downloads: {named}"
