"""Dotted paths into a result JSON (``data.sources.smollm2.learned.heldout``, ``data.curve.3``) — the one
way the study's annotations and the report read numbers from a result.

`WidgetView.sources` names every number an annotation prints by such a path. Keys may
themselves contain dots (``"d/8"``, ``"0.5"``): at each level the longest key that matches the
rest of the path wins. A list is indexed by an integer segment.
"""

from __future__ import annotations

from typing import Any


class PathError(KeyError):
    """The path does not lead to a value in the result."""


def _steps(obj: Any, path: str) -> list[tuple[Any, Any]]:
    """[(container, key), …] walked along `path`; the last pair holds the value."""
    out: list[tuple[Any, Any]] = []
    rest = path
    cur = obj
    while rest:
        if isinstance(cur, dict):
            match = None
            for key in sorted((k for k in cur if isinstance(k, str)), key=len, reverse=True):
                if rest == key or rest.startswith(key + "."):
                    match = key
                    break
            if match is None:
                raise PathError(f"{path!r}: no key matches {rest!r}")
            out.append((cur, match))
            cur = cur[match]
            rest = rest[len(match) + 1:]
        elif isinstance(cur, list):
            head, _, tail = rest.partition(".")
            try:
                index = int(head)
                cur_next = cur[index]
            except (ValueError, IndexError) as exc:
                raise PathError(f"{path!r}: {head!r} is not an index of a list of {len(cur)}") from exc
            out.append((cur, index))
            cur = cur_next
            rest = tail
        else:
            raise PathError(f"{path!r}: {rest!r} goes below a {type(cur).__name__}")
    if not out:
        raise PathError("empty path")
    return out


def get_path(obj: Any, path: str) -> Any:
    """The value at `path` (raises `PathError`)."""
    container, key = _steps(obj, path)[-1]
    return container[key]


def set_path(obj: Any, path: str, value: Any) -> None:
    """Replace the value at `path` in place (raises `PathError`)."""
    container, key = _steps(obj, path)[-1]
    container[key] = value


def numbers_under(value: Any) -> list[float]:
    """Every number (not bool) in a JSON value, depth first."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers_under(v)]
    if isinstance(value, list):
        return [x for v in value for x in numbers_under(v)]
    return []
