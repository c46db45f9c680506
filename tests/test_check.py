"""`betaspec check` passes on a consistent tree and fails, naming entry and file:line, on each
kind of drift; and the repository itself is consistent."""

from pathlib import Path

import pytest

from betaspec.cli import main
from betaspec.spec.check import Tree, run_check, write_lean_md
from betaspec.spec.lean_build import BuildRecord, sources_digest

REPO = Path(__file__).resolve().parents[1]

REGISTRY = """\
theorems:
  - name: alpha
    section: "1 — fixture"
    widget: 1
    status: proven
    statement: "a + 0 = a"
    lean: {decl: Fix.alpha, file: Proofs/A.lean}
    impl: bsfix_impl.f_alpha
  - name: beta
    section: "1 — fixture"
    status: stated
    statement: "b"
    lean: {decl: Fix.beta, file: Proofs/A.lean}
    impl: bsfix_impl.f_beta
  - name: gamma
    section: "6 — fixture"
    status: open
    statement: "g"
    lean: {decl: Fix.gamma, file: Proofs/A.lean}
    impl: bsfix_impl.f_beta
  - name: delta
    section: "6 — fixture"
    status: empirical
    statement: "measured"
    impl: bsfix_impl.f_beta
"""

LEAN_A = """\
import Proofs.Basic

namespace Fix

/-- Alpha. -/
theorem alpha (a : ℕ) : a + 0 = a := by
  simp

/-- Beta, unfinished. -/
theorem beta : True := by
  sorry

/-- An open target. -/
def gamma : Prop := ∀ n : ℕ, n + 0 = n

end Fix
"""

IMPL = '''\
def f_alpha(x: int) -> int:
    """Adds zero (alpha)."""
    return x + 0


def f_beta(x: int) -> int:
    """Identity; realises beta, gamma and delta."""
    return x
'''

TESTS = '''\
import pytest


@pytest.mark.theorem("alpha")
def test_alpha():
    assert 1 + 0 == 1


@pytest.mark.theorem("beta")
@pytest.mark.theorem("gamma")
@pytest.mark.theorem("delta")
def test_rest():
    assert True
'''


@pytest.fixture
def tree(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "betaspec" / "spec").mkdir(parents=True)
    (root / "Proofs").mkdir()
    (root / "tests").mkdir()
    (root / "betaspec" / "spec" / "registry.yaml").write_text(REGISTRY)
    (root / "Proofs.lean").write_text("import Proofs.Basic\nimport Proofs.A\n")
    (root / "Proofs" / "Basic.lean").write_text("import Mathlib\n")
    (root / "Proofs" / "A.lean").write_text(LEAN_A)
    (root / "tests" / "test_fix.py").write_text(TESTS)
    (root / "lean-toolchain").write_text("leanprover/lean4:v4.28.0\n")
    (root / "lakefile.lean").write_text("-- fixture\n")
    impl_dir = tmp_path / "implpkg"
    impl_dir.mkdir()
    (impl_dir / "bsfix_impl.py").write_text(IMPL)
    monkeypatch.syspath_prepend(str(impl_dir))
    t = Tree.at(root)
    write_lean_md(t)
    return t


def _messages(tree):
    return [str(p) for p in run_check(tree)]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_consistent_tree_passes(tree):
    assert _messages(tree) == []
    assert main(["check", "--root", str(tree.root)]) == 0


def test_sorry_in_proven_proof_fails(tree, capsys):
    _edit(tree.root / "Proofs" / "A.lean", "  simp\n", "  have : True := by\n    sorry\n  simp\n")
    msgs = _messages(tree)
    assert any(m.startswith("[alpha] Proofs/A.lean:8:") and "contains sorry" in m for m in msgs), msgs
    assert main(["check", "--root", str(tree.root)]) == 1
    assert "[alpha] Proofs/A.lean:8" in capsys.readouterr().err


def test_proven_using_a_sorry_lemma_fails(tree):
    _edit(tree.root / "Proofs" / "A.lean", "  simp\n", "  have := beta\n  simp\n")
    msgs = _messages(tree)
    assert any(m.startswith("[alpha] Proofs/A.lean:12:") and "uses Fix.beta" in m for m in msgs), msgs


