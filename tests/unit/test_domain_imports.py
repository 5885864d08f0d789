"""The domain never imports the test kit (``crisiscomms/testing``): only faces, tests and bench
may (DESIGN.md, direction of imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import crisiscomms

PACKAGE = Path(crisiscomms.__file__).resolve().parent
FACES = ("cli", "api", "dashboard", "flows")
"""Packages that may use the test kit (the drill and demo commands live in ``cli``)."""


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_domain_never_imports_the_test_kit() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0]
        if top in (*FACES, "testing"):
            continue
        bad = sorted(m for m in _imported_modules(path)
                     if m == "crisiscomms.testing" or m.startswith("crisiscomms.testing."))
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)}: {', '.join(bad)}")
    assert offenders == []


def test_the_rule_sees_an_import_of_the_test_kit(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from crisiscomms import testing\n"
                      "def f():\n    from crisiscomms.testing.audiences import drill_recipients\n")
    assert {"crisiscomms.testing", "crisiscomms.testing.audiences"} <= _imported_modules(module)
