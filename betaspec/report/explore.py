"""``betaspec explore``: run the study where its results are missing or stale, then write the
"Explore the Data" report — a self-contained static folder that works offline:

    index.html         header (settings, models, versions, seeds, wall time, proof status and the
                       machine-checking sentence of lean.md) and widgets 1–11
    widget_NN.png      each widget's figure (from its `WidgetView`)
    widget_NN.json     the study results the page was built from
    lean.md, lean.html the theorem status page the theorem links point into
    Proofs/            the Lean sources lean.md links to

The folder is built in a temporary directory beside the target and moved into place at the
end, so an interrupted run never leaves a half-written report. A widget whose result is
missing or whose view fails gets an error box; everything else is still written and the
command exits non-zero.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import struct
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

from ..study.titles import WIDGET_TITLES
from ..study.jsonpath import PathError, get_path, numbers_under
from .page import (
    Header,
    TheoremLink,
    WidgetSection,
    fmt_value,
    placeholders,
    render_index,
    render_lean_page,
)

MARKER = ".betaspec-report"  # marks a folder this command wrote (and may therefore replace)
FIGURE_DPI = 110

# Theorems the write-up cites under a widget although the registry assigns them to another one
# (explore-the-data.md). Shown as "also cited", with the widget the registry gives.
WRITEUP_CITATIONS: dict[int, tuple[str, ...]] = {
    2: ("gaussian_moment_ratio_floor_eq",),
    3: ("dc_centering_lifts_rotational_ceiling", "l2Norm_uncentered_gt"),
    8: ("iid_coord_moment_ratio_floor",),
    9: ("beta_eff_formula",),
}


class ReportError(RuntimeError):
    """The report cannot be written at all (as opposed to one widget failing)."""


# ---------------------------------------------------------------------------- progress
class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(msg, file=sys.stderr, flush=True)


def _short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------- study step
def run_study_step(results_dir: Path, quick: bool, numbers: list[int], models: Iterable[str], force: bool = False,
                   progress: bool = True, seed: int = 0) -> dict[int, str]:
    """Compute the requested widgets whose results are missing or stale, like
    `runner.run_study`, but one failing widget does not stop the others. Returns
    ``{widget: traceback}`` for the widgets that failed."""
    from tqdm.auto import tqdm

    from ..study import runner
    from ..study.context import StudyBudget, StudyContext
    from ..study.envelope import result_path

    registry = runner.all_widgets()
    ctx = StudyContext(budget=StudyBudget.for_mode(quick), requested_models=tuple(models), seed=seed, progress=progress)
    errors: dict[int, str] = {}
    bar = tqdm(numbers, desc="study", disable=not progress)
    for n in bar:
        w = registry.get(n)
        if w is None:
            errors[n] = f"no study widget numbered {n}"
            continue
        bar.set_postfix_str(f"{n}: {w.title}")
        path = result_path(results_dir, n)
        if not force and runner.is_current(path, ctx):
            continue
        try:
            runner.run_widget(w, ctx, results_dir)
        except Exception as exc:
            errors[n] = f"computing it failed ({_short_error(exc)})\n{traceback.format_exc()}"
    return errors


# ---------------------------------------------------------------------------- pieces
def _png_size(path: Path) -> tuple[int, int] | None:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def _save_figure(fig: Any, path: Path) -> None:
    """Save a widget's figure (a `matplotlib.figure.Figure` with its own Agg canvas: no pyplot state
    to close)."""
    fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight", pad_inches=0.12, facecolor="white")


def theorem_links(registry: Any, number: int) -> tuple[list[TheoremLink], list[TheoremLink]]:
    """(theorems the registry assigns to the widget, theorems the write-up cites there that the
    registry assigns elsewhere)."""
    own = [TheoremLink(t.name, t.status, t.widget) for t in registry if t.widget == number]
    names = {t.name for t in own}
    cited = []
    for name in WRITEUP_CITATIONS.get(number, ()):
        if name in names:
            continue
        try:
            t = registry.get(name)
        except KeyError:
            continue
        cited.append(TheoremLink(t.name, t.status, t.widget))
    return own, cited


def check_view_lines(view: Any, result: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(formatted sources, problems) for a WidgetView: every line filled in, every source path
    leading to a number in the result."""
    problems = []
    for label in ("what", "trend", "outlier"):
        text = getattr(view, label, None)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"the annotation's '{label}' line is empty")
        elif placeholders(text):
            problems.append(f"the annotation's '{label}' line has unfilled placeholder(s) {placeholders(text)}: {text!r}")
    sources = []
    for path in getattr(view, "sources", None) or []:
        try:
            value = get_path(result, path)
        except PathError as exc:
            problems.append(f"annotation source {path!r} is not in the result ({exc})")
            continue
        if not numbers_under(value):
            problems.append(f"annotation source {path!r} holds no number ({fmt_value(value)})")
        sources.append((path, fmt_value(value)))
    return sources, problems


