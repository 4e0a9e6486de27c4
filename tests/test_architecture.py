"""The import structure the README's layout section draws, read statically.

Every module's imports are read with ``ast`` — those inside functions too, since a lazy
import is still a dependency — and a module named in a string for importlib (the
entry-point notation ``"package.module:attr"``, or a literal given to ``import_module``)
counts as well: a command table once hid its imports that way. Imports under ``if
TYPE_CHECKING:`` do not count: they name types for the checker and load nothing.
Nothing is imported.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A package imports only packages of a lower layer: the library at the bottom, the
# application shell (and the benchmarks, which nothing imports) at the top.
LAYERS = {
    "pools": 0,
    "scenarios": 1,
    "reports": 2,
    "loadtests": 2,
    "poolbench": 3,
    "benchmarks": 3,
}
LIBRARY = "pools"
_ENTRY_POINT = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name, one of ours
    where: str  # path:line

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.target}"


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str) -> str | None:
    """The module of ours that importing ``name`` loads last: ``a.b.c`` may be a
    module, or a name defined in module ``a.b``."""
    known = modules()
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            anchor = parts if is_package else parts[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        return [f"{base}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        match = _ENTRY_POINT.match(node.value)
        return [match.group(1)] if match else []
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


@cache
def imports() -> tuple[Import, ...]:
    out = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                node.body = [ast.Pass()]  # type-only imports load nothing
        for node in ast.walk(tree):
            for name in _imported_names(node, module, is_package):
                target = _resolve(name)
                if target is not None and target != module:
                    out.append(Import(module, target, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return tuple(dict.fromkeys(out))  # `from x import a, b` is one import of x


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def top(module: str) -> str:
    return module.partition(".")[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _explain(component: list[str], edges: dict[str, set[str]], key) -> str:
    """One cycle through ``component`` (the shortest from its first node), with the
    import that makes each of its steps; breaking it shows the next, if any."""
    start, members = component[0], set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    path: list[str] = []
    while frontier and not path:
        following = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w == start and not path:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                elif w in members and w not in parents and w != start:
                    parents[w] = v
                    following.append(w)
        frontier = following
    steps = [*reversed(path), start]
    lines = []
    for a, b in itertools.pairwise(steps):
        first = next(i for i in imports() if key(i.importer) == a and key(i.target) == b)
        lines.append(f"  {first}")
    return " → ".join(steps) + ":\n" + "\n".join(lines)


def test_the_reader_sees_every_kind_of_import():
    # Guards the guard: one import of each form the checks below rely on.
    sample = """
import pools.thread
from . import store
from .spec import Case
def later():
    from ..stats import median_ci
    importlib.import_module("reports.html")
TABLE = {"run": "scenarios.runner:run"}
"""
    got = {
        name
        for node in ast.walk(ast.parse(sample))
        for name in _imported_names(node, "scenarios.sub.measure", is_package=False)
    }
    assert got == {
        "pools.thread",
        "scenarios.sub.store",
        "scenarios.sub.spec.Case",
        "scenarios.runner",
        "scenarios.stats.median_ci",
        "reports.html",
    }


def test_the_library_imports_nothing_of_the_harness():
    wrong = [str(i) for i in imports() if top(i.importer) == LIBRARY and top(i.target) != LIBRARY]
    assert not wrong, "pools/ is the library and imports nothing of the harness:\n" + "\n".join(wrong)


def test_every_package_is_placed_in_a_layer():
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert on_disk <= set(LAYERS), f"new top-level packages {sorted(on_disk - set(LAYERS))}: add them to LAYERS"


def test_packages_import_only_lower_layers():
    wrong = [
        str(i)
        for i in imports()
        if top(i.importer) != top(i.target) and LAYERS[top(i.importer)] <= LAYERS[top(i.target)]
    ]
    layers = ", ".join(f"{p} {n}" for p, n in LAYERS.items())
    assert not wrong, f"a package imports only packages of a lower layer ({layers}):\n" + "\n".join(wrong)


def test_no_cycle_between_packages():
    edges: dict[str, set[str]] = {}
    for i in imports():
        if top(i.importer) != top(i.target):
            edges.setdefault(top(i.importer), set()).add(top(i.target))
    found = cycles(edges)
    assert not found, "packages import each other:\n" + "\n".join(_explain(c, edges, top) for c in found)


def test_no_cycle_between_modules_of_a_package():
    edges: dict[str, set[str]] = {}
    for i in imports():
        if top(i.importer) == top(i.target):
            edges.setdefault(i.importer, set()).add(i.target)
    found = cycles(edges)
    assert not found, "modules import each other:\n" + "\n".join(_explain(c, edges, lambda m: m) for c in found)
