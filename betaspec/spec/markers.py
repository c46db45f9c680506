"""Collecting the theorem markers of the test sources: ``@pytest.mark.theorem("<name>")`` and
``@pytest.mark.exercises("<name>")``.

Tests are linked to theorems from the test side, so the registry never lists test ids by
hand. There are two kinds of marker:

* ``theorem(name)`` goes only on a test that checks the theorem's *statement* against an
  independent reference (a float64 recomputation from the definition, SymPy, mpmath, brute
  force); for an ``open``/``conjecture`` entry it marks the test of the target's metric, for an
  ``empirical`` entry the test that makes the measurement;
* ``exercises(name)`` marks a supporting test: it runs the code around the theorem (round
  trips, conventions, helper functions, parametrisations) without checking the statement.

``betaspec check`` counts only ``theorem`` markers as coverage; ``lean.md`` lists the two kinds
apart. The markers are read statically (``ast``), which is fast, deterministic and needs no
test imports: a decorator on a test function or class, a module-level ``pytestmark``, or a
``marks=`` argument of ``pytest.param`` all count.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

THEOREM = "theorem"
EXERCISES = "exercises"
KINDS = (THEOREM, EXERCISES)


@dataclass(frozen=True, order=True)
class TheoremMarker:
    theorem: str
    file: str  # relative path
    line: int
    test: str  # test id: file::[Class::]function, or file for a module-level mark
    kind: str = THEOREM  # "theorem": checks the statement; "exercises": a supporting test


class MarkerError(ValueError):
    """A theorem marker that cannot be read statically (names file and line)."""


def _marker_kind(func: ast.expr) -> str | None:
    # pytest.mark.<kind>(...) or mark.<kind>(...), kind in KINDS
    if (
        isinstance(func, ast.Attribute)
        and func.attr in KINDS
        and (
            (isinstance(func.value, ast.Attribute) and func.value.attr == "mark")
            or (isinstance(func.value, ast.Name) and func.value.id == "mark")
        )
    ):
        return func.attr
    return None


def collect_markers_from_source(source: str, rel: str) -> list[TheoremMarker]:
    """All theorem and exercises markers in one test module's source."""
    tree = ast.parse(source, filename=rel)
    found: list[TheoremMarker] = []

    def record(call: ast.Call, kind: str, scope: list[str]) -> None:
        if (
            len(call.args) != 1
            or not isinstance(call.args[0], ast.Constant)
            or not isinstance(call.args[0].value, str)
        ):
            raise MarkerError(f"{rel}:{call.lineno}: pytest.mark.{kind} needs exactly one string literal argument")
        test = "::".join([rel] + scope) if scope else rel
        found.append(TheoremMarker(call.args[0].value, rel, call.lineno, test, kind))

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = scope + [node.name]
            for dec in node.decorator_list:
                visit(dec, inner)
            for stmt in node.body:
                visit(stmt, inner)
            return
        if isinstance(node, ast.Call):
            kind = _marker_kind(node.func)
            if kind is not None:
                record(node, kind, scope)
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, [])
    return sorted(set(found))


def collect_markers(tests_dir: Path | str, root: Path | str | None = None) -> list[TheoremMarker]:
    """All theorem and exercises markers under ``tests_dir`` (files ``test_*.py``), sorted."""
    tdir = Path(tests_dir)
    base = Path(root) if root is not None else tdir.parent
    markers: list[TheoremMarker] = []
    for path in sorted(tdir.rglob("test_*.py")):
        rel = path.relative_to(base).as_posix()
        markers.extend(collect_markers_from_source(path.read_text(encoding="utf-8"), rel))
    return sorted(markers)