def _lean_pages(root: Path) -> tuple[str, str, bool]:
    """(lean.md text as `betaspec lean-md` writes it now, the machine-checking sentence,
    whether the checkout's lean.md is stale)."""
    from ..spec.lean_build import load_record, sources_digest
    from ..spec.lean_source import load_lean_project
    from ..spec.leanmd import machine_check_statement, render_lean_md
    from ..spec.markers import collect_markers
    from ..spec.registry import load_registry
    from ..spec.tree import Tree

    tree = Tree.at(root)
    registry = load_registry(tree.registry_path)
    record = load_record(tree.record_path)
    text = render_lean_md(tree.root, registry, load_lean_project(tree.root),
                          collect_markers(tree.root / "tests", root=tree.root), record)
    sentence = machine_check_statement(record, sources_digest(tree.root))
    if sentence not in text:  # the header must say exactly what lean.md says
        raise ReportError("the machine-checking sentence is not in the rendered lean.md")
    stale = not tree.lean_md.exists() or tree.lean_md.read_text(encoding="utf-8") != text
    return text, sentence, stale


def _header(sections: list[WidgetSection], registry: Any, sentence: str, numbers: list[int]) -> Header:
    from ..spec.registry import STATUSES

    results = [(s.number, s.result) for s in sections if s.result is not None]
    modes = list(dict.fromkeys("quick" if r.get("quick") else "full" for _, r in results))
    budgets: list[tuple[dict[str, Any], list[int]]] = []
    for n, r in results:
        b = r.get("settings", {}).get("budget", {})
        for known, ws in budgets:
            if known == b:
                ws.append(n)
                break
        else:
            budgets.append((b, [n]))
    models = list(dict.fromkeys(m for _, r in results for m in r.get("models", [])))
    seeds = sorted({s for _, r in results for s in r.get("seeds", [])})
    versions: dict[str, list[str]] = {}
    for _, r in results:
        for k, v in r.get("versions", {}).items():
            versions.setdefault(k, [])
            if v not in versions[k]:
                versions[k].append(v)
    created = sorted(r.get("created", "") for _, r in results)
    counts = {s: 0 for s in STATUSES}
    for t in registry:
        counts[t.status] = counts.get(t.status, 0) + 1
    return Header(
        modes=modes, budgets=budgets, models=models, seeds=seeds, versions=versions,
        wall_time_s=sum(float(r.get("wall_time_s", 0.0)) for _, r in results),
        wall_widgets=[n for n, _ in results],
        created=(created[0], created[-1]) if created else None,
        status_counts=list(counts.items()), total_theorems=len(registry),
        machine_check_md=sentence, shown=numbers,
        generated=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    )


