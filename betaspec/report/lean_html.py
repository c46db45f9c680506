"""lean.md as HTML, so the report's theorem links (``lean.html#<name>``) resolve offline.

A tiny renderer for exactly the Markdown subset ``betaspec lean-md`` writes — headings,
paragraphs, ``-`` lists with indented continuation lines, pipe tables, fenced code blocks, raw
``<a id>`` anchors and HTML comments; inline code, ``**bold**`` and ``[text](url)`` links — so the
report needs no Markdown package. Everything else is escaped and shown as text.
"""

from __future__ import annotations

import html
import re

_FENCE_RE = re.compile(r"^(`{3,})([A-Za-z0-9_+-]*)\s*$")
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*)$")
_ANCHOR_RE = re.compile(r'^<a id="([A-Za-z_][A-Za-z0-9_.-]*)"></a>$')
_LINK_RE = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD_RE = re.compile(r"\*\*(.+?)\*\*")
_TABLE_SEP_RE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def render_inline(text: str) -> str:
    """Inline Markdown → HTML: code spans (verbatim), then bold and links in the rest."""
    out: list[str] = []
    # Odd-numbered pieces are inside backticks.
    pieces = text.split("`")
    if len(pieces) % 2 == 0:  # an unmatched backtick: keep it literal
        pieces = pieces[:-2] + [pieces[-2] + "`" + pieces[-1]]
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(f"<code>{html.escape(piece, quote=False)}</code>")
            continue
        s = html.escape(piece, quote=False)
        s = _BOLD_RE.sub(r"<strong>\1</strong>", s)
        s = _LINK_RE.sub(lambda m: f'<a href="{html.escape(html.unescape(m.group(2)))}">{m.group(1)}</a>', s)
        out.append(s)
    return "".join(out)


def _split_row(line: str) -> list[str]:
    """Cells of a pipe-table row; a `|` inside a code span does not split."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|"):
        body = body[:-1]
    cells, cur, in_code = [], [], False
    for ch in body:
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    cells.append("".join(cur).strip())
    return cells


def markdown_to_html(md: str) -> str:
    """The body HTML of a lean.md-style document (see the module docstring for the subset)."""
    lines = md.splitlines()
    out: list[str] = []
    para: list[str] = []
    items: list[list[str]] = []
    i = 0

    def flush_para() -> None:
        if para:
            out.append("<p>" + render_inline(" ".join(para)) + "</p>")
            para.clear()

    def flush_list() -> None:
        if items:
            out.append("<ul>")
            for item in items:
                out.append("<li>" + "<br>\n".join(render_inline(x) for x in item) + "</li>")
            out.append("</ul>")
            items.clear()

    def flush() -> None:
        flush_para()
        flush_list()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        fence = _FENCE_RE.match(stripped)
        if fence:
            flush()
            ticks, lang = fence.group(1), fence.group(2)
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() != ticks:
                body.append(lines[i])
                i += 1
            cls = f' class="language-{lang}"' if lang else ""
            out.append(f"<pre><code{cls}>{html.escape(chr(10).join(body), quote=False)}</code></pre>")
            i += 1
            continue
        if not stripped:
            flush()
            i += 1
            continue
        if stripped.startswith("<!--"):
            flush()
            while i < len(lines) and "-->" not in lines[i]:
                i += 1
            i += 1
            continue
        anchor = _ANCHOR_RE.match(stripped)
        if anchor:
            flush()
            out.append(f'<a id="{anchor.group(1)}"></a>')
            i += 1
            continue
        heading = _HEADING_RE.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{render_inline(heading.group(2).strip())}</h{level}>")
            i += 1
            continue
        if stripped.startswith("|") and i + 1 < len(lines) and _TABLE_SEP_RE.match(lines[i + 1].strip()):
            flush()
            head = _split_row(lines[i])
            out.append("<table>")
            out.append("<thead><tr>" + "".join(f"<th>{render_inline(c)}</th>" for c in head) + "</tr></thead>")
            out.append("<tbody>")
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                out.append("<tr>" + "".join(f"<td>{render_inline(c)}</td>" for c in _split_row(lines[i])) + "</tr>")
                i += 1
            out.append("</tbody></table>")
            continue
        if line.startswith("- ") or line.startswith("* "):
            flush_para()
            items.append([line[2:].strip()])
            i += 1
            continue
        if items and line.startswith("  "):
            items[-1].append(stripped)
            i += 1
            continue
        flush_list()
        para.append(stripped)
        i += 1
    flush()
    return "\n".join(out) + "\n"
