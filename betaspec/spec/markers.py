"""Collecting ``@pytest.mark.theorem("<name>")`` markers from the test sources.

Tests are linked to theorems from the test side, so the registry never lists test ids by
hand. The markers are read statically (``ast``), which is fast, deterministic and needs no
test imports: a decorator on a test function or class, a module-level ``pytestmark``, or a
``marks=`` argument of ``pytest.param`` all count.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class TheoremMarker:
    theorem: str
    file: str  # relative path
    line: int
    test: str  # test id: file::[Class::]function, or file for a module-level mark


class MarkerError(ValueError):
    """A theorem marker that cannot be read statically (names file and line)."""


def _is_theorem_mark(func: ast.expr) -> bool:
    # pytest.mark.theorem(...) or mark.theorem(...)
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "theorem"
        and (
            (isinstance(func.value, ast.Attribute) and func.value.attr == "mark")
            or (isinstance(func.value, ast.Name) and func.value.id == "mark")
        )
    )


def collect_markers_from_source(source: str, rel: str) -> list[TheoremMarker]:
    """All theorem markers in one test module's source."""
    tree = ast.parse(source, filename=rel)
    found: list[TheoremMarker] = []

    def record(call: ast.Call, scope: list[str]) -> None:
        if len(call.args) != 1 or not isinstance(call.args[0], ast.Constant) or not isinstance(
            call.args[0].value, str
        ):
            raise MarkerError(f"{rel}:{call.lineno}: pytest.mark.theorem needs exactly one string literal argument")
        test = "::".join([rel] + scope) if scope else rel
        found.append(TheoremMarker(call.args[0].value, rel, call.lineno, test))

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = scope + [node.name]
            for dec in node.decorator_list:
                visit(dec, inner)
            for stmt in node.body:
                visit(stmt, inner)
            return
        if isinstance(node, ast.Call) and _is_theorem_mark(node.func):
            record(node, scope)
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, [])
    return sorted(set(found))


def collect_markers(tests_dir: Path | str, root: Path | str | None = None) -> list[TheoremMarker]:
    """All theorem markers under ``tests_dir`` (files ``test_*.py``), sorted."""
    tdir = Path(tests_dir)
    base = Path(root) if root is not None else tdir.parent
    markers: list[TheoremMarker] = []
    for path in sorted(tdir.rglob("test_*.py")):
        rel = path.relative_to(base).as_posix()
        markers.extend(collect_markers_from_source(path.read_text(encoding="utf-8"), rel))
    return sorted(markers)
