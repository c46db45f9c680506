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
test imports: a decorator on a test function (``test*``) or class (``Test*``), a ``pytestmark``
assignment, or a ``marks=`` argument of a ``pytest.param`` inside such a decorator count; a marker
built anywhere else marks no test and does not count.
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

    def collect(node: ast.AST, scope: list[str]) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                kind = _marker_kind(sub.func)
                if kind is not None:
                    record(sub, kind, scope)

    def visit(body: list[ast.stmt], scope: list[str]) -> None:
        # only where pytest applies a mark: decorators of test functions and test classes (with the
        # `marks=` of their `pytest.param`s) and `pytestmark = …`; a marker built anywhere else
        # (a helper, dead code) marks no test and does not count
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                for dec in node.decorator_list:
                    collect(dec, scope + [node.name])
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                inner = scope + [node.name]
                for dec in node.decorator_list:
                    collect(dec, inner)
                visit(node.body, inner)
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                      for t in node.targets):
                collect(node.value, scope)

    visit(tree.body, [])
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