def _section(n: int, results_dir: Path, widgets: dict[int, Any],
             study_error: str | None, registry: Any, dest: Path) -> WidgetSection:
    import jsonschema

    from ..study.envelope import ENVELOPE_SCHEMA, load_result, result_path

    sec = WidgetSection(number=n, title=WIDGET_TITLES.get(n, f"widget {n}"))
    sec.theorems, sec.cited = theorem_links(registry, n)
    if study_error is not None:
        msg, _, detail = study_error.partition("\n")
        sec.errors.append((f"the study did not produce a current result: {msg}", detail))
        return sec
    path = result_path(results_dir, n)
    if not path.exists():
        sec.errors.append((f"no result file {path.name} in {results_dir}; run `betaspec study` or `betaspec explore`", ""))
        return sec
    try:
        result = load_result(path)
        jsonschema.validate(result, ENVELOPE_SCHEMA)
    except (ValueError, OSError, jsonschema.ValidationError) as exc:
        sec.errors.append((f"the result file {path.name} is unreadable or invalid: {_short_error(exc)}", ""))
        return sec
    sec.result = result
    sec.json_file = path.name
    shutil.copy2(path, dest / path.name)
    widget = widgets.get(n)
    if widget is None:
        sec.errors.append((f"no study widget numbered {n}; its figure and annotation cannot be drawn", ""))
        return sec
    try:
        jsonschema.validate(result["data"], widget.data_schema)
    except jsonschema.ValidationError as exc:
        sec.errors.append((f"the result's data does not fit the widget's schema ({exc.message}); a result from an "
                           "older version of the widget? `betaspec explore --force` recomputes it", ""))
        return sec
    try:
        view = widget.view(result)
    except Exception as exc:
        sec.errors.append((f"its view raised {_short_error(exc)}", traceback.format_exc()))
        return sec
    if view.figure is not None:
        png = dest / f"widget_{n:02d}.png"
        try:
            _save_figure(view.figure, png)
            sec.figure_file = png.name
            sec.figure_size = _png_size(png)
        except Exception as exc:
            sec.errors.append((f"its figure could not be saved: {_short_error(exc)}", traceback.format_exc()))
    else:
        sec.errors.append(("its view returned no figure", ""))
    sec.what, sec.trend, sec.outlier = (str(view.what or ""), str(view.trend or ""), str(view.outlier or ""))
    sec.sources, problems = check_view_lines(view, result)
    sec.errors += [(p, "") for p in problems]
    return sec


