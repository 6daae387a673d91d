"""Static checks on the package's import graph (no module is imported: the sources are parsed with ``ast``).

Two graphs: the import-time graph counts only imports that run when a module is imported (top-level
``import`` / ``from ... import`` statements, including those under top-level ``if`` / ``try`` / ``with``
blocks, but not those inside functions or classes, which run later, on first use); it must have no cycle.
The full graph also counts the imports inside functions; the layering is checked on it, so a deferred
import cannot hide an upward dependency. Relative imports are resolved to module names inside the package.

Layers, from the bottom (a module imports only its own layer or lower ones):

    base      asapnet.options, asapnet.validation, asapnet.config, asapnet.console
    library   asapnet.models, .data, .metrics, .losses, .inference, .checkpoint
    training  asapnet.training
    tasks     asapnet.tasks
    apps      asapnet.apps, .bench, .convert, .pipeline
    cli       asapnet.cli
    entry     asapnet (the package's lazy public names), asapnet.__main__ and the ``python -m`` aliases
              asapnet.deblur / asapnet.denoise
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


def _all_imports(tree: ast.Module):
    """Every import statement of a module, also those inside functions and classes."""
    return (node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))


def _import_graph(deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules it imports: at import time, or with ``deferred`` also inside functions."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = mod if is_pkg else mod.rpartition(".")[0]  # the package relative imports start from
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in (_all_imports(tree) if deferred else _top_level_imports(tree)):
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


LAYERS = (
    ("base", ("options", "validation", "config", "console")),
    ("library", ("models", "data", "metrics", "losses", "inference", "checkpoint")),
    ("training", ("training",)),
    ("tasks", ("tasks",)),
    ("apps", ("apps", "bench", "convert", "pipeline")),
    ("cli", ("cli",)),
    ("entry", ("", "__main__", "deblur", "denoise")),
)


def _layer(module: str) -> int:
    """Index in :data:`LAYERS` of a package module (``asapnet.x.y`` is placed by ``x``)."""
    top = module[len(PKG) + 1:].split(".")[0] if module != PKG else ""
    for i, (_, tops) in enumerate(LAYERS):
        if top in tops:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_imports.py: add it to LAYERS")


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import of a module in a higher layer than the importer."""
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m))


def _cli_users(graph: dict[str, set[str]]) -> list[str]:
    """Modules outside asapnet.cli, other than the entry points, that import asapnet.cli or one of its modules."""
    entry = {PKG if not t else f"{PKG}.{t}" for t in LAYERS[-1][1]}
    return sorted(m for m, deps in graph.items() if m not in entry and not m.startswith(f"{PKG}.cli")
                  and any(d == f"{PKG}.cli" or d.startswith(f"{PKG}.cli.") for d in deps))


def test_nothing_imports_the_cli():
    users = _cli_users(_import_graph(deferred=True))
    assert not users, f"modules importing {PKG}.cli (also inside functions): {users}"


def test_every_module_has_a_layer():
    for module in _import_graph():
        _layer(module)


def test_dependencies_point_down():
    upward = _upward_imports(_import_graph(deferred=True))
    assert not upward, "imports of a higher layer (see LAYERS): " + "; ".join(upward)


def test_library_imports_no_task_training_app_or_cli():
    """models, data, metrics and losses hold architectures, data and measures only."""
    graph = _import_graph(deferred=True)
    low = ("models", "data", "metrics", "losses")
    high = ("tasks", "training", "apps", "bench", "convert", "pipeline", "cli")
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                 if m.split(".")[1:2] and m.split(".")[1] in low and d.split(".")[1:2] and d.split(".")[1] in high)
    assert not bad, "; ".join(bad)


def test_layer_checks_report_violations():
    """The checks above can fail: an upward import and a cli user in a made-up graph are reported."""
    fake = {f"{PKG}.models.x": {f"{PKG}.tasks.y"}, f"{PKG}.tasks.y": {f"{PKG}.models.x", f"{PKG}.cli.parsers"},
            f"{PKG}.cli.commands": {f"{PKG}.tasks.y"}, f"{PKG}.__main__": {f"{PKG}.cli"}}
    assert _upward_imports(fake) == [f"{PKG}.models.x -> {PKG}.tasks.y", f"{PKG}.tasks.y -> {PKG}.cli.parsers"]
    assert _cli_users(fake) == [f"{PKG}.tasks.y"]


def test_cycle_finder_reports_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) in (
        ["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"])
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


#: modules allowed over :data:`MAX_LINES`, with the reason
LONG_MODULES: dict = {}
MAX_LINES = 400


def test_modules_stay_short():
    long = sorted(f"{m} ({n} lines)" for m, p in _modules().items()
                  if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES and m not in LONG_MODULES)
    assert not long, f"modules over {MAX_LINES} lines (split them by concern, or list them in LONG_MODULES): {long}"
