"""`betaspec explore`: the report is built from the result JSON alone, links every widget to
anchors that exist in lean.md / lean.html, shows errors instead of failing silently, is written
atomically — and every number an annotation prints follows its JSON field.

Most tests use eleven fake widgets (fast). The annotation test also runs on the real widgets,
on results from a tiny synthetic study run."""

from __future__ import annotations

import argparse
import copy
import functools
import html
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from betaspec.report import explore as explore_mod  # noqa: E402
from betaspec.report.explore import MARKER, build_report, check_view_lines, explore  # noqa: E402
from betaspec.study.jsonpath import PathError, get_path, numbers_under, set_path  # noqa: E402
from betaspec.report.lean_html import markdown_to_html, render_inline  # noqa: E402
from betaspec.report.page import fmt_value, placeholders  # noqa: E402
from betaspec.study import runner  # noqa: E402
from betaspec.study.context import StudyBudget, StudyContext  # noqa: E402
from betaspec.study.envelope import load_result  # noqa: E402
from betaspec.study.titles import WIDGET_TITLES  # noqa: E402
from betaspec.study.widget import Widget, WidgetOutput, WidgetView, claim  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- fake widgets
FAKE_SCHEMA = {
    "type": "object",
    "required": ["raw", "learned", "per_source"],
    "properties": {"raw": {"type": "number"}, "learned": {"type": "number"},
                   "per_source": {"type": "object", "additionalProperties": {"type": "number"}}},
}


def _fake_compute(n: int):
    def compute(ctx: StudyContext) -> WidgetOutput:
        raw, learned = 0.55 + 0.01 * n, 0.88 + 0.005 * n
        per = {"synthetic": learned - 0.02, "smollm2": learned + 0.01}
        return WidgetOutput(
            data={"raw": raw, "learned": learned, "per_source": per},
            claims=[claim(f"fake_{n}", "learned rotation lifts β to 0.919–0.965", [0.919, 0.965],
                          {"synthetic": per["synthetic"], "smollm2": per["smollm2"]},
                          "partly reproduces" if n % 2 else "reproduces", "held-out keys, all heads")],
            settings={"note": f"fake {n}"}, models=[*ctx.models, "synthetic"],
            token_counts={"train": 64, "heldout": 32}, seeds=[ctx.seed])
    return compute


def _fake_view(result: dict[str, Any]) -> WidgetView:
    d = result["data"]
    fig = Figure(figsize=(5, 2.6))
    ax = fig.subplots()
    ax.bar(list(d["per_source"]), list(d["per_source"].values()))
    ax.axhline(2 / math.pi, ls="--", color="k", label="2/π")
    ax.set_ylabel("β")
    ax.legend()
    worst = min(d["per_source"], key=d["per_source"].get)
    return WidgetView(
        figure=fig,
        what=f"Held-out β per key source, widget {result['widget']}.",
        trend=f"β rises from {d['raw']:.3f} raw to {d['learned']:.3f} learned (+{d['learned'] - d['raw']:.3f}).",
        outlier=f"{worst} has the lowest learned β, {d['per_source'][worst]:.3f}.",
        sources=["data.raw", "data.learned", f"data.per_source.{worst}"])


def fake_widgets(fail_compute: set[int] = frozenset(), fail_view: set[int] = frozenset()) -> dict[int, Widget]:
    def failing_compute(ctx, n):
        raise RuntimeError(f"fake widget {n} cannot compute")

    def failing_view(result, n):
        raise ZeroDivisionError(f"fake view {n} divides by zero")

    out = {}
    for n, title in WIDGET_TITLES.items():
        compute = functools.partial(failing_compute, n=n) if n in fail_compute else _fake_compute(n)
        view = functools.partial(failing_view, n=n) if n in fail_view else _fake_view
        out[n] = Widget(number=n, title=title, data_schema=FAKE_SCHEMA, compute=compute, view=view)
    return out


_cached_lean_pages = functools.lru_cache(maxsize=None)(explore_mod._lean_pages)


@pytest.fixture
def fakes(monkeypatch):
    """Eleven fake widgets in the runner's registry (and lean.md rendered once per session)."""
    registry = fake_widgets()
    monkeypatch.setattr(runner, "all_widgets", lambda: registry)
    monkeypatch.setattr(explore_mod, "_lean_pages", _cached_lean_pages)
    return registry


