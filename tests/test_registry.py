"""The registry loader rejects malformed entries with a message naming the entry."""

import re
from pathlib import Path

import pytest

from betaspec.spec.registry import RegistryError, load_registry, parse_registry

SPEC = Path(__file__).resolve().parents[1] / "SPEC.md"

GOOD = """
theorems:
  - name: alpha
    section: "1"
    widget: 1
    status: proven
    statement: "a = a"
    lean: {decl: Fix.alpha, file: Proofs/A.lean}
    impl: mod.fn
  - name: delta
    section: "6"
    status: empirical
    statement: "measured"
    impl: mod.fn
"""


def test_good_registry_parses():
    reg = parse_registry(GOOD)
    assert reg.names() == ["alpha", "delta"]
    assert reg.get("alpha").lean.decl == "Fix.alpha"
    assert reg.get("delta").lean is None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.replace("    impl: mod.fn\n  - name: delta", "    impl: mod.fn\n    colour: red\n  - name: delta"),
         r"entry 1 \('alpha'\): unknown field\(s\) \['colour'\]"),
        (lambda s: s.replace("name: delta", "name: alpha"), r"entry 2 \('alpha'\): duplicate name"),
        (lambda s: s.replace("status: proven", "status: done"), r"entry 1 \('alpha'\): status 'done' is not one of"),
        (lambda s: s.replace("status: empirical", "status: empirical\n    lean: {decl: X.y, file: Proofs/B.lean}"),
         r"'delta'.*empirical.*remove the 'lean' field"),
        (lambda s: s.replace("    lean: {decl: Fix.alpha, file: Proofs/A.lean}\n", ""),
         r"'alpha'.*needs a 'lean' field"),
        (lambda s: s.replace("impl: mod.fn\n  - name", "impl: fn\n  - name"), r"'alpha'.*not a dotted path"),
        (lambda s: s.replace("widget: 1", "widget: 12"), r"'alpha'.*widget must be an integer 1–11"),
        (lambda s: s.replace("file: Proofs/A.lean", "file: A.lean"), r"'alpha'.*Proofs/….lean"),
        (lambda s: s.replace("    statement: \"measured\"\n", ""), r"entry 2 \('delta'\): missing required field"),
    ],
)
def test_bad_registries_name_the_entry(mutate, message):
    with pytest.raises(RegistryError, match=message):
        parse_registry(mutate(GOOD))


def test_shipped_registry_loads_and_is_in_spec_order():
    reg = load_registry()
    assert len(reg) >= 30
    spec = SPEC.read_text(encoding="utf-8")  # the repository carries its own SPEC.md
    named = re.findall(r"^\*\*([A-Za-z_][A-Za-z0-9_]*)\*\*", spec, flags=re.M)
    # SPEC states every registered theorem, each once, in registry order
    assert named == reg.names()
