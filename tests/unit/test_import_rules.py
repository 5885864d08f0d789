"""The import rule of docs/architecture.md, checked on the source (parsed, nothing imported).

- ``core`` imports only ``core``;
- the domain packages import only ``core`` and the domain (never ``channels``, a face or
  ``testing``);
- ``channels`` imports ``core``, the domain and ``channels``: never a face or ``testing``;
- ``migrations`` imports ``core``, the domain and itself;
- ``testing`` imports anything but the faces; only the faces (and tests, bench, outside the
  package) import it;
- the faces (``cli``, ``api``, ``flows``, ``dashboard``) import anything;
- no ``prefect``, ``streamlit`` or ``fastapi`` import at module level in ``core`` or the domain;
- no cycle of module-level imports between modules.

An import under ``if TYPE_CHECKING:`` does not count. An import inside a function counts for the
package rule (it runs when the function does) but not for the cycle rule (it runs after every
module-level import has finished). A new package must be given its place in ``ALLOWED``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Literal

import pytest

ROOT = Path(__file__).resolve().parents[2] / "crisiscomms"
TOP = "crisiscomms"

CORE = frozenset({"core"})
DOMAIN = frozenset({"incident", "playbook", "render", "delivery", "audience", "identity",
                    "statuspage", "reactions", "intake"})
CHANNELS = frozenset({"channels"})
MIGRATIONS = frozenset({"migrations"})
TESTING = frozenset({"testing"})
FACES = frozenset({"cli", "api", "flows", "dashboard"})
EVERYTHING = CORE | DOMAIN | CHANNELS | MIGRATIONS | TESTING | FACES

ALLOWED: dict[str, frozenset[str]] = {
    "": frozenset(),  # crisiscomms/__init__.py: the version, nothing else
    **{name: CORE for name in CORE},
    **{name: CORE | DOMAIN for name in DOMAIN},
    **{name: CORE | DOMAIN | CHANNELS for name in CHANNELS},
    **{name: CORE | DOMAIN | MIGRATIONS for name in MIGRATIONS},
    **{name: EVERYTHING - FACES for name in TESTING},
    **{name: EVERYTHING for name in FACES},
}
"""Package → the packages its modules may import."""

FRAMEWORKS = frozenset({"prefect", "streamlit", "fastapi"})
NO_FRAMEWORK_AT_MODULE_LEVEL = CORE | DOMAIN

EXEMPT: dict[tuple[str, str], str] = {}
"""(importing module, imported module) → why the rule does not apply. None today."""


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    """Our module (``crisiscomms.render.environment``) or another distribution's top name."""
    line: int
    scope: Literal["module", "function"]

    @property
    def ours(self) -> bool:
        return self.target == TOP or self.target.startswith(TOP + ".")

    def __str__(self) -> str:
        where = "" if self.scope == "module" else ", inside a function"
        return f"{self.importer} (line {self.line}{where}) imports {self.target}"


def modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """Dotted name → (file, is a package) of every module of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [TOP, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def package_of(module: str) -> str:
    """``crisiscomms.render.environment`` → ``render``; the top module → ``''``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _ours(name: str, known: Iterable[str]) -> str:
    """The longest prefix of ``name`` that is one of our modules (``from pkg import obj``)."""
    known_set = set(known)
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known_set:
            return candidate
    return name


def collect(source: str, module: str, is_package: bool,
            known: Iterable[str] = ()) -> list[Import]:
    """The imports of one module, each with its line and scope (TYPE_CHECKING ones left out)."""
    known = set(known)
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
            return
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:
            yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base

    def visit(nodes: Iterable[ast.AST], in_function: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse, in_function)
                continue
            if isinstance(node, ast.Import | ast.ImportFrom):
                if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                    continue
                for target in targets(node):
                    is_ours = target == TOP or target.startswith(TOP + ".")
                    found.append(Import(module, _ours(target, known) if is_ours else
                                        target.split(".")[0], node.lineno,
                                        "function" if in_function else "module"))
                continue
            nested = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(ast.iter_child_nodes(node), in_function or nested)

    visit(ast.parse(source).body, False)
    return found


def all_imports() -> list[Import]:
    known = modules()
    out: list[Import] = []
    for name, (path, is_package) in known.items():
        out += collect(path.read_text(encoding="utf-8"), name, is_package, known)
    return out


def package_violations(imports: Iterable[Import]) -> list[str]:
    out = []
    for imp in imports:
        if not imp.ours or (imp.importer, imp.target) in EXEMPT:
            continue
        mine, theirs = package_of(imp.importer), package_of(imp.target)
        if mine not in ALLOWED:
            out.append(f"{imp.importer}: package {mine!r} has no place in the import rule")
        elif theirs and theirs not in ALLOWED[mine]:
            allowed = ", ".join(sorted(ALLOWED[mine])) or "nothing of ours"
            out.append(f"{imp}: {mine or TOP} may import only {allowed}")
    return out