@functools.lru_cache(maxsize=None)
def fake_report(base: str) -> Path:
    """One full report of the eleven fake widgets per session, for the tests that only read it."""
    tmp = Path(base) / "fake-report"
    with pytest.MonkeyPatch.context() as mp:
        registry = fake_widgets()
        mp.setattr(runner, "all_widgets", lambda: registry)
        mp.setattr(explore_mod, "_lean_pages", _cached_lean_pages)
        assert explore(_args(tmp)) == 0
    return tmp / "report"


@pytest.fixture
def report(tmp_path_factory) -> Path:
    return fake_report(str(tmp_path_factory.getbasetemp()))


def _args(tmp_path: Path, **kw) -> argparse.Namespace:
    base = dict(quick=True, models=["smollm2"], widgets=None, force=False, seed=0, quiet=True,
                out=tmp_path / "report", results=tmp_path / "results", root=REPO)
    base.update(kw)
    return argparse.Namespace(**base)


def _sections(index: str) -> dict[int, str]:
    parts = re.split(r'(?=<section class="card widget")', index)
    out = {}
    for p in parts[1:]:
        n = int(re.search(r'data-widget="(\d+)"', p).group(1))
        out[n] = p.split("</section>")[0]
    return out


def _annotation_lines(section_html: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", m))
            for m in re.findall(r'<li class="(?:what|trend|outlier)">(.*?)</li>', section_html, re.S)]


