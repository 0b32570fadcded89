"""The import graph of `service/`: no cycle, and no import from a lower layer to a higher one.

The imports are read with `ast`, not by importing: every `import` statement counts, at module level, inside a
function, or under `if TYPE_CHECKING:`. A TYPE_CHECKING import runs only for mypy, but it still says that the module
is written against a higher one's types, which is the dependency the layering forbids; so it counts too.

An import of `service.a.b` also runs `service/a/__init__.py`; that implicit edge is not counted: a package's
`__init__` is held to the layering through its own imports, which are read like any other module's.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1] / "service"

# Bottom to top: a module may import its own layer and the ones listed before it. A module belongs to the layer of
# the longest prefix that names it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("service", "service.classifiers", "service.errors", "service.settings", "service.home", "service.allocator",
     "service.tags", "service.skops_defaults"),
    # the model store; the log's database; silent-failure signals; and the versions-and-rollout store, which the
    # prediction log's writer fills (a version's row before its predictions, shadows' decisions beside the labels)
    ("service.database", "service.monitoring", "service.store", "service.rollout.rollout_store",
     "service.rollout.versions"),
    ("service.schemas", "service.bodies", "service.batching", "service.auth", "service.middleware",
     "service.bentoml_fixes"),
    # prediction log, feedback, realized figures; the log's writer process (`python -m`), which the log starts and
    # which imports no more than the request store
    ("service.feedback", "service.feedback.log_writer"),
    ("service.export",),
    ("service.rollout",),  # which version serves and which shadows: tells the registry through `Registry`
    ("service.serving",),
    ("service.openapi",),
    ("service.v2",),  # the Open Inference Protocol's routes: a codec over `/predict`'s path
    ("service.app",),
    # command lines are entry points: they may import anything
    ("service.auth.__main__", "service.feedback.__main__"),
)  # fmt: skip


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


def module_names(root: Path) -> dict[str, Path]:
    """Every module under `root` (a package directory) by its dotted name."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: Mapping[str, Path], shown_from: Path) -> list[Edge]:
    """The modules of `modules` that the module `name` imports anywhere in its text (paths shown from `shown_from`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from a import b` imports the module `a.b` when there is one, else a name of `a`
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name, not a module: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append(Edge(name, target, str(path.relative_to(shown_from)), node.lineno))
    return found


def layer_of(module: str, layers: Sequence[Sequence[str]]) -> int:
    best, index = "", -1
    for level, prefixes in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, level
    return index


def upward(edges: Iterable[Edge], layers: Sequence[Sequence[str]]) -> list[str]:
    """The imports of a higher layer from a lower one, and the modules no layer names."""
    problems = []
    for edge in edges:
        low, high = layer_of(edge.importer, layers), layer_of(edge.imported, layers)
        if low < 0 or high < 0:
            problems.append(f"{edge}: {edge.importer if low < 0 else edge.imported} is in no layer of LAYERS")
        elif high > low:
            problems.append(f"{edge}: layer {low} imports layer {high}")
    return problems


def cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """Each cycle of the graph as one path of modules (its strongly connected components, Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_path_through(sorted(component), graph))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path_through(component: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A cycle through the first module of a strongly connected component, as the path a reader can follow."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to `start`
        node = frontier.pop(0)
        for successor in sorted(graph[node] & members):
            if successor == start:
                return [*paths[node], start]
            if successor not in paths:
                paths[successor] = [*paths[node], successor]
                frontier.append(successor)
    return component


def service_edges() -> list[Edge]:
    return package_edges(SERVICE)


def package_edges(root: Path) -> list[Edge]:
    modules = module_names(root)
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules, root.parent)]


def test_service_imports_have_no_cycle() -> None:
    assert [" -> ".join(cycle) for cycle in cycles(service_edges())] == []


def test_service_imports_flow_down_the_layers() -> None:
    assert upward(service_edges(), LAYERS) == []


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "sample"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "low" / "a.py").write_text("from . import b\n")
    (package / "low" / "b.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from ..high import c\n\n\ndef f():\n"
        "    from .a import name\n"
    )
    (package / "high.py").write_text("import sample.low.a\n")
    edges = package_edges(package)
    assert {(edge.importer, edge.imported, edge.line) for edge in edges} == {
        ("sample.low.a", "sample.low.b", 1),
        ("sample.low.b", "sample.high", 4),  # under TYPE_CHECKING
        ("sample.low.b", "sample.low.a", 8),  # inside a function
        ("sample.high", "sample.low.a", 1),
    }
    assert cycles(edges) == [["sample.high", "sample.low.a", "sample.low.b", "sample.high"]]
    layers = (("sample.low",), ("sample.high",))
    (problem,) = upward(edges, layers)
    assert problem.startswith("sample/low/b.py:4: sample.low.b imports sample.high: layer 0 imports layer 1")
    assert upward(edges, (("sample.low",),))[-1].endswith("sample.high is in no layer of LAYERS")