# ---------------------------------------------------------------------------- the report
def _check_out_dir(out: Path, root: Path | None, results_dir: Path) -> None:
    o = out.resolve()
    if root is not None and (o == root.resolve() or root.resolve().is_relative_to(o)):
        raise ReportError(f"--out {out} would replace the repository; choose a folder of its own (default: report/)")
    if o == results_dir.resolve() or results_dir.resolve().is_relative_to(o):
        raise ReportError(f"--out {out} would replace the results directory {results_dir}")
    if o.exists() and (not o.is_dir() or (any(o.iterdir()) and not (o / MARKER).exists())):
        raise ReportError(f"--out {out} exists and was not written by `betaspec explore`; "
                          "refusing to replace it (remove it or choose another folder)")


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place: rename the old report aside, rename the new one in,
    delete the old one. A reader sees the old report or the new one, never a half one."""
    os.chmod(tmp, 0o755)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def build_report(results_dir: Path, out: Path, root: Path, numbers: list[int] | None = None,
                 study_errors: dict[int, str] | None = None, progress: Callable[[str], None] | None = None,
                 ) -> list[WidgetSection]:
    """Write the report for `numbers` (default 1–11) from the results in `results_dir` into
    `out`, atomically. Returns the sections; those with `errors` failed (an error box shows)."""
    from ..spec.registry import load_registry
    from ..spec.tree import Tree
    from ..study import runner

    say = progress or (lambda msg: None)
    numbers = sorted(numbers) if numbers else sorted(WIDGET_TITLES)
    results_dir, out = Path(results_dir), Path(out)
    _check_out_dir(out, root, results_dir)
    registry = load_registry(Tree.at(root).registry_path)
    lean_md, sentence, stale = _lean_pages(Path(root))
    if stale:
        say("note: the checkout's lean.md is stale or missing; the report uses the current rendering "
            "(run `betaspec lean-md` to update the checkout)")
    widgets = runner.all_widgets()

    os.environ.setdefault("MPLBACKEND", "Agg")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        sections = []
        for n in numbers:
            sec = _section(n, results_dir, widgets, (study_errors or {}).get(n), registry, tmp)
            state = "ERROR — " + sec.errors[0][0] if sec.errors else "ok"
            say(f"report: widget {n:2d} — {sec.title}: {state}")
            sections.append(sec)
        (tmp / "index.html").write_text(render_index(_header(sections, registry, sentence, numbers), sections),
                                        encoding="utf-8")
        (tmp / "lean.md").write_text(lean_md, encoding="utf-8")
        (tmp / "lean.html").write_text(render_lean_page(lean_md), encoding="utf-8")
        proofs = Path(root) / "Proofs"
        for src in sorted(proofs.rglob("*.lean")):
            dst = tmp / "Proofs" / src.relative_to(proofs)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        (tmp / MARKER).write_text("written by `betaspec explore`; the folder is replaced on the next run\n",
                                  encoding="utf-8")
        for p in tmp.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sections


def summary_lines(sections: list[WidgetSection]) -> list[str]:
    """One line per widget: its title and trend line, or its first error; and its claim verdicts."""
    lines = []
    for s in sections:
        if s.errors:
            lines.append(f"{s.number:2d} {s.title}: ERROR {s.errors[0][0]}")
            continue
        claims = (s.result or {}).get("claims", [])
        verdicts = "; ".join(f"{c['id']}: {c['verdict']}" for c in claims) or "no claim"
        lines.append(f"{s.number:2d} {s.title}: {s.trend} [{verdicts}]")
    return lines


def explore(args: argparse.Namespace) -> int:
    """The `betaspec explore` command (see the module docstring); 0 when every widget shows."""
    from ..spec.tree import find_root

    say = _Progress(not getattr(args, "quiet", False))
    quick = bool(getattr(args, "quick", False))
    models = getattr(args, "models", None) or (["smollm2"] if quick else ["smollm2", "gemma3"])
    numbers = sorted(set(getattr(args, "widgets", None) or WIDGET_TITLES))
    bad = [n for n in numbers if n not in WIDGET_TITLES]
    if bad:
        print(f"betaspec explore: widgets must be numbers 1–11, got {bad}", file=sys.stderr)
        return 2
    out = Path(getattr(args, "out", None) or "report")
    results_dir = Path(getattr(args, "results", None) or "results")
    root = Path(getattr(args, "root", None) or find_root())
    try:
        _check_out_dir(out, root, results_dir)
    except ReportError as exc:
        print(f"betaspec explore: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")

    say(f"explore: {'quick' if quick else 'full'} study of widget(s) {', '.join(map(str, numbers))} "
        f"on {', '.join(models)} (results in {results_dir}/)")
    study_errors = run_study_step(results_dir, quick, numbers, models, force=bool(getattr(args, "force", False)),
                                  progress=say.enabled, seed=int(getattr(args, "seed", 0) or 0))
    for n, err in sorted(study_errors.items()):
        say(f"study: widget {n} failed: {err.splitlines()[0]}")
    try:
        sections = build_report(results_dir, out, root, numbers, study_errors, progress=say)
    except ReportError as exc:
        print(f"betaspec explore: {exc}", file=sys.stderr)
        return 2
    failed = [s for s in sections if s.errors]
    if say.enabled:
        for line in summary_lines(sections):
            say(line)
    print(f"report: {out / 'index.html'} ({len(sections) - len(failed)} of {len(sections)} widgets shown)")
    if failed:
        print(f"betaspec explore: {len(failed)} widget(s) could not be shown in full: "
              f"{', '.join(str(s.number) for s in failed)} (see the error boxes in the report)", file=sys.stderr)
        return 1
    return 0