def _lean_ids_html(text: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', text))


# ---------------------------------------------------------------------------- the report
def test_report_files_and_order(report):
    names = {p.name for p in report.iterdir()}
    for n in range(1, 12):
        assert f"widget_{n:02d}.png" in names and f"widget_{n:02d}.json" in names
        assert (report / f"widget_{n:02d}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"index.html", "lean.md", "lean.html", MARKER, "Proofs"} <= names
    index = (report / "index.html").read_text(encoding="utf-8")
    secs = _sections(index)
    assert list(secs) == list(range(1, 12))
    for n, body in secs.items():
        assert f"<h2>{n} — {html.escape(WIDGET_TITLES[n])}</h2>" in body
        assert f'src="widget_{n:02d}.png"' in body
        assert 'class="error"' not in body
    # lean.md's own links to the Lean sources resolve inside the report
    for target in set(re.findall(r"\]\((Proofs/[^)#]+)", (report / "lean.md").read_text(encoding="utf-8"))):
        assert (report / target).is_file(), target


def test_header_shows_run_settings_and_proof_status(report):
    from betaspec.spec.lean_build import load_record, sources_digest
    from betaspec.spec.leanmd import machine_check_statement
    from betaspec.spec.registry import STATUSES, load_registry

    index = (report / "index.html").read_text(encoding="utf-8")
    header = index.split("</header>")[0]
    results = [load_result(report / f"widget_{n:02d}.json") for n in range(1, 12)]
    assert "quick" in header and "smollm2" in header and "synthetic" in header
    budget = results[0]["settings"]["budget"]
    for key, value in budget.items():
        assert f"<td>{key}</td><td>{html.escape(fmt_value(value))}</td>" in header
    for pkg, version in results[0]["versions"].items():
        assert f"<td>{html.escape(pkg)}</td><td>{html.escape(version)}" in header
    total = sum(r["wall_time_s"] for r in results)
    assert f"{total:.1f} s" in header
    reg = load_registry(REPO / "betaspec" / "spec" / "registry.yaml")
    for s in STATUSES:
        n = sum(t.status == s for t in reg)
        assert re.search(rf'<span class="badge s-{s}">{s}</span></td><td>{n}</td>', header), s
    # the machine-checking sentence, exactly as lean.md states it
    sentence = machine_check_statement(load_record(REPO / "betaspec" / "spec" / "lean_build.json"), sources_digest(REPO))
    lean_md = (report / "lean.md").read_text(encoding="utf-8")
    assert sentence in lean_md.splitlines()
    assert render_inline(sentence) in header
    assert render_inline(sentence) in (report / "lean.html").read_text(encoding="utf-8")


def test_claim_check_lines_come_from_the_json(report):
    index = (report / "index.html").read_text(encoding="utf-8")
    for n, body in _sections(index).items():
        result = load_result(report / f"widget_{n:02d}.json")
        for c in result["claims"]:
            text = html.unescape(re.sub(r"<[^>]+>", "", body))
            assert (f"the write-up says {fmt_value(c['writeup'])}; this run measured {fmt_value(c['measured'])}"
                    f" — {c['verdict']}.") in text


def test_theorem_links_resolve_in_lean_html_and_lean_md(report):
    from betaspec.spec.registry import load_registry

    index = (report / "index.html").read_text(encoding="utf-8")
    lean_html_ids = _lean_ids_html((report / "lean.html").read_text(encoding="utf-8"))
    lean_md_ids = set(re.findall(r'^<a id="([^"]+)"></a>$', (report / "lean.md").read_text(encoding="utf-8"), re.M))
    reg = load_registry(REPO / "betaspec" / "spec" / "registry.yaml")
    secs = _sections(index)
    linked_any = set()
    for n, body in secs.items():
        links = re.findall(r'href="lean\.html#([^"]+)"', body)
        for name in links:
            assert name in lean_html_ids and name in lean_md_ids, name
        own = {t.name for t in reg if t.widget == n}
        assert own <= set(links), (n, own - set(links))
        for t in reg:
            if t.widget == n:
                assert re.search(rf'lean\.html#{t.name}"><code>{t.name}</code></a> <span class="badge s-{t.status}">', body)
        linked_any |= set(links)
    assert {t.name for t in reg if t.widget} <= linked_any


def test_writeup_citations_name_registered_theorems():
    from betaspec.spec.registry import load_registry

    names = set(load_registry(REPO / "betaspec" / "spec" / "registry.yaml").names())
    for n, cited in explore_mod.WRITEUP_CITATIONS.items():
        assert n in WIDGET_TITLES and set(cited) <= names


def test_annotations_have_no_placeholders(report):
    index = (report / "index.html").read_text(encoding="utf-8")
    for n, body in _sections(index).items():
        lines = _annotation_lines(body)
        assert len(lines) == 3, n
        for line in lines:
            assert line.strip() and not placeholders(line), (n, line)


def test_reuses_current_results_and_recomputes_on_force(tmp_path, fakes):
    assert explore(_args(tmp_path, widgets=[2, 3])) == 0
    before = (tmp_path / "results" / "widget_03.json").stat().st_mtime_ns
    assert explore(_args(tmp_path, widgets=[2, 3])) == 0
    assert (tmp_path / "results" / "widget_03.json").stat().st_mtime_ns == before
    assert explore(_args(tmp_path, force=True, widgets=[3])) == 0
    assert (tmp_path / "results" / "widget_03.json").stat().st_mtime_ns != before
    index = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert list(_sections(index)) == [3]



@pytest.mark.parametrize("change", ["seed", "code", "budget"])
def test_result_from_another_seed_code_or_budget_is_recomputed(tmp_path, fakes, monkeypatch, change):
    assert explore(_args(tmp_path, widgets=[3])) == 0
    path = tmp_path / "results" / "widget_03.json"
    before = path.stat().st_mtime_ns
    if change == "seed":
        args = _args(tmp_path, widgets=[3], seed=1)
    else:
        args = _args(tmp_path, widgets=[3])
        if change == "code":
            monkeypatch.setattr(runner, "study_code_digest", lambda: "another-source")
        else:
            result = json.loads(path.read_text(encoding="utf-8"))
            result["settings"]["budget"]["steps"] += 1
            path.write_text(json.dumps(result), encoding="utf-8")
            before = path.stat().st_mtime_ns
    assert explore(args) == 0
    assert path.stat().st_mtime_ns != before
    settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
    assert settings["study_seed"] == args.seed and settings["budget"]["steps"] == StudyBudget.for_mode(True).steps


# ---------------------------------------------------------------------------- errors
def test_missing_result_shows_an_error_box_and_exits_nonzero(tmp_path, fakes, monkeypatch):
    some = [4, 5, 6]
    assert explore(_args(tmp_path, widgets=some)) == 0
    (tmp_path / "results" / "widget_05.json").unlink()
    # the study cannot recompute it either: an error box, the rest of the report, exit 1
    monkeypatch.setattr(runner, "all_widgets", lambda: fake_widgets(fail_compute={5}))
    assert explore(_args(tmp_path, widgets=some)) == 1
    index = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    secs = _sections(index)
    assert 'class="error"' in secs[5] and "fake widget 5 cannot compute" in secs[5]
    assert "widget_05.png" not in secs[5]
    for n in set(secs) - {5}:
        assert 'class="error"' not in secs[n] and f"widget_{n:02d}.png" in secs[n]
    # build_report alone, with no result file and no study: the box names the missing file
    sections = build_report(tmp_path / "results", tmp_path / "r2", REPO, some)
    (five,) = [s for s in sections if s.number == 5]
    assert five.errors and "widget_05.json" in five.errors[0][0]
    assert sum(bool(s.errors) for s in sections) == 1


def test_view_that_raises_shows_an_error_box(tmp_path, fakes, monkeypatch):
    monkeypatch.setattr(runner, "all_widgets", lambda: fake_widgets(fail_view={7}))
    assert explore(_args(tmp_path, widgets=[6, 7])) == 1
    secs = _sections((tmp_path / "report" / "index.html").read_text(encoding="utf-8"))
    assert "ZeroDivisionError" in secs[7] and 'role="alert"' in secs[7]
    assert 'class="error"' not in secs[6]


def test_an_unimportable_widget_package_is_an_error_not_a_silent_skip(tmp_path, fakes, monkeypatch):
    def broken():
        raise ImportError("No module named 'betaspec.study.widgets.w04_centering'")

    monkeypatch.setattr(runner, "all_widgets", broken)
    with pytest.raises(ImportError, match="w04_centering"):
        explore(_args(tmp_path))
    assert not (tmp_path / "report" / "index.html").exists()


def test_bad_annotation_is_reported():
    fig = plt.figure()
    plt.close(fig)
    view = WidgetView(figure=fig, what="β is {beta:.3f}", trend="mean nan", outlier="None of them",
                      sources=["data.x", "data.missing", "data.label"])
    _, problems = check_view_lines(view, {"data": {"x": 1.0, "label": "text"}})
    text = "\n".join(problems)
    assert "'what'" in text and "'trend'" in text and "'outlier'" in text
    assert "data.missing" in text and "data.label" in text and "data.x" not in text


# ---------------------------------------------------------------------------- atomic write
def test_interrupted_run_leaves_the_old_report(tmp_path, fakes, monkeypatch):
    assert explore(_args(tmp_path, widgets=[1, 2])) == 0
    out = tmp_path / "report"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(explore_mod, "render_index", boom)
    with pytest.raises(KeyboardInterrupt):
        explore(_args(tmp_path, widgets=[1, 2]))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results"]  # no temp folder left


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path, fakes):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert explore(_args(tmp_path, out=out)) == 2
    assert (out / "notes.txt").read_text() == "keep me"
    assert explore(_args(tmp_path, out=REPO)) == 2


# ---------------------------------------------------------------------------- helpers
def test_lean_markdown_subset():
    md = "\n".join([
        "<!-- a comment -->", "# Title", "", "**Bold** and `a < b` and [x](Proofs/A.lean#L3).", "",
        "| a | b |", "|---|---|", "| `x | y` | 2 |", "", '<a id="thm_one"></a>', "", "### thm_one", "",
        "- **Status:** `proven`", "  — continued", "- second", "", "```lean", "theorem t : 1 < 2 := by", "  decide",
        "```", ""])
    out = markdown_to_html(md)
    assert "comment" not in out and "<h1>Title</h1>" in out
    assert "<strong>Bold</strong>" in out and "<code>a &lt; b</code>" in out
    assert '<a href="Proofs/A.lean#L3">x</a>' in out
    assert "<td><code>x | y</code></td><td>2</td>" in out
    assert '<a id="thm_one"></a>' in out
    assert "<li><strong>Status:</strong> <code>proven</code><br>\n— continued</li>" in out
    assert '<pre><code class="language-lean">theorem t : 1 &lt; 2 := by\n  decide</code></pre>' in out


def test_fmt_value_and_placeholders():
    assert fmt_value(0.919321) == "0.9193" and fmt_value(3) == "3" and fmt_value(None) == "not measured"
    assert fmt_value([0.919, 0.965]) == "[0.919, 0.965]"
    assert fmt_value({"a": 1.0, "b": {"c": 2}}) == "a: 1; b: (c: 2)"
    for bad in ("{x}", "{beta:.3f}", "{}", "nan", "NaN", "None", "TODO"):
        assert placeholders(f"β = {bad} here"), bad
    for good in ("sign lattice {±1}^d", "nano", "Nonetheless", "β = 0.93"):
        assert not placeholders(good), good


def test_long_claim_values_become_tables():
    from betaspec.report.page import _claim_html

    measured = {"gap": {law: {f"d{d}": 0.1 / d for d in (4, 16, 64, 256, 1024)} for law in ("laplace", "gaussian")}}
    c = claim("x", "cos θ → √β", "cos θ → √β", measured, "reproduces", "samples")
    out = _claim_html(c)
    assert "this run measured <strong>10 values</strong>" in out and "— reproduces." in out
    assert out.index("<th>d4</th>") < out.index("<th>d16</th>") < out.index("<th>d1024</th>")  # natural order
    assert "<th><code>gap.laplace</code></th>" in out and f"<td>{fmt_value(0.1 / 1024)}</td>" in out


def test_json_paths():
    r = {"data": {"d/8": {"0.5": [1, 2.5]}, "d": 3}}
    assert get_path(r, "data.d/8.0.5.1") == 2.5 and get_path(r, "data.d") == 3
    set_path(r, "data.d/8.0.5.0", 7)
    assert r["data"]["d/8"]["0.5"][0] == 7
    with pytest.raises(PathError):
        get_path(r, "data.nope")
    assert numbers_under({"a": [1, True, "x", {"b": 2.0}]}) == [1, 2.0]


# ---------------------------------------------------------------------------- every annotation follows its data
def _perturbations(v: float) -> list[float]:
    """Changed values that stay in the value's natural range ([0, 1] for fractions)."""
    if isinstance(v, bool):
        return []
    if isinstance(v, int):
        return [v + 1, v * 2 + 3, max(v - 1, 0)]
    if 0.0 <= v <= 1.0:
        return [v * 0.83, v + (1.0 - v) * 0.41, v * 0.5, 1.0 - (1.0 - v) * 0.3]
    return [v * 1.31 + 0.07, v * 0.71, v + 1.0, v - 1.0]


def _perturb(value: Any, k: int) -> Any:
    """The `k`-th perturbation of every number under `value` (None when there is none)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        p = _perturbations(value)
        return p[k] if k < len(p) else None
    if isinstance(value, list):
        new = [_perturb(x, k) if isinstance(x, (int, float, list, dict)) and not isinstance(x, bool) else x
               for x in value]
        return None if any(n is None for n, x in zip(new, value) if numbers_under(x)) else new
    if isinstance(value, dict):
        new = {key: (_perturb(x, k) if numbers_under(x) else x) for key, x in value.items()}
        return None if any(new[key] is None for key in value if numbers_under(value[key])) else new
    return None


def _lines(view: WidgetView) -> tuple[str, str, str]:
    return (view.what, view.trend, view.outlier)


def _view(widget: Widget, result: dict[str, Any]) -> WidgetView:
    view = widget.view(result)
    plt.close(view.figure) if view.figure is not None else None
    return view


def _paths_to_perturb(sources: list[str]) -> list[str]:
    """Every source path (the default, BETASPEC_ANNOTATION_PATHS=all); with a number N, at most
    N, spread evenly over the list so all three lines stay covered — each view call draws a
    figure, which is what this test spends its time on."""
    paths = list(dict.fromkeys(sources))
    limit = os.environ.get("BETASPEC_ANNOTATION_PATHS", "all")
    if limit == "all" or len(paths) <= int(limit):
        return paths
    k = int(limit)
    return [paths[round(i * (len(paths) - 1) / (k - 1))] for i in range(k)] if k > 1 else paths[:k]


def annotation_failures(widget: Widget, result: dict[str, Any]) -> list[str]:
    """For every JSON path the view says it prints (see `_paths_to_perturb`): change the
    number(s) there in a copy of the result and check that the three lines change. Returns
    what failed."""
    failures = []
    base = _view(widget, result)
    sources, problems = check_view_lines(base, result)
    failures += problems
    if not base.sources and re.search(r"\d\.\d", " ".join(_lines(base))):
        failures.append("the view prints numbers but lists no sources: they cannot be traced to the JSON")
    for path in _paths_to_perturb(base.sources):
        try:
            original = get_path(result, path)
        except PathError:
            continue  # already reported by check_view_lines
        changed, errors = False, []
        candidates = [_perturb(copy.deepcopy(original), k) for k in range(4)]
        # A number that is also a key elsewhere (a layer, a protection level) only changes
        # consistently into another member of its own list.
        parent_path = path.rpartition(".")[0]
        parent = get_path(result, parent_path) if parent_path else None
        if isinstance(parent, list) and not isinstance(original, (list, dict)):
            candidates += [x for x in parent if x != original and type(x) is type(original)]
        ran = False
        for new in candidates:
            if new is None or new == original:
                continue
            mutated = copy.deepcopy(result)
            set_path(mutated, path, new)
            try:
                lines = _lines(_view(widget, mutated))
            except Exception as exc:  # a perturbation outside what the view accepts: try the next
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            ran = True
            if lines != _lines(base):
                changed = True
                break
        if changed:
            continue
        if not ran and isinstance(original, int) and not isinstance(original, bool):
            # A count or index the rest of the data is shaped by (layers = 2 with 2-long arrays):
            # no single change keeps the result consistent, and the view rejects each one. The
            # view does read it; whether the text prints it cannot be tested this way.
            warnings.warn(f"widget {widget.number}: {path} (= {original}) is structural; the view rejects every "
                          f"change ({errors[0]})", stacklevel=2)
            continue
        failures.append(f"changing {path} (= {fmt_value(original)}) does not change the annotation"
                        + (f"; the view raised {errors}" if errors else ""))
    return failures


def test_annotation_follows_the_data_fake(tmp_path, fakes):
    results = tmp_path / "results"
    ctx = StudyContext(budget=StudyBudget.for_mode(True), requested_models=(), progress=False)
    for n, w in fakes.items():
        result = load_result(runner.run_widget(w, ctx, results))
        assert annotation_failures(w, result) == []
    # and the check notices a view that prints a number it does not list, or lists one it ignores
    lazy = Widget(3, "lazy", FAKE_SCHEMA, fakes[3].compute,
                  lambda r: WidgetView(_fake_view(r).figure, "w", "t = 1.000", "o", sources=["data.raw"]))
    assert any("data.raw" in f for f in annotation_failures(lazy, load_result(results / "widget_03.json")))


# The tiny budget for the real widgets: every code path, seconds not minutes.
TINY = StudyBudget(quick=True, train_tokens=192, heldout_tokens=96, window=64, steps=6, batch_size=96, lr=2e-2,
                   ppl_windows=1, ppl_window=32, long_windows=1, long_window=64, synthetic_layers=2,
                   synthetic_heads=2, synthetic_dim=32)

@functools.lru_cache(maxsize=None)
def real_widgets() -> dict[int, Any]:
    """The real widgets, by number."""
    from betaspec.study.widgets import WIDGETS

    return {w.number: w for w in WIDGETS}


@functools.lru_cache(maxsize=None)
def tiny_real_results(root: str) -> dict[int, Any]:
    """Results of a tiny synthetic study run of the real widgets, written under `root`:
    {widget: result path, or the reason there is none}."""
    out: dict[int, Any] = {}
    ctx = StudyContext(budget=TINY, requested_models=(), artifacts_dir=Path(root) / "artifacts", progress=False)
    for n, w in sorted(real_widgets().items()):
        try:
            out[n] = runner.run_widget(w, ctx, Path(root) / "results")
        except Exception as exc:
            out[n] = f"COMPUTE FAILED: {type(exc).__name__}: {exc}"
    return out


@pytest.fixture(scope="session")
def tiny_results_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "tiny-study"


@pytest.mark.parametrize("number", list(range(1, 12)))
def test_annotation_follows_the_data_real(number, tiny_results_dir):
    results = tiny_real_results(str(tiny_results_dir))
    got = results.get(number, "missing from the widget list")
    if isinstance(got, str):
        pytest.fail(f"widget {number}: {got}")
    widget = real_widgets()[number]
    failures = annotation_failures(widget, load_result(got))
    assert not failures, f"widget {number} ({widget.title}):\n  " + "\n  ".join(failures)
