"""No import cycle in hanet/ (issue 15): the graph of the imports each module runs when
it is imported (module level, including under if/try; not the lazy imports inside
functions) has no strongly connected component.  `from pkg import submodule` is an
edge to the submodule; the implicit import of a parent package is not an edge."""
from __future__ import annotations

import ast
import os

import hanet

ROOT = os.path.dirname(os.path.dirname(hanet.__file__))


def _modules() -> dict[str, str]:
    mods = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, "hanet")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def _import_time_nodes(tree: ast.Module):
    """Import statements that run at import: module level, or nested in if/try/with."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []) or [])
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)


def _edges(name: str, path: str, mods: dict[str, str]) -> set[str]:
    is_pkg = path.endswith("__init__.py")
    out = set()
    for node in _import_time_nodes(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in mods)
            continue
        base = node.module or ""
        if node.level:
            parts = name.split(".")[: None if is_pkg else -1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        subs = {f"{base}.{a.name}" for a in node.names} & set(mods)
        out.update(subs)
        if len(subs) < len(node.names) and base in mods:
            out.add(base)
    return out - {name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_time_cycle_in_hanet():
    mods = _modules()
    assert len(mods) > 50 and "hanet.checkpoints.schema" in mods
    graph = {name: _edges(name, path, mods) for name, path in mods.items()}
    assert "hanet.models.deeplab" in graph["hanet.models"]  # edges are found at all
    assert _cycles(graph) == []
