"""Static collection of @pytest.mark.theorem and @pytest.mark.exercises markers."""

import pytest

from betaspec.spec.markers import MarkerError, collect_markers_from_source

SOURCE = '''
import pytest
from pytest import mark

pytestmark = pytest.mark.theorem("module_level")

@pytest.mark.theorem("on_function")
@pytest.mark.parametrize("x", [1, 2])
def test_a(x):
    assert x

class TestGroup:
    @mark.theorem("on_method")
    def test_b(self):
        assert True

@pytest.mark.parametrize("y", [pytest.param(1, marks=pytest.mark.theorem("in_param"))])
def test_c(y):
    assert y

def helper():
    return pytest.mark.skip  # not a theorem marker
'''


def test_all_marker_forms_are_collected():
    found = {(m.theorem, m.test) for m in collect_markers_from_source(SOURCE, "tests/test_x.py")}
    assert found == {
        ("module_level", "tests/test_x.py"),
        ("on_function", "tests/test_x.py::test_a"),
        ("on_method", "tests/test_x.py::TestGroup::test_b"),
        ("in_param", "tests/test_x.py::test_c"),
    }


KINDS_SOURCE = '''
import pytest
from pytest import mark

pytestmark = [pytest.mark.exercises("module_level")]

@pytest.mark.theorem("checked")
@pytest.mark.exercises("supported")
def test_a():
    assert True

class TestGroup:
    @mark.exercises("on_method")
    def test_b(self):
        assert True

@pytest.mark.parametrize("y", [pytest.param(1, marks=[pytest.mark.exercises("in_param")])])
def test_c(y):
    assert y

def helper():
    return pytest.mark.exercise("typo")  # neither kind: not collected
'''


def test_both_kinds_are_collected_with_their_kind():
    found = {(m.theorem, m.test, m.kind, m.line) for m in collect_markers_from_source(KINDS_SOURCE, "tests/test_k.py")}
    assert found == {
        ("module_level", "tests/test_k.py", "exercises", 5),
        ("checked", "tests/test_k.py::test_a", "theorem", 7),
        ("supported", "tests/test_k.py::test_a", "exercises", 8),
        ("on_method", "tests/test_k.py::TestGroup::test_b", "exercises", 13),
        ("in_param", "tests/test_k.py::test_c", "exercises", 17),
    }


def test_theorem_markers_have_kind_theorem():
    assert {m.kind for m in collect_markers_from_source(SOURCE, "tests/test_x.py")} == {"theorem"}


def test_non_literal_marker_argument_is_rejected():
    src = "import pytest\nNAME = 'x'\n@pytest.mark.theorem(NAME)\ndef test_a():\n    pass\n"
    with pytest.raises(MarkerError, match="test_y.py:3"):
        collect_markers_from_source(src, "tests/test_y.py")


def test_non_literal_exercises_argument_is_rejected():
    src = "import pytest\n\n@pytest.mark.exercises()\ndef test_a():\n    pass\n"
    with pytest.raises(MarkerError, match=r"test_z.py:3: pytest.mark.exercises needs exactly one string literal"):
        collect_markers_from_source(src, "tests/test_z.py")


def test_markers_outside_a_test_decorator_do_not_count():
    """A marker built in a helper, in dead code or on a non-test function marks no test, so it must
    not count as coverage; the decorator of a test and `pytestmark` do."""
    src = (
        "import pytest\n"
        "def _helper():\n    return pytest.mark.theorem('helper_made')\n"
        "if False:\n    pytest.mark.theorem('dead_code')\n"
        "@pytest.mark.theorem('not_a_test')\ndef make_case():\n    pass\n"
        "pytestmark = pytest.mark.exercises('module_level')\n"
        "@pytest.mark.theorem('on_a_test')\ndef test_x():\n    pytest.mark.theorem('inside_the_body')\n"
    )
    got = {(m.theorem, m.kind) for m in collect_markers_from_source(src, "tests/test_fake.py")}
    assert got == {("on_a_test", "theorem"), ("module_level", "exercises")}
