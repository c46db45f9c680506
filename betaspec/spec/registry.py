"""The theorem registry: a typed loader for ``betaspec/registry.yaml``.

Each entry ties one theorem of SPEC.md to its Lean declaration, the ``impl`` function that
realises it, and (through ``@pytest.mark.theorem`` markers) its tests. The loader rejects
unknown fields, duplicate names, bad statuses and inconsistent field combinations with a
message that names the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

STATUSES = ("proven", "stated", "open", "conjecture", "empirical")
# Statuses whose Lean declaration is a `def … : Prop` target, deliberately unproven.
PROP_TARGET_STATUSES = ("open", "conjecture")

_ENTRY_FIELDS = {"name", "section", "widget", "status", "statement", "lean", "impl", "note"}
_REQUIRED_FIELDS = {"name", "section", "status", "statement", "impl"}
_LEAN_FIELDS = {"decl", "file"}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

DEFAULT_REGISTRY = Path(__file__).with_name("registry.yaml")


class RegistryError(ValueError):
    """The registry file is malformed; the message names the entry and the field."""


@dataclass(frozen=True)
class LeanRef:
    """Where a theorem lives in ``Proofs/``: its fully qualified declaration and file."""

    decl: str
    file: str

    @property
    def short_name(self) -> str:
        return self.decl.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Theorem:
    """One registry entry."""

    name: str
    section: str
    status: str
    statement: str
    impl: str
    widget: int | None = None
    lean: LeanRef | None = None
    note: str | None = None

    @property
    def is_prop_target(self) -> bool:
        return self.status in PROP_TARGET_STATUSES


@dataclass(frozen=True)
class Registry:
    theorems: tuple[Theorem, ...]
    path: Path

    def names(self) -> list[str]:
        return [t.name for t in self.theorems]

    def get(self, name: str) -> Theorem:
        for t in self.theorems:
            if t.name == name:
                return t
        raise KeyError(f"no theorem named {name!r} in {self.path}")

    def __iter__(self):
        return iter(self.theorems)

    def __len__(self) -> int:
        return len(self.theorems)


def _entry_label(index: int, raw: Any) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        return f"entry {index + 1} ({raw['name']!r})"
    return f"entry {index + 1}"


def _parse_entry(index: int, raw: Any) -> Theorem:
    label = _entry_label(index, raw)
    if not isinstance(raw, dict):
        raise RegistryError(f"{label}: expected a mapping of fields, got {type(raw).__name__}")
    unknown = set(raw) - _ENTRY_FIELDS
    if unknown:
        raise RegistryError(
            f"{label}: unknown field(s) {sorted(unknown)}; allowed fields are {sorted(_ENTRY_FIELDS)}"
        )
    missing = _REQUIRED_FIELDS - set(raw)
    if missing:
        raise RegistryError(f"{label}: missing required field(s) {sorted(missing)}")
    for key in ("name", "section", "status", "statement", "impl"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise RegistryError(f"{label}: field {key!r} must be a non-empty string")
    name = raw["name"]
    if not _NAME_RE.match(name):
        raise RegistryError(f"{label}: name {name!r} is not an identifier")
    status = raw["status"]
    if status not in STATUSES:
        raise RegistryError(f"{label}: status {status!r} is not one of {list(STATUSES)}")
    if not _DOTTED_RE.match(raw["impl"]):
        raise RegistryError(f"{label}: impl {raw['impl']!r} is not a dotted path module.function")
    widget = raw.get("widget")
    if widget is not None and (not isinstance(widget, int) or isinstance(widget, bool) or not 1 <= widget <= 11):
        raise RegistryError(f"{label}: widget must be an integer 1–11, got {widget!r}")
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise RegistryError(f"{label}: note must be a string")

    lean_raw = raw.get("lean")
    lean: LeanRef | None = None
    if status == "empirical":
        if lean_raw is not None:
            raise RegistryError(f"{label}: status 'empirical' has no Lean statement; remove the 'lean' field")
    else:
        if lean_raw is None:
            raise RegistryError(f"{label}: status {status!r} needs a 'lean' field with decl and file")
        if not isinstance(lean_raw, dict):
            raise RegistryError(f"{label}: 'lean' must be a mapping with keys decl and file")
        unknown_lean = set(lean_raw) - _LEAN_FIELDS
        if unknown_lean or set(lean_raw) != _LEAN_FIELDS:
            raise RegistryError(
                f"{label}: 'lean' must have exactly the keys {sorted(_LEAN_FIELDS)}, got {sorted(lean_raw)}"
            )
        decl, file = lean_raw["decl"], lean_raw["file"]
        if not isinstance(decl, str) or not re.match(r"^[A-Za-z_][\w'.]*$", decl):
            raise RegistryError(f"{label}: lean.decl {decl!r} is not a Lean name")
        if not isinstance(file, str) or not file.startswith("Proofs/") or not file.endswith(".lean"):
            raise RegistryError(f"{label}: lean.file {file!r} must be a path Proofs/….lean")
        lean = LeanRef(decl=decl, file=file)
    return Theorem(
        name=name,
        section=raw["section"],
        status=status,
        statement=raw["statement"],
        impl=raw["impl"],
        widget=widget,
        lean=lean,
        note=note,
    )


def parse_registry(text: str, path: Path | str = "<string>") -> Registry:
    """Parse registry YAML text; raises :class:`RegistryError` naming the offending entry."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"theorems"}:
        raise RegistryError(f"{path}: expected one top-level key 'theorems'")
    entries = doc["theorems"]
    if not isinstance(entries, list) or not entries:
        raise RegistryError(f"{path}: 'theorems' must be a non-empty list")
    theorems = [_parse_entry(i, raw) for i, raw in enumerate(entries)]
    seen: dict[str, int] = {}
    for i, t in enumerate(theorems):
        if t.name in seen:
            raise RegistryError(
                f"entry {i + 1} ({t.name!r}): duplicate name (first used by entry {seen[t.name] + 1})"
            )
        seen[t.name] = i
    decls: dict[str, str] = {}
    for t in theorems:
        if t.lean is None:
            continue
        if t.lean.decl in decls:
            raise RegistryError(
                f"entry {t.name!r}: Lean declaration {t.lean.decl} is already registered by {decls[t.lean.decl]!r}"
            )
        decls[t.lean.decl] = t.name
    return Registry(theorems=tuple(theorems), path=Path(path))


def load_registry(path: Path | str | None = None) -> Registry:
    """Load and validate the registry (default: the one shipped in this package)."""
    p = Path(path) if path is not None else DEFAULT_REGISTRY
    return parse_registry(p.read_text(encoding="utf-8"), p)
