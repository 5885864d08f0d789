"""Dashboard page files as Streamlit runs them: a bare string after the module docstring is not
a comment there, Streamlit's "magic" writes it on the page (an attribute docstring under a
constant appeared on the reactions page). Every page in the registry exists and asks for its
permission before it shows anything."""

from __future__ import annotations

import ast

import pytest
from repo_paths import PROJECT_ROOT

from crisiscomms.dashboard.pages import PAGES

DASHBOARD = PROJECT_ROOT / "crisiscomms" / "dashboard"
PAGE_FILES = sorted(DASHBOARD.glob("*_page.py"))


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_no_bare_string_would_be_written_on_the_page(path) -> None:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    strays = [node.lineno for node in body[1:]
              if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
              and isinstance(node.value.value, str)]
    assert strays == [], f"{path.name}: a bare string at line(s) {strays} shows on the page"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.url_path)
def test_every_registered_page_requires_its_permission_first(page) -> None:
    path = DASHBOARD / page.file
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [node for node in tree.body
             if isinstance(node, ast.Expr | ast.Assign)
             and isinstance(node.value, ast.Call)
             and getattr(node.value.func, "id", None) == "require"]
    assert calls, f"{page.file} never calls require() at module level"
    arg = calls[0].value.args[0]  # type: ignore[attr-defined]
    assert isinstance(arg, ast.Attribute) and arg.attr == page.permission.value, page.file
    first_output = next(i for i, node in enumerate(tree.body)
                        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                        and getattr(node.value.func, "attr", None) in {"title", "write",
                                                                       "markdown", "table"})
    assert tree.body.index(calls[0]) < first_output, f"{page.file} shows something first"
