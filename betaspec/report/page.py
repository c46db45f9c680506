"""The report's HTML: the header (run settings, models, versions, proof status), one section
per widget (figure, three-line annotation, theorems, claim checks, or an error box), and the
lean.md page.

Nothing here knows a measured number: every number on the page is formatted from a result
JSON field, the registry, or the build record, by `fmt_value`.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from .lean_html import markdown_to_html, render_inline

# An unfilled template field ({name}, {x:.3f}, {}), a NaN/None that leaked into text, a TODO.
PLACEHOLDER_RE = re.compile(r"\{[A-Za-z0-9_.\[\]!:<>^+-]*\}|\bnan\b|\bNone\b|TODO", re.IGNORECASE)

VERDICT_CLASS = {
    "reproduces": "ok",
    "partly reproduces": "partly",
    "does not reproduce": "fail",
    "not measured": "none",
    "identity": "identity",
}


def placeholders(text: str) -> list[str]:
    """Unfilled placeholders in a line of annotation ([] when clean)."""
    return [m.group(0) for m in PLACEHOLDER_RE.finditer(text)]


def fmt_value(v: Any) -> str:
    """A JSON value as text: numbers to 4 significant digits, lists in brackets, maps as
    `key: value` pairs, null as "not measured"."""
    if v is None:
        return "not measured"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        parts = []
        for k, x in v.items():
            s = fmt_value(x)
            parts.append(f"{k}: ({s})" if isinstance(x, dict) else f"{k}: {s}")
        return "; ".join(parts)
    return str(v)


def fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{s:.0f} s ({m} min {sec:02d} s)"


def fmt_time(iso: str) -> str:
    """`2026-11-27T23:43:42+00:00` → `2026-11-27 23:43:42 UTC` (other strings unchanged)."""
    if len(iso) == 25 and iso[10] == "T" and iso.endswith("+00:00"):
        return f"{iso[:10]} {iso[11:19]} UTC"
    return iso


def esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


@dataclass
class TheoremLink:
    name: str
    status: str
    widget: int | None  # the widget the registry assigns it to


@dataclass
class WidgetSection:
    """Everything the page shows for one widget."""

    number: int
    title: str
    result: dict[str, Any] | None = None
    json_file: str | None = None
    figure_file: str | None = None
    figure_size: tuple[int, int] | None = None
    what: str = ""
    trend: str = ""
    outlier: str = ""
    sources: list[tuple[str, str]] = field(default_factory=list)  # (path, formatted value)
    theorems: list[TheoremLink] = field(default_factory=list)
    cited: list[TheoremLink] = field(default_factory=list)  # cited by the write-up, registered elsewhere
    errors: list[tuple[str, str]] = field(default_factory=list)  # (message, detail)

    @property
    def has_view(self) -> bool:
        return bool(self.what or self.trend or self.outlier)


@dataclass
class Header:
    modes: list[str]                      # "quick" / "full" per distinct mode among results
    budgets: list[tuple[dict[str, Any], list[int]]]  # distinct budgets, with the widgets that used each
    models: list[str]
    seeds: list[int]
    versions: dict[str, list[str]]
    wall_time_s: float
    wall_widgets: list[int]
    created: tuple[str, str] | None
    status_counts: list[tuple[str, int]]
    total_theorems: int
    machine_check_md: str                 # the sentence, in lean.md's Markdown
    shown: list[int]
    generated: str


CSS = """
:root { --fg:#1d232b; --muted:#5b6673; --line:#d9dee4; --bg:#f6f7f9; --card:#fff;
        --ok:#1f7a3a; --okbg:#e3f4e8; --partly:#8a5a00; --partlybg:#fdf1d6; --fail:#a4161a; --failbg:#fde4e4;
        --none:#4b5563; --nonebg:#eceef1; --open:#1d4ed8; --openbg:#e0e9fd; --conj:#6d28d9; --conjbg:#efe6fd; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 20px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 14px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
a { color: #1d4ed8; }
code, pre { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 13px; }
pre { background:#f0f2f5; padding:10px 12px; overflow-x:auto; border-radius:6px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:18px 22px; margin:18px 0; }
.sub { color:var(--muted); margin:0 0 12px; }
.machine { border-left:4px solid #b45309; background:#fff8eb; padding:8px 12px; margin:12px 0; }
.machine.checked { border-left-color: var(--ok); background: var(--okbg); }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px 4px 0; text-align:left; vertical-align:top; }
th { color: var(--muted); font-weight: 600; }
.grid { display:grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 4px 28px; }
.kv td:first-child { color:var(--muted); white-space:nowrap; }
.badge { display:inline-block; border-radius:999px; padding:0 8px; font-size:12px; font-weight:600;
         line-height:20px; white-space:nowrap; }
.s-proven, .v-ok { color:var(--ok); background:var(--okbg); }
.s-stated, .v-partly { color:var(--partly); background:var(--partlybg); }
.s-open { color:var(--open); background:var(--openbg); }
.s-conjecture { color:var(--conj); background:var(--conjbg); }
.s-empirical, .v-none { color:var(--none); background:var(--nonebg); }
.v-identity { color:var(--none); background:var(--nonebg); border:1px dashed var(--none); }
.v-fail { color:var(--fail); background:var(--failbg); }
figure { margin: 6px 0 10px; text-align:center; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; background:#fff; }
.lines { margin: 8px 0; padding: 0; list-style: none; }
.lines li { margin: 4px 0; padding-left: 92px; text-indent: -92px; }
.lines .lab { display:inline-block; width: 84px; margin-right: 8px; text-indent: 0; color: var(--muted);
              font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.theorems { margin:4px 0; padding:0; list-style:none; display:flex; flex-wrap:wrap; gap:6px 18px; }
.theorems li { margin: 0; }
.claim { margin: 6px 0; }
.claim .evidence { color: var(--muted); font-size: 13px; }
.claim details { margin: 4px 0 10px 0; }
.values { overflow-x: auto; font-size: 12.5px; }
.values th, .values td { padding: 1px 12px 1px 0; white-space: nowrap; }
.values th code { font-weight: normal; }
.error { border:2px solid var(--fail); background:var(--failbg); color:#5c0b0e; border-radius:8px;
         padding:10px 14px; margin:10px 0; }
.error pre { background:#fff; color:#5c0b0e; max-height: 220px; }
details { margin: 8px 0; color: var(--muted); font-size: 13px; }
details table { font-size: 13px; }
.meta { color: var(--muted); font-size: 13px; margin-top: 10px; }
.toc td { padding-right: 16px; }
.lean { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:6px 26px 26px; }
.lean h3 { text-transform:none; letter-spacing:0; color:var(--fg); font-size:17px; margin-top:26px; }
.lean a[id] { display:block; position:relative; top:-8px; }
"""

# Records, for the browser test and anyone curious, whether each image decoded.
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    var loaded = imgs[i].complete && imgs[i].naturalWidth > 0;
    imgs[i].setAttribute('data-loaded', loaded ? 'yes' : 'no');
    if (loaded) ok++;
  }
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
});
"""


def _doc(title: str, body: str, extra_class: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"generator\" content=\"betaspec explore\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body><main class=\"{extra_class}\">\n{body}\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def _status_badge(status: str) -> str:
    return f'<span class="badge s-{esc(status)}">{esc(status)}</span>'


VERDICT_TEXT = {"identity": "identity: holds by construction"}


def _verdict_badge(verdict: str) -> str:
    return (f'<span class="badge v-{VERDICT_CLASS.get(verdict, "none")}">'
            f'{esc(VERDICT_TEXT.get(verdict, verdict))}</span>')


def _header_html(h: Header) -> str:
    out = ['<header class="card">', "<h1>Explore the Data</h1>",
           '<p class="sub">The measurements behind the research write-up’s eleven widgets, each with the '
           "theorems behind it. Every number on this page is read from the result files beside it "
           "(<code>widget_NN.json</code>), the theorem registry, or the Lean build record.</p>"]
    checked = h.machine_check_md.startswith("**Machine-checked")
    out.append(f'<p class="machine{" checked" if checked else ""}" id="machine-check">'
               f"{render_inline(h.machine_check_md)}</p>")
    out.append('<div class="grid">')
    # run
    mode = " + ".join(h.modes) if h.modes else "no results"
    rows = [("mode", esc(mode) + (" — <strong>results from different modes are mixed</strong>" if len(h.modes) > 1 else "")),
            ("models", esc(", ".join(h.models)) if h.models else "none"),
            ("seeds", esc(", ".join(str(s) for s in h.seeds)) if h.seeds else "none"),
            ("study wall time", esc(fmt_seconds(h.wall_time_s)) + f" (sum over {len(h.wall_widgets)} result file(s))"),
            ("results created", esc(" … ".join(dict.fromkeys(fmt_time(t) for t in h.created))) if h.created else "—"),
            ("widgets shown", esc(", ".join(str(n) for n in h.shown))),
            ("report written", esc(fmt_time(h.generated)))]
    out.append("<div><h3>Run</h3><table class=\"kv\">" + "".join(
        f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in rows) + "</table></div>")
    # proof status
    st = "".join(f"<tr><td>{_status_badge(s)}</td><td>{n}</td></tr>" for s, n in h.status_counts)
    st += f"<tr><td><strong>total</strong></td><td>{h.total_theorems}</td></tr>"
    out.append(f'<div><h3>Proof status (<a href="lean.html">lean.md</a>)</h3><table class="kv">{st}</table></div>')
    # budget(s)
    for budget, widgets in h.budgets:
        label = "Budget" if len(h.budgets) == 1 else f"Budget of widget(s) {', '.join(map(str, widgets))}"
        out.append(f"<div><h3>{esc(label)}</h3><table class=\"kv\">" + "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(fmt_value(v))}</td></tr>" for k, v in budget.items()) + "</table></div>")
    # versions
    vs = "".join(f"<tr><td>{esc(k)}</td><td>{esc(' / '.join(v))}</td></tr>" for k, v in h.versions.items())
    out.append(f"<div><h3>Package versions</h3><table class=\"kv\">{vs}</table></div>")
    out.append("</div></header>")
    return "\n".join(out)


def _toc_html(sections: list[WidgetSection]) -> str:
    rows = []
    for s in sections:
        verdicts = [c.get("verdict", "") for c in (s.result or {}).get("claims", [])] if s.result else []
        if s.errors:
            state = '<span class="badge v-fail">error</span>'
        else:
            state = " ".join(_verdict_badge(v) for v in verdicts) or '<span class="badge v-none">no claim</span>'
        rows.append(f'<tr><td>{s.number}</td><td><a href="#widget-{s.number}">{esc(s.title)}</a></td><td>{state}</td></tr>')
    return ('<nav class="card"><h3>Widgets</h3><table class="toc"><tr><th>#</th><th>widget</th>'
            "<th>claim checks</th></tr>" + "".join(rows) + "</table></nav>")


def _theorem_li(t: TheoremLink, elsewhere: bool = False) -> str:
    where = f" — registered for widget {t.widget}" if elsewhere and t.widget else ""
    return (f'<li><a class="lean-link" href="lean.html#{esc(t.name)}"><code>{esc(t.name)}</code></a> '
            f"{_status_badge(t.status)}{esc(where)}</li>")


def flatten(v: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, formatted leaf) for every leaf of a JSON value."""
    if isinstance(v, dict) and v:
        return [x for k, y in v.items() for x in flatten(y, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(v, list) and v and any(isinstance(y, (dict, list)) for y in v):
        return [x for i, y in enumerate(v) for x in flatten(y, f"{prefix}.{i}" if prefix else str(i))]
    return [(prefix, fmt_value(v))]


LONG_VALUE = 140  # characters: a longer claim value is shown as a table


def _natural(key: str) -> list[Any]:
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", key) if t]


def values_table(v: Any) -> str:
    """A long JSON value as a table: leaves grouped by their parent path (rows) and their own
    key (columns, in natural order), or path | value rows when the keys do not line up."""
    rows = flatten(v)
    groups: dict[str, dict[str, str]] = {}
    for path, x in rows:
        parent, _, last = path.rpartition(".")
        groups.setdefault(parent, {})[last] = x
    columns = sorted({c for g in groups.values() for c in g}, key=_natural)
    width = sum(max(len(c), *(len(g.get(c, "")) for g in groups.values())) + 2 for c in columns)
    if width > 100 and len(columns) > len(groups):  # too wide: one row per key instead
        flipped: dict[str, dict[str, str]] = {c: {} for c in columns}
        for r, g in groups.items():
            for c, x in g.items():
                flipped[c][r or "—"] = x
        groups, columns = flipped, [r or "—" for r in groups]
    if len(columns) <= 12 and len(groups) < len(rows):
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join(f"<tr><th><code>{esc(r or '—')}</code></th>"
                       + "".join(f"<td>{esc(g.get(c, ''))}</td>" for c in columns) + "</tr>"
                       for r, g in groups.items())
        return f'<div class="values"><table><tr><th></th>{head}</tr>{body}</table></div>'
    body = "".join(f"<tr><td><code>{esc(k)}</code></td><td>{esc(x)}</td></tr>" for k, x in rows)
    return f'<div class="values"><table>{body}</table></div>'


def _value_html(v: Any) -> tuple[str, str]:
    """(inline text, table to append) for a claim's `writeup` or `measured` value."""
    text = fmt_value(v)
    if len(text) <= LONG_VALUE:
        return f"<strong>{esc(text)}</strong>", ""
    return f"<strong>{len(flatten(v))} values</strong> (table below)", values_table(v)


def _claim_html(c: dict[str, Any]) -> str:
    said, said_table = _value_html(c.get("writeup"))
    got, got_table = _value_html(c.get("measured"))
    out = (f'<div class="claim">{_verdict_badge(c.get("verdict", ""))} '
           f"“{esc(c.get('text', ''))}” — the write-up says {said}; "
           f"this run measured {got} — {esc(c.get('verdict', ''))}."
           f' <span class="evidence">{esc(c.get("evidence", ""))}</span>')
    for label, table in (("The write-up says", said_table), ("This run measured", got_table)):
        if table:
            out += f"<details open><summary>{label} ({esc(c.get('id', ''))})</summary>{table}</details>"
    return out + "</div>"


def _section_html(s: WidgetSection) -> str:
    out = [f'<section class="card widget" id="widget-{s.number}" data-widget="{s.number}">',
           f"<h2>{s.number} — {esc(s.title)}</h2>"]
    for msg, detail in s.errors:
        out.append(f'<div class="error" role="alert"><strong>Widget {s.number} could not be shown in full:</strong> '
                   f"{esc(msg)}" + (f"<pre>{esc(detail)}</pre>" if detail else "") + "</div>")
    if s.figure_file:
        size = f' width="{s.figure_size[0]}" height="{s.figure_size[1]}"' if s.figure_size else ""
        out.append(f'<figure><a href="{esc(s.figure_file)}" title="open the figure at full size">'
                   f'<img src="{esc(s.figure_file)}" alt="Figure of widget {s.number}: {esc(s.title)}"{size}></a>'
                   "</figure>")
    if s.has_view:
        out.append('<ul class="lines annotation">')
        for cls, label, text in (("what", "What", s.what), ("trend", "Trend", s.trend), ("outlier", "Outlier", s.outlier)):
            out.append(f'<li class="{cls}"><span class="lab">{label}</span>{esc(text)}</li>')
        out.append("</ul>")
    if s.theorems or s.cited:
        out.append('<h3>Theorems behind it</h3><ul class="theorems">')
        out += [_theorem_li(t) for t in s.theorems]
        if s.cited:
            out += [_theorem_li(t, elsewhere=True) for t in s.cited]
        out.append("</ul>")
    else:
        out.append('<h3>Theorems behind it</h3><p class="sub">No registered theorem backs this widget.</p>')
    claims = (s.result or {}).get("claims", []) if s.result else []
    if claims:
        out.append("<h3>Claim check</h3>")
        out += [_claim_html(c) for c in claims]
    elif s.result:
        out.append('<h3>Claim check</h3><p class="sub">This result records no claim of the write-up to check.</p>')
    if s.sources:
        rows = "".join(f"<tr><td><code>{esc(p)}</code></td><td>{esc(v)}</td></tr>" for p, v in s.sources)
        out.append(f"<details><summary>Where the annotation’s numbers come from ({len(s.sources)} JSON fields)</summary>"
                   f"<table>{rows}</table></details>")
    if s.result:
        r = s.result
        counts = fmt_value(r.get("token_counts", {})) or "—"
        meta = (f"{'quick' if r.get('quick') else 'full'} mode · models: {esc(', '.join(r.get('models', [])) or 'none')}"
                f" · tokens: {esc(counts)} · seeds: {esc(', '.join(map(str, r.get('seeds', []))))}"
                f" · wall time {esc(fmt_seconds(float(r.get('wall_time_s', 0.0))))} · created {esc(fmt_time(r.get('created', '')))}")
        if s.json_file:
            meta += f' · data: <a href="{esc(s.json_file)}">{esc(s.json_file)}</a>'
        out.append(f'<p class="meta">{meta}</p>')
        # the budget is in the header; the seed and code digest only decide whether a result is reused
        extra = {k: v for k, v in r.get("settings", {}).items() if k not in ("budget", "study_seed", "study_code")}
        if extra:
            rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(fmt_value(v))}</td></tr>" for k, v in extra.items())
            out.append(f"<details><summary>Widget settings</summary><table>{rows}</table></details>")
    out.append("</section>")
    return "\n".join(out)


def render_index(header: Header, sections: list[WidgetSection]) -> str:
    body = [_header_html(header), _toc_html(sections)]
    body += [_section_html(s) for s in sections]
    body.append('<p class="meta">Theorem statements, Lean declarations, tests and notes: '
                '<a href="lean.html">lean.html</a> (rendered from <a href="lean.md">lean.md</a>).</p>')
    return _doc("betaspec — Explore the Data", "\n".join(body))


def render_lean_page(lean_md: str) -> str:
    body = '<p class="meta"><a href="index.html">← Explore the Data</a></p>\n<div class="lean">' + \
        markdown_to_html(lean_md) + "</div>"
    return _doc("betaspec — theorem status (lean.md)", body, extra_class="")
