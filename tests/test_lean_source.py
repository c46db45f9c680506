"""The Lean source audit: comments, strings, doc-strings, attributes, namespaces, nested `by`
blocks and `decreasing_by` are all read correctly without a Lean toolchain."""

from pathlib import Path

import pytest

from betaspec.spec.lean_source import (
    LeanParseError,
    LeanProject,
    mask_comments_and_strings,
    parse_lean_file,
)

FIXTURES = Path(__file__).parent / "fixtures" / "lean"


@pytest.fixture(scope="module")
def tricky():
    return parse_lean_file(FIXTURES / "Tricky.lean", root=FIXTURES)


def _decl(lf, name):
    matches = [d for d in lf.declarations if d.name == name]
    assert len(matches) == 1, [d.name for d in lf.declarations]
    return matches[0]


def test_masking_keeps_line_structure():
    text = 'a -- sorry\n/- x\n /- y -/ sorry -/ b "sorry" c\n'
    masked = mask_comments_and_strings(text)
    assert masked.count("\n") == text.count("\n")
    assert len(masked) == len(text)
    assert "sorry" not in masked
    assert masked.split() == ["a", "b", "c"]


def test_unterminated_block_comment_is_an_error(tmp_path):
    f = tmp_path / "Bad.lean"
    f.write_text("theorem x : True := by\n  /- never closed\n  trivial\n")
    with pytest.raises(LeanParseError, match="Bad.lean"):
        parse_lean_file(f, root=tmp_path)


def test_prose_comments_strings_and_names_are_not_sorry(tricky):
    for name in ("Outer.clean_comment", "Outer.clean_string", "Outer.sorry_free_name", "Outer.char_literal"):
        assert not _decl(tricky, name).has_sorry, name
    # the module docstring's fake theorem is not a declaration
    assert all(d.short_name != "not_a_decl" for d in tricky.declarations)


def test_sorry_in_nested_by_block_is_found(tricky):
    d = _decl(tricky, "Outer.Inner.attr_own_line")
    assert d.has_sorry
    assert d.sorry_lines == [28]


def test_admit_is_found(tricky):
    assert _decl(tricky, "Outer.Inner.uses_admit").has_sorry


def test_decreasing_by_at_column_zero_belongs_to_its_def(tricky):
    d = _decl(tricky, "Outer.loopy")
    assert d.has_sorry and d.sorry_lines == [39]


def test_attributes_namespaces_and_root(tricky):
    d = _decl(tricky, "Outer.Inner.attr_same_line")
    assert d.kind == "theorem" and d.line == 23
    own = _decl(tricky, "Outer.Inner.attr_own_line")
    assert own.line == 26  # the keyword's line, not the attribute's
    assert _decl(tricky, "rootLevel").kind == "theorem"


def test_statement_text_stops_at_the_proof(tricky):
    d = _decl(tricky, "Outer.Inner.attr_own_line")
    assert d.statement == "theorem attr_own_line (a : ℕ) : a + 0 = a"
    target = _decl(tricky, "Outer.target")
    assert target.is_prop_def
    assert not _decl(tricky, "Outer.loopy").is_prop_def


def test_axioms_are_reported(tricky):
    assert [a.name for a in tricky.axioms] == ["cheat"]


def test_transitive_sorry_dependencies(tricky):
    project = LeanProject(files={tricky.path: tricky})
    user = _decl(tricky, "Outer.uses_bad_lemma")
    assert not user.has_sorry
    assert [d.name for d in project.sorry_dependencies(user)] == ["Outer.Inner.attr_own_line"]
    assert project.sorry_dependencies(_decl(tricky, "Outer.clean_comment")) == []
