"""The package a newcomer reads has no loops: `core` imports nothing above it, and no module
imports itself back through others (lazy and type-checking imports counted too)."""

from __future__ import annotations

import ast
from pathlib import Path

from medsafe_utils.core import paths

PACKAGE = paths.REPO_ROOT / "medsafe_utils"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its file (names resolved to modules)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medsafe_utils"):
                for alias in node.names:  # `from pkg import module` names a module
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("medsafe_utils")}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest import path from `start` back to itself (via modules, not package __init__s)."""
    paths_ = [[start]]
    seen = {start}
    while paths_:
        path = paths_.pop(0)
        for nxt in sorted(graph[path[-1]]):
            if nxt == start and len(path) > 1:
                return [*path, start]
            if nxt not in seen and not _is_package(nxt):
                seen.add(nxt)
                paths_.append([*path, nxt])
    return None


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def test_core_imports_nothing_above_it():
    above = {
        f"{m} imports {i}"
        for m, imports in import_graph().items()
        if m.startswith("medsafe_utils.core")
        for i in imports
        if not i.startswith("medsafe_utils.core") and i != "medsafe_utils"
    }
    assert not above, sorted(above)


def test_no_module_imports_itself_back():
    graph = import_graph()
    cycles = {
        " -> ".join(c) for m in graph if not _is_package(m) and (c := _cycle_through(graph, m))
    }
    assert not cycles, sorted(cycles)


def test_the_checks_see_a_cycle():
    """The graph walk finds a loop where there is one (so the test above can fail)."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": set()}
    assert _cycle_through(graph, "a.x") == ["a.x", "a.y", "a.z", "a.x"]
    assert _cycle_through(graph, "a.w") is None
