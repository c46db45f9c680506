"""Parsing `lake` / `#print axioms` output and judging a build record, from recorded text."""

import json

import pytest

from betaspec.spec.lean_build import (
    BuildRecord,
    LeanToolchainMissing,
    axiom_problems,
    parse_manifest_rev,
    parse_print_axioms,
    run_lean_check,
)
from betaspec.spec.registry import parse_registry

# Recorded from Lean 4 `#print axioms` output (messages as `lake env lean` prints them).
SAMPLE_AXIOMS = """\
'BetaSpec.cos_sign_quant_formula' depends on axioms: [propext, Classical.choice, Quot.sound]
'BetaSpec.beta_eff_formula' depends on axioms: [propext,
 Classical.choice,
 Quot.sound]
'BetaSpec.softmax_shift' does not depend on any axioms
'BetaSpec.top_k_optimal' depends on axioms: [propext, sorryAx, Classical.choice, Quot.sound]
"""

SAMPLE_MANIFEST = json.dumps(
    {
        "version": "1.1.0",
        "packagesDir": ".lake/packages",
        "packages": [
            {"url": "https://github.com/leanprover-community/plausible", "type": "git", "name": "plausible", "rev": "aaaa"},
            {"url": "https://github.com/leanprover-community/mathlib4", "type": "git", "name": "mathlib",
             "rev": "8f9d9cff6bd728b17a24e163c9402775d9e6a365", "inputRev": "v4.28.0"},
        ],
        "name": "betaspec",
    }
)

REGISTRY = parse_registry(
    """
theorems:
  - {name: a, section: "1", status: proven, statement: s, impl: m.f, lean: {decl: BetaSpec.cos_sign_quant_formula, file: Proofs/A.lean}}
  - {name: b, section: "1", status: proven, statement: s, impl: m.f, lean: {decl: BetaSpec.top_k_optimal, file: Proofs/A.lean}}
  - {name: c, section: "1", status: stated, statement: s, impl: m.f, lean: {decl: BetaSpec.other, file: Proofs/A.lean}}
  - {name: e, section: "1", status: proven, statement: s, impl: m.f, lean: {decl: BetaSpec.softmax_shift, file: Proofs/A.lean}}
"""
)


def test_parse_print_axioms_handles_wrapping_and_none():
    axioms = parse_print_axioms(SAMPLE_AXIOMS)
    assert axioms["BetaSpec.cos_sign_quant_formula"] == ["Classical.choice", "Quot.sound", "propext"]
    assert axioms["BetaSpec.beta_eff_formula"] == ["Classical.choice", "Quot.sound", "propext"]
    assert axioms["BetaSpec.softmax_shift"] == []
    assert "sorryAx" in axioms["BetaSpec.top_k_optimal"]


def test_manifest_revision():
    assert parse_manifest_rev(SAMPLE_MANIFEST) == "8f9d9cff6bd728b17a24e163c9402775d9e6a365"
    assert parse_manifest_rev(json.dumps({"packages": []})) == "unknown"


def test_sorry_axiom_in_a_proven_declaration_is_a_failure():
    record = BuildRecord("leanprover/lean4:v4.28.0", "8f9d", "2026-01-01T00:00:00+00:00", True,
                         parse_print_axioms(SAMPLE_AXIOMS))
    problems = axiom_problems(REGISTRY, record)
    assert problems == ["b: BetaSpec.top_k_optimal depends on sorryAx"]


def test_failed_build_and_missing_report_are_failures():
    record = BuildRecord("t", "r", "2026-01-01", False, {})
    problems = axiom_problems(REGISTRY, record)
    assert problems[0].startswith("lake build failed")
    assert any("no #print axioms result for BetaSpec.softmax_shift" in p for p in problems)


def test_record_round_trip():
    record = BuildRecord("t", "r", "d", True, {"X": ["propext"]}, "log", "abc")
    assert BuildRecord.from_json(record.to_json()) == record
    with pytest.raises(ValueError, match="missing field"):
        BuildRecord.from_json("{}")


def test_lean_check_without_lake_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no lake here
    with pytest.raises(LeanToolchainMissing, match="lake` is not on PATH"):
        run_lean_check(tmp_path, REGISTRY, tmp_path / "record.json")
    assert not (tmp_path / "record.json").exists()
