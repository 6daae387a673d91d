"""Static checks on the package's import graph (no module is imported: the sources are parsed with ``ast``).

Only imports that run when a module is imported count: top-level ``import`` / ``from ... import`` statements,
including those under top-level ``if`` / ``try`` / ``with`` blocks, but not those inside functions or classes
(which run later, on first use). Relative imports are resolved to module names inside the package.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = "asapnet"
SRC = Path(__file__).resolve().parents[1] / "src" / PKG


def _modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the package (a package is named by its __init__.py)."""
    mods = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _top_level_imports(tree: ast.Module):
    """Import statements run at import time: at module level or nested in if/try/with blocks, never in a def/class."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
            for field in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest module of the package that ``name`` names (``a.b.c`` -> ``a.b`` when c is an attribute)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = mod if is_pkg else mod.rpartition(".")[0]  # the package relative imports start from
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = here.split(".")
                    if node.level > 1:
                        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # ``from pkg import sub`` imports the submodule pkg.sub; ``from mod import name`` imports mod
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names
                                    if f"{base}.{alias.name}" in modules]
            for target in targets:
                dep = _resolve(target, modules)
                # importing a module's own package (or an ancestor) is no edge: it is already being imported
                if dep is not None and dep != mod and not mod.startswith(dep + "."):
                    graph[mod].add(dep)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [m0, m1, ..., m0], or None (iterative DFS with colours)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        colour[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
            elif colour[child] == GREY:
                path = [n for n, _ in stack]
                return path[path.index(child):] + [child]
            elif colour[child] == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_graph_sees_the_package():
    graph = _import_graph()
    assert f"{PKG}.cli" in graph and f"{PKG}.models" in graph and f"{PKG}.data.io" in graph
    assert graph[f"{PKG}.__main__"] == {f"{PKG}.cli"}, "asapnet.__main__ only imports the cli"


def test_no_import_cycle():
    cycle = _find_cycle(_import_graph())
    assert cycle is None, "import cycle at module import time: " + " -> ".join(cycle)


def test_nothing_imports_the_cli():
    graph = _import_graph()
    users = sorted(m for m, deps in graph.items() if f"{PKG}.cli" in deps and m != f"{PKG}.__main__")
    assert not users, f"modules importing {PKG}.cli at import time: {users}"


def test_cycle_finder_reports_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) in (
        ["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"])
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
