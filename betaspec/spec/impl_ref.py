"""Resolving a registry entry's ``impl`` dotted path to the Python function it names."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass


class ImplError(ValueError):
    """The dotted path does not import, or does not name a callable."""


@dataclass(frozen=True)
class ImplFunction:
    path: str
    signature: str  # "name(args) -> ret"
    summary: str  # first line of the docstring ("" if none)
    doc: str


def resolve_impl(path: str) -> ImplFunction:
    """Import ``module.function`` and describe it; raises :class:`ImplError` with the reason."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is a broken registry path
        raise ImplError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise ImplError(f"module {module_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if not callable(obj):
        raise ImplError(f"{path} is a {type(obj).__name__}, not a callable")
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = "(…)"
    doc = inspect.getdoc(obj) or ""
    summary = doc.strip().splitlines()[0] if doc.strip() else ""
    return ImplFunction(path=path, signature=f"{attr}{sig}", summary=summary, doc=doc)