def test_stated_without_sorry_must_be_promoted(tree):
    _edit(tree.root / "Proofs" / "A.lean", "  sorry\n", "  trivial\n")
    msgs = _messages(tree)
    assert any(m.startswith("[beta] Proofs/A.lean:10:") and "promote it to 'proven'" in m for m in msgs), msgs


def test_axiom_fails(tree):
    _edit(tree.root / "Proofs" / "A.lean", "end Fix\n", "axiom cheat : False\n\nend Fix\n")
    assert any("Proofs/A.lean:16: `axiom cheat` declared" in m for m in _messages(tree))


def test_missing_declaration_fails(tree):
    _edit(tree.root / "Proofs" / "A.lean", "theorem alpha", "theorem alpha'")
    assert any(m.startswith("[alpha] Proofs/A.lean:") and "Fix.alpha is missing" in m for m in _messages(tree))


def test_open_target_must_be_a_prop_def(tree):
    _edit(tree.root / "Proofs" / "A.lean", "def gamma : Prop := ∀ n : ℕ, n + 0 = n", "theorem gamma : True := trivial")
    assert any(m.startswith("[gamma]") and "needs a `def … : Prop` target" in m for m in _messages(tree))


def test_module_not_imported_fails(tree):
    (tree.root / "Proofs.lean").write_text("import Proofs.Basic\n")
    assert any("Proofs/A.lean: not imported by Proofs.lean" in m for m in _messages(tree))


def test_removed_marker_fails(tree):
    _edit(tree.root / "tests" / "test_fix.py", '@pytest.mark.theorem("alpha")\n', "")
    assert any(m.startswith("[alpha] tests/:") and 'no test is marked @pytest.mark.theorem("alpha")' in m
               for m in _messages(tree))


def test_marker_naming_unknown_theorem_fails(tree):
    _edit(tree.root / "tests" / "test_fix.py", 'theorem("delta")', 'theorem("epsilon")')
    msgs = _messages(tree)
    assert any(m.startswith("tests/test_fix.py:11:") and "unknown theorem 'epsilon'" in m for m in msgs), msgs


@pytest.mark.parametrize(
    "name, status, old, needs",
    [
        ("alpha", "proven", '@pytest.mark.theorem("alpha")', "a test of its statement"),
        ("beta", "stated", '@pytest.mark.theorem("beta")', "a test of its statement"),
        ("gamma", "open", '@pytest.mark.theorem("gamma")', "the test of the target's metric"),
        ("delta", "empirical", '@pytest.mark.theorem("delta")', "the test that makes its measurement"),
    ],
)
def test_entry_with_only_exercises_markers_fails(tree, capsys, name, status, old, needs):
    """A test that only exercises the code around a theorem does not cover it: with its one
    theorem marker turned into an exercises marker, the entry is a problem naming the marker."""
    path = tree.root / "tests" / "test_fix.py"
    line = path.read_text().splitlines().index(old) + 1
    _edit(path, old, old.replace(".theorem(", ".exercises("))
    msgs = _messages(tree)
    mine = [m for m in msgs if m.startswith(f"[{name}] tests/:")]
    assert len(mine) == 1, msgs
    assert "the tests only exercise it" in mine[0] and f"tests/test_fix.py:{line}" in mine[0], mine
    assert f"a {status} entry needs {needs}" in mine[0], mine
    assert not any(m.startswith("[") and not m.startswith(f"[{name}]") for m in msgs), msgs
    assert main(["check", "--root", str(tree.root)]) == 1
    assert f"[{name}] tests/: the tests only exercise it" in capsys.readouterr().err