def framework_violations(imports: Iterable[Import]) -> list[str]:
    return [f"{imp}: no {imp.target} at module level in {package_of(imp.importer)} (core and "
            "the domain stay importable without it; import it inside the function)"
            for imp in imports
            if not imp.ours and imp.scope == "module" and imp.target in FRAMEWORKS
            and package_of(imp.importer) in NO_FRAMEWORK_AT_MODULE_LEVEL]


def module_graph(imports: Iterable[Import]) -> dict[str, dict[str, int]]:
    """importer → {imported module: line} over module-level imports of our modules. Importing
    ``a.b.c`` runs ``a.b``'s ``__init__`` first: an edge to each such package too, unless the
    importer is inside it (then it has run already)."""
    graph: dict[str, dict[str, int]] = {}
    for imp in imports:
        if not imp.ours or imp.scope != "module":
            continue
        edges = graph.setdefault(imp.importer, {})
        parts = imp.target.split(".")
        for end in range(2, len(parts) + 1):
            target = ".".join(parts[:end])
            if target != imp.importer and not imp.importer.startswith(target + "."):
                edges.setdefault(target, imp.line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                strongconnect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    out = []
    for component in components:
        members, start = set(component), component[0]
        paths = {start: [start]}
        queue = [start]
        while queue:  # shortest way from start back to start inside the component
            node = queue.pop(0)
            for nxt in sorted(graph.get(node, {})):
                if nxt == start:
                    queue = []
                    out.append([*paths[node], start])
                    break
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    queue.append(nxt)
    return out


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in pairwise(cycle)]
    return " → ".join([*steps, cycle[-1]])


# -- the rule, on the package ---------------------------------------------------------------


def test_every_package_has_a_place_in_the_rule() -> None:
    packages = {package_of(name) for name in modules()}
    assert packages - ALLOWED.keys() == set(), "give each new package its place in ALLOWED"


def test_packages_import_only_what_the_rule_allows() -> None:
    problems = package_violations(all_imports())
    assert not problems, "import rule broken:\n" + "\n".join(problems)


def test_no_framework_at_module_level_in_core_or_the_domain() -> None:
    problems = framework_violations(all_imports())
    assert not problems, "\n".join(problems)


def test_no_module_level_import_cycles() -> None:
    graph = module_graph(all_imports())
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph) for c in found)


def test_exemptions_are_still_needed() -> None:
    used = {(i.importer, i.target) for i in all_imports()}
    assert set(EXEMPT) <= used, f"stale exemptions: {set(EXEMPT) - used}"


# -- the checker itself ----------------------------------------------------------------------

SAMPLE = '''
from __future__ import annotations
from typing import TYPE_CHECKING
import prefect
from . import sibling
from ..core import clock

if TYPE_CHECKING:
    from crisiscomms.cli import app
else:
    import streamlit

class Holder:
    from crisiscomms.core import errors

def later() -> None:
    from crisiscomms.testing import drill
'''


def test_the_checker_sees_scopes_and_skips_type_checking_imports() -> None:
    known = {"crisiscomms.render.sibling", "crisiscomms.core", "crisiscomms.core.clock",
             "crisiscomms.core.errors", "crisiscomms.testing.drill"}
    found = {(i.target, i.scope) for i in collect(SAMPLE, "crisiscomms.render.environment",
                                                  False, known)}
    assert found == {
        ("typing", "module"), ("prefect", "module"), ("crisiscomms.render.sibling", "module"),
        ("crisiscomms.core.clock", "module"), ("streamlit", "module"),
        ("crisiscomms.core.errors", "module"), ("crisiscomms.testing.drill", "function")}


def test_the_checker_names_the_module_and_the_rule() -> None:
    imports = collect(SAMPLE, "crisiscomms.render.environment", False,
                      {"crisiscomms.testing.drill"})
    problems = package_violations(imports)
    assert problems == ["crisiscomms.render.environment (line 17, inside a function) imports "
                        "crisiscomms.testing.drill: render may import only audience, core, "
                        "delivery, identity, incident, intake, playbook, reactions, render, "
                        "statuspage"]
    assert [p.split(":")[0] for p in framework_violations(imports)] == [
        "crisiscomms.render.environment (line 4) imports prefect",
        "crisiscomms.render.environment (line 11) imports streamlit"]


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}}, [["a", "b", "c", "a"]]),
    ({"a": {"b": 1}, "b": {"c": 2}}, []),
])
def test_the_checker_finds_cycles(edges: dict[str, dict[str, int]],
                                  expected: list[list[str]]) -> None:
    assert cycles(edges) == expected


def test_a_package_init_counts_as_imported_with_its_submodule() -> None:
    imports = [Import("crisiscomms.x.a", "crisiscomms.y.b", 1, "module"),
               Import("crisiscomms.y", "crisiscomms.x.a", 2, "module")]
    graph = module_graph(imports)
    assert graph["crisiscomms.x.a"] == {"crisiscomms.y": 1, "crisiscomms.y.b": 1}
    assert cycles(graph) == [["crisiscomms.x.a", "crisiscomms.y", "crisiscomms.x.a"]]
