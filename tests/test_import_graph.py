"""The package's import graph has no cycles beyond the known ones below, counting imports inside functions too.

Function-level imports are allowed only to keep ``import visionprefer`` (and the CLI's start) free of
heavy dependencies; they must not hide a cycle between two visionprefer modules. Imports under
``if TYPE_CHECKING:`` are not executed and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "visionprefer"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the visionprefer modules it imports anywhere in its body (TYPE_CHECKING blocks aside)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in list(ast.walk(tree)):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # `from pkg import name` imports the submodule pkg.name when there is one
                targets = [
                    f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names
                ]
            for target in targets:
                if target.split(".")[0] != "visionprefer":
                    continue
                resolved = _resolve(target, modules)
                if resolved and resolved != module:
                    graph[module].add(resolved)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


# Cycles not broken yet ({publish.report, publish.stage, status} was broken by moving the publish state
# to publish.state). Each entry is the set of modules of one strongly connected component; the test fails
# on any other cycle, and on these once they grow.
KNOWN_CYCLES: list[set[str]] = []


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The components of ``graph`` with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_inside_the_package():
    graph = import_graph()
    new = [c for c in strongly_connected(graph) if not any(c <= known for known in KNOWN_CYCLES)]
    assert not new, "import cycle: " + " -> ".join(find_cycle({m: graph[m] & new[0] for m in new[0]}) or [])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]
    graph = import_graph()
    assert "visionprefer.errors" in graph["visionprefer.rundir"]  # the graph is read, not empty
    assert "visionprefer.models.coco" in graph["visionprefer.models.tiny"]  # an import inside a function