def test_exercises_markers_beside_a_theorem_marker_pass_and_are_listed_apart(tree):
    _edit(tree.root / "tests" / "test_fix.py", '@pytest.mark.theorem("beta")\n',
          '@pytest.mark.theorem("beta")\n@pytest.mark.exercises("alpha")\n')
    assert any(m.startswith("lean.md: stale") for m in _messages(tree))
    write_lean_md(tree)
    assert _messages(tree) == []
    text = tree.lean_md.read_text()
    alpha = text[text.index("### alpha"):text.index("### beta")]
    assert "- **Tests that check it:** `tests/test_fix.py::test_alpha`\n" in alpha
    assert "- **Tests that exercise it:** `tests/test_fix.py::test_rest`\n" in alpha
    beta = text[text.index("### beta"):text.index("### gamma")]
    assert "- **Tests that check it:** `tests/test_fix.py::test_rest`\n" in beta
    assert "- **Tests that exercise it:** none\n" in beta
    gamma = text[text.index("### gamma"):text.index("### delta")]
    assert "- **Tests that check its metric:** `tests/test_fix.py::test_rest`" in gamma
    assert "- **Tests that measure it:** `tests/test_fix.py::test_rest`" in text[text.index("### delta"):]


def test_exercises_marker_naming_unknown_theorem_fails(tree):
    _edit(tree.root / "tests" / "test_fix.py", '@pytest.mark.theorem("alpha")\n',
          '@pytest.mark.exercises("epsilon")\n@pytest.mark.theorem("alpha")\n')
    msgs = _messages(tree)
    assert any(m.startswith("tests/test_fix.py:4:") and "exercises marker names unknown theorem 'epsilon'" in m
               for m in msgs), msgs


def test_broken_impl_path_fails(tree):
    _edit(tree.registry_path, "bsfix_impl.f_alpha", "bsfix_impl.f_missing")
    msgs = _messages(tree)
    assert any(m.startswith("[alpha] betaspec/spec/registry.yaml:") and "no attribute 'f_missing'" in m for m in msgs)


def test_unimportable_impl_module_fails(tree):
    _edit(tree.registry_path, "bsfix_impl.f_alpha", "bsfix_nowhere.f_alpha")
    assert any(m.startswith("[alpha]") and "cannot import module 'bsfix_nowhere'" in m for m in _messages(tree))


def test_impl_docstring_must_name_the_theorem(tree, tmp_path):
    impl = tmp_path / "implpkg" / "bsfix_impl.py"
    _edit(impl, "Adds zero (alpha).", "Adds zero.")
    import importlib
    import sys

    importlib.reload(sys.modules["bsfix_impl"]) if "bsfix_impl" in sys.modules else None
    assert any(m.startswith("[alpha]") and "docstring does not name the theorem 'alpha'" in m for m in _messages(tree))


def test_hand_edited_lean_md_fails(tree):
    _edit(tree.lean_md, "### alpha", "### alpha (edited)")
    msgs = _messages(tree)
    assert any(m.startswith("lean.md: stale or edited by hand") for m in msgs), msgs


def test_lean_md_is_deterministic_and_says_not_machine_checked(tree):
    first = tree.lean_md.read_text()
    write_lean_md(tree)
    assert tree.lean_md.read_text() == first
    assert "The proofs have not been machine-checked" in first
    assert '<a id="alpha"></a>' in first and "Proofs/A.lean:6" in first
    assert "`tests/test_fix.py::test_alpha`" in first


def test_build_record_for_current_sources_is_rendered_and_judged(tree):
    record = BuildRecord("leanprover/lean4:v4.28.0", "8f9d", "2026-01-02T03:04:05+00:00", True,
                         {"Fix.alpha": ["propext", "sorryAx"], "Fix.beta": ["sorryAx"], "Fix.gamma": []},
                         "", sources_digest(tree.root))
    tree.record_path.write_text(record.to_json())
    write_lean_md(tree)
    text = tree.lean_md.read_text()
    assert "**Machine-checked:** `lake build` passed on 2026-01-02T03:04:05+00:00" in text
    assert any("Fix.alpha depends on sorryAx" in m for m in _messages(tree))
    # once the sources change, the record no longer speaks for them
    _edit(tree.root / "Proofs" / "A.lean", "/-- Alpha. -/", "/-- Alpha, reworded. -/")
    write_lean_md(tree)
    assert "The current proofs have not been machine-checked" in tree.lean_md.read_text()


def test_repository_is_consistent():
    """The real tree: what CI's `betaspec check` asserts, also run by the test command."""
    problems = run_check(Tree.at(REPO))
    assert [str(p) for p in problems] == []
