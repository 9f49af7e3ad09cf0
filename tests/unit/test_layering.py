"""`cache` is the foundation: it imports nothing from `bottle`."""

from __future__ import annotations

import ast

from tests.conftest import ROOT


def test_cache_imports_nothing_from_bottle() -> None:
    offenders = []
    for path in sorted((ROOT / "cache").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n == "bottle" or n.startswith(("bottle.", "bottle_examples"))]
    assert offenders == []


def test_unit_tests_do_not_import_integration_helpers() -> None:
    offenders = []
    for path in sorted((ROOT / "tests" / "unit").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "tests.integration"):
                offenders.append(path.name)
    assert offenders == [], offenders
