"""The import graph, read from the sources: every import counts (top-level, inside functions and
under TYPE_CHECKING), so type-only and lazy cycles are caught as well as run-time ones."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"agentkit": ROOT / "agentkit", "agentkit.engine": ROOT / "engine", "agentkit.plugins": ROOT / "plugins"}


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → the agentkit modules it names in any import statement (`from a import b` names
    `a.b` when that is a module, else `a`)."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in mods else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def path_to(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """An import chain from `start` to `goal`, or None."""
    parent: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        mod = todo.pop(0)
        if mod == goal:
            chain = [mod]
            while (up := parent[chain[-1]]) is not None:
                chain.append(up)
            return chain[::-1]
        for dep in sorted(graph[mod]):
            if dep not in parent:
                parent[dep] = mod
                todo.append(dep)
    return None


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_not_even_type_only_or_lazy_ones():
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_a_type_only_cycle():
    graph = import_graph()
    graph["agentkit.models.served"] = graph["agentkit.models.served"] | {"agentkit.chat.prompt_bounds"}
    assert {"agentkit.models.served", "agentkit.chat.prompt_bounds"} in cycles(graph)


def test_the_graph_is_read_from_every_kind_of_import():
    graph = import_graph()
    assert "agentkit.engine.speculative" in graph["agentkit.hookspecs"]  # under TYPE_CHECKING
    assert "agentkit.models.local" in graph["agentkit.runner"]  # top-level `from a.b import c`
    assert "agentkit.session_store" in graph["agentkit.agent.runner_sessions"]


def test_the_plugin_contract_never_reaches_the_runner_facade():
    graph = import_graph()
    for start in ("agentkit.hookspecs", "agentkit.handles", "agentkit.plugin_manager", "agentkit.plugin_host"):
        chain = path_to(graph, start, "agentkit.runner")
        assert chain is None, " → ".join(chain or [])


def test_the_engine_never_imports_the_agent_layer_or_plugins():
    graph = import_graph()
    for mod in graph:
        if mod.startswith("agentkit.engine"):
            bad = {d for d in graph[mod] if not d.startswith("agentkit.engine")
                   and d not in ("agentkit", "agentkit.errors")}
            assert not bad, f"{mod} imports {sorted(bad)}"


def test_the_core_never_imports_a_plugin():
    graph = import_graph()
    for mod, deps in graph.items():
        if not mod.startswith("agentkit.plugins"):
            assert not {d for d in deps if d.startswith("agentkit.plugins")}, mod
