"""The import graph of our packages: no cycles, and the layering of DESIGN.md.

Read from the source with `ast` (module-level and function-level imports alike: a lazy import is still a
dependency), so nothing is imported and the test takes milliseconds.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("motions", "padl", "superpadl", "rendering", "viewer", "characters")
TRAINERS = {"padl.expert", "superpadl.groups", "superpadl.global_policy"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the modules of our packages it imports}; `from pkg import name` counts as pkg.name when that is a
    module, else as pkg."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `import a.b.c` of a name inside a module: the module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: in each strongly connected component of more than one module (Tarjan), cycles through
    all of its modules."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v), on.add(v)
        for w in sorted(graph.get(v, ())):
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
            covered: set[str] = set()
            for member in sorted(comp) if len(comp) > 1 else ():  # cycles until each member is on one
                if member not in covered:
                    out.append(_cycle_through(graph, set(comp), member))
                    covered.update(out[-1])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _cycle_through(graph, comp: set[str], start: str) -> list[str]:
    """A cycle from `start` inside its strongly connected component `comp`, found by a walk back to it."""
    path, seen = [start], {start}

    def walk(v):
        for w in sorted(graph[v] & comp):
            if w == start and len(path) > 1:
                return True
            if w not in seen:
                seen.add(w), path.append(w)
                if walk(w):
                    return True
                path.pop()
        return False

    walk(start)
    return path + [start]


def reachable(graph, module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w), todo.append(w)
    return seen


def test_graph_reads_imports():
    graph = import_graph()
    assert "padl.checkpoint" in graph["padl.expert"]  # `from padl import checkpoint`
    assert "motions.library" in graph["padl.env"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_layering():
    graph = import_graph()
    forbidden = {"motions": ("padl", "superpadl", "viewer"), "padl": ("superpadl", "viewer"),
                 "rendering": ("padl", "superpadl")}
    bad = [f"{m} imports {d}" for m, deps in sorted(graph.items()) for d in sorted(deps)
           if d.split(".")[0] in forbidden.get(m.split(".")[0], ())]
    for runtime in ("superpadl.runtime", "superpadl.host"):  # acting needs no trainer, also indirectly
        bad += [f"{runtime} reaches trainer {t}" for t in sorted(reachable(graph, runtime) & TRAINERS)]
    assert not bad, "layering broken:\n" + "\n".join(bad)
