"""``betaspec check``: keep the registry, the Lean sources, ``impl``, the tests and ``lean.md``
in agreement.

Each problem names the registry entry (when there is one) and a ``file:line``. The checks:

* every registered Lean declaration exists, in the file the registry names;
* a ``proven`` entry contains no ``sorry``/``admit`` anywhere in its declaration, and uses no
  project declaration that does (transitively); a ``stated`` entry does carry one (otherwise its
  status must be promoted); ``open``/``conjecture`` entries are ``def … : Prop`` without ``sorry``;
* no ``axiom`` is declared anywhere in ``Proofs/``, and ``Proofs.lean`` imports every module;
* every ``impl`` path imports, is callable, and its docstring names the theorem;
* test markers (``betaspec.spec.markers``) come in two kinds. ``@pytest.mark.theorem("<name>")``
  goes only on a test that checks the entry against an independent reference (float64
  recomputation from the definition, SymPy, mpmath, brute force); ``@pytest.mark.exercises("<name>")``
  marks a supporting test, which does not count as coverage. What a ``theorem`` marker means,
  and what each entry needs, depends on the status:

  - ``proven`` / ``stated``: at least one ``theorem`` marker, on a test of the statement; an entry
    whose tests only ``exercises`` it is a problem;
  - ``open`` / ``conjecture``: at least one ``theorem`` marker, on the test of the target's
    *metric* (the quantity the ``impl`` function reports as the witness or evidence) against an
    independent reference — the target itself is not claimed;
  - ``empirical``: at least one ``theorem`` marker, on the test that makes the measurement;

  and every marker of either kind names a registered theorem;
* ``lean.md`` is exactly what ``betaspec lean-md`` writes;
* if a build record exists for the current sources, it shows no failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..atomic_files import write_text_atomically
from .impl_ref import ImplError, resolve_impl
from .lean_build import axiom_problems, load_record, sources_digest
from .lean_source import LeanParseError, LeanProject, load_lean_project
from .leanmd import render_lean_md
from .markers import THEOREM, MarkerError, collect_markers
from .registry import Registry, RegistryError, load_registry
from .tree import REGISTRY_REL, Tree

# Modules under Proofs/ that are compiled on their own, not imported by Proofs.lean.
STANDALONE_MODULES = {"Proofs/NameCheck.lean"}


@dataclass(frozen=True)
class Problem:
    entry: str | None
    where: str | None  # "file:line" or "file"
    message: str

    def __str__(self) -> str:
        parts = []
        if self.entry:
            parts.append(f"[{self.entry}]")
        if self.where:
            parts.append(f"{self.where}:")
        parts.append(self.message)
        return " ".join(parts)


def _lean_problems(registry: Registry, project: LeanProject) -> list[Problem]:
    problems: list[Problem] = []
    for t in registry:
        if t.lean is None:
            continue
        decl = project.find(t.lean.decl)
        if decl is None:
            problems.append(Problem(t.name, t.lean.file, f"Lean declaration {t.lean.decl} is missing"))
            continue
        if decl.file != t.lean.file:
            problems.append(Problem(t.name, f"{decl.file}:{decl.line}",
                                    f"{t.lean.decl} is declared here, but the registry says {t.lean.file}"))
        where = f"{decl.file}:{decl.line}"
        deps = project.sorry_dependencies(decl)
        if t.status == "proven":
            if decl.kind not in ("theorem", "lemma"):
                problems.append(Problem(t.name, where, f"a proven entry must be a theorem, found `{decl.kind}`"))
            if decl.has_sorry:
                lines = ", ".join(str(n) for n in decl.sorry_lines)
                problems.append(Problem(t.name, f"{decl.file}:{decl.sorry_lines[0]}",
                                        f"status is 'proven' but {decl.name} contains sorry/admit (line {lines})"))
            for dep in deps:
                problems.append(Problem(t.name, f"{dep.file}:{dep.sorry_lines[0]}",
                                        f"status is 'proven' but it uses {dep.name}, which contains sorry/admit"))
        elif t.status == "stated":
            if not decl.has_sorry and not deps:
                problems.append(Problem(t.name, where,
                                        "status is 'stated' but the declaration and the lemmas it uses have no "
                                        "sorry: promote it to 'proven'"))
        elif t.is_prop_target:
            if not decl.is_prop_def:
                problems.append(Problem(t.name, where,
                                        f"status {t.status!r} needs a `def … : Prop` target, found `{decl.kind}`"))
            if decl.has_sorry:
                problems.append(Problem(t.name, f"{decl.file}:{decl.sorry_lines[0]}",
                                        f"the {t.status} target must be a plain Prop, without sorry"))
    for ax in project.axioms():
        problems.append(Problem(None, f"{ax.file}:{ax.line}", f"`axiom {ax.short_name}` declared; Proofs/ may not add axioms"))
    # every module is part of the build
    top = project.files.get("Proofs.lean")
    if top is None:
        problems.append(Problem(None, "Proofs.lean", "missing: it must import every module of Proofs/"))
    else:
        imported = set(top.imports)
        for path in project.files:
            if path == "Proofs.lean" or path in STANDALONE_MODULES:
                continue
            module = path[: -len(".lean")].replace("/", ".")
            if module not in imported:
                problems.append(Problem(None, path, "not imported by Proofs.lean, so `lake build` never checks it"))
        for module in sorted(imported):
            if module.startswith("Proofs.") and module.replace(".", "/") + ".lean" not in project.files:
                problems.append(Problem(None, "Proofs.lean", f"imports {module}, which does not exist"))
    return problems


def _impl_problems(registry: Registry) -> list[Problem]:
    problems: list[Problem] = []
    for t in registry:
        try:
            fn = resolve_impl(t.impl)
        except ImplError as exc:
            problems.append(Problem(t.name, str(REGISTRY_REL), f"impl {t.impl}: {exc}"))
            continue
        if t.name not in fn.doc:
            problems.append(Problem(t.name, str(REGISTRY_REL),
                                    f"impl {t.impl}: its docstring does not name the theorem {t.name!r}"))
    return problems


_WHAT_A_THEOREM_TEST_CHECKS = {
    "proven": "a test of its statement against an independent reference",
    "stated": "a test of its statement against an independent reference",
    "open": "the test of the target's metric against an independent reference",
    "conjecture": "the test of the conjecture's metric against an independent reference",
    "empirical": "the test that makes its measurement",
}


def _marker_problems(registry: Registry, markers) -> list[Problem]:
    problems: list[Problem] = []
    names = set(registry.names())
    checked = {m.theorem for m in markers if m.kind == THEOREM}
    exercised: dict[str, list] = {}
    for m in markers:
        if m.kind != THEOREM:
            exercised.setdefault(m.theorem, []).append(m)
    for m in markers:
        if m.theorem not in names:
            problems.append(Problem(None, f"{m.file}:{m.line}",
                                    f"{m.kind} marker names unknown theorem {m.theorem!r}"))
    for t in registry:
        if t.name in checked:
            continue
        needed = _WHAT_A_THEOREM_TEST_CHECKS.get(t.status, "a test of its statement")
        only = sorted(exercised.get(t.name, []))
        if only:
            where = ", ".join(f"{m.file}:{m.line}" for m in only)
            problems.append(Problem(t.name, "tests/",
                                    f"the tests only exercise it ({len(only)} @pytest.mark.exercises marker(s): "
                                    f'{where}); no test is marked @pytest.mark.theorem("{t.name}") — '
                                    f"a {t.status} entry needs {needed}"))
        else:
            problems.append(Problem(t.name, "tests/",
                                    f'no test is marked @pytest.mark.theorem("{t.name}") — '
                                    f"a {t.status} entry needs {needed}"))
    return problems


def _first_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines()), start=1):
        if x != y:
            return f"first difference at line {i}"
    return "the files differ in length"


def run_check(tree: Tree) -> list[Problem]:
    """All problems in the tree (empty list: everything agrees)."""
    try:
        registry = load_registry(tree.registry_path)
    except (RegistryError, OSError) as exc:
        return [Problem(None, str(tree.registry_path), str(exc))]
    try:
        project = load_lean_project(tree.root)
    except LeanParseError as exc:
        return [Problem(None, None, str(exc))]
    try:
        markers = collect_markers(tree.root / "tests", root=tree.root)
    except (MarkerError, SyntaxError) as exc:
        return [Problem(None, None, f"cannot read test markers: {exc}")]

    problems = _lean_problems(registry, project)
    problems += _impl_problems(registry)
    problems += _marker_problems(registry, markers)

    record = load_record(tree.record_path)
    if record is not None and record.sources_digest == sources_digest(tree.root):
        problems += [Problem(None, str(tree.record_path.relative_to(tree.root)), p) for p in axiom_problems(registry, record)]

    expected = render_lean_md(tree.root, registry, project, markers, record)
    if not tree.lean_md.exists():
        problems.append(Problem(None, "lean.md", "missing; run `betaspec lean-md`"))
    else:
        actual = tree.lean_md.read_text(encoding="utf-8")
        if actual != expected:
            problems.append(Problem(None, "lean.md",
                                    f"stale or edited by hand ({_first_difference(actual, expected)}); "
                                    "run `betaspec lean-md`"))
    return problems


def write_lean_md(tree: Tree) -> Path:
    """Render lean.md for the tree and write it (atomically)."""
    registry = load_registry(tree.registry_path)
    project = load_lean_project(tree.root)
    markers = collect_markers(tree.root / "tests", root=tree.root)
    record = load_record(tree.record_path)
    text = render_lean_md(tree.root, registry, project, markers, record)
    write_text_atomically(tree.lean_md, text)
    return tree.lean_md
