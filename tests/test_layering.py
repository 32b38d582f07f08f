"""Static checks on the package's shape: no import cycles between ravl modules.

Every import counts, including the lazy ones inside functions (a cycle that only bites at call time
is still a cycle), except a package ``__init__`` re-exporting its own submodules lazily.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


@cache
def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                deps |= {f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        deps = {d for d in deps if d in mods and d != name}
        if is_pkg:  # a package may hand out its own submodules
            deps = {d for d in deps if not d.startswith(name + ".")}
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = _import_graph()
    assert "ravl.collection" in graph and graph["ravl.eval.scoring"]
    assert _cycles(graph) == []


def test_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_only_the_store_and_collection_touch_sql():
    """Collection is the one door to the store: nothing else imports ravl.store, runs SQL or reaches
    into a collection's private database."""
    offenders = []
    for name, path in _modules().items():
        if name.startswith(("ravl.store", "ravl.collection.")) or name == "ravl.collection":
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(m == "sqlite3" or m.startswith(("ravl.store", "store")) for m in mods) or (
                        isinstance(node, ast.ImportFrom) and node.level and (node.module or "").startswith("store")):
                    offenders.append(f"{name} imports {mods}")
            if isinstance(node, ast.Attribute) and node.attr in ("_db", "db"):
                offenders.append(f"{name} uses .{node.attr} (line {node.lineno})")
    assert offenders == []
