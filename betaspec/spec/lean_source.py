"""Reading Lean sources without a Lean toolchain.

No Lean toolchain runs on this project's machines, so the audit reads source text. It masks
comments (``--``, nested ``/- -/``, doc-strings ``/-- -/`` and ``/-! -/``), string and character
literals, then splits each file into commands: a command starts at column 0 with a command
keyword (possibly after modifiers and attributes), and runs to the next one. Mathlib style
keeps declarations at column 0 and indents their bodies, so continuation lines such as
``decreasing_by`` or ``termination_by`` at column 0 stay inside the declaration that owns them.

What it extracts per declaration: its kind, fully qualified name (namespaces tracked), the line,
the statement text as written (up to the ``:=`` at bracket depth 0) and whether ``sorry`` or
``admit`` occur anywhere inside it. Across files it finds ``axiom`` declarations and computes
which declarations depend, through the names they mention, on one that contains ``sorry``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_IDENT_CHARS = r"A-Za-z0-9_'!?\u03b1-\u03c9\u0391-\u03a9\u2080-\u2089\u1d62-\u1d6a"
_IDENT_RE = re.compile(r"[A-Za-z_\u03b1-\u03c9\u0391-\u03a9][" + _IDENT_CHARS + r"]*(?:\.[A-Za-z_][" + _IDENT_CHARS + r"]*)*")
_ESCAPE_HOLE = re.compile(r"(?<![\w'.])(?:sorry|admit)(?![\w'!?])")

DECL_KEYWORDS = (
    "theorem", "lemma", "def", "abbrev", "instance", "structure", "inductive", "class",
    "axiom", "example", "opaque",
)
MODIFIERS = ("private", "protected", "noncomputable", "nonrec", "partial", "unsafe", "scoped", "local")
OTHER_COMMANDS = (
    "namespace", "end", "section", "open", "variable", "universe", "import", "set_option",
    "attribute", "#check", "#print", "#eval", "#exit", "#guard", "notation", "infix", "infixl",
    "infixr", "prefix", "postfix", "macro", "macro_rules", "syntax", "elab", "omit", "include",
    "mutual", "export", "initialize", "deriving", "alias", "add_decl_doc", "library_note",
    "assert_not_exists", "suppress_compilation", "module", "public", "@[",
)


class LeanParseError(ValueError):
    """The Lean source could not be read; the message names file and line."""


def mask_comments_and_strings(text: str) -> str:
    """Return ``text`` with comments and string/char literals replaced by spaces.

    Newlines are kept so offsets and line numbers are unchanged. Block comments nest, as in
    Lean. A ``'`` starts a character literal only when it does not follow an identifier
    character (``h'`` is a name, ``'a'`` is a char).
    """
    out = list(text)
    n = len(text)
    i = 0
    depth = 0

    def blank(a: int, b: int) -> None:
        for j in range(a, b):
            if out[j] != "\n":
                out[j] = " "

    while i < n:
        if depth > 0:
            if text.startswith("/-", i):
                depth += 1
                blank(i, i + 2)
                i += 2
            elif text.startswith("-/", i):
                depth -= 1
                blank(i, i + 2)
                i += 2
            else:
                blank(i, i + 1)
                i += 1
            continue
        c = text[i]
        if text.startswith("/-", i):
            depth = 1
            blank(i, i + 2)
            i += 2
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, min(j + 1, n))
            i = j + 1
        elif c == "'" and (i == 0 or not re.match(r"[" + _IDENT_CHARS + r"]", text[i - 1])):
            m = re.match(r"'(\\.[^']*|[^\\'\n])'", text[i:])
            if m:
                blank(i, i + m.end())
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    if depth > 0:
        raise LeanParseError("unterminated block comment /- … -/")
    return "".join(out)


@dataclass
class Declaration:
    kind: str  # theorem, lemma, def, …
    name: str  # fully qualified
    file: str
    line: int  # 1-based line of the keyword
    statement: str  # source text (comments kept) from the keyword to the proof's `:=`
    statement_masked: str
    body_masked: str  # masked source after the statement
    has_sorry: bool
    sorry_lines: list[int] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def is_prop_def(self) -> bool:
        """A `def … : Prop` (the form of open and conjecture targets)."""
        if self.kind not in ("def", "abbrev"):
            return False
        return re.search(r":\s*Prop\s*$", self.statement_masked.strip()) is not None


@dataclass
class LeanFile:
    path: str
    declarations: list[Declaration]
    axioms: list[Declaration]
    imports: list[str]


def _command_start(line: str) -> str | None:
    """The command keyword a column-0 line starts with, after modifiers and attributes."""
    if not line or line[0].isspace():
        return None
    rest = line
    # attributes: @[simp] theorem …  (possibly several, possibly alone on the line)
    while True:
        m = re.match(r"@\[[^\]]*\]\s*", rest)
        if not m:
            break
        rest = rest[m.end():]
        if not rest.strip():
            return "@["
    while True:
        m = re.match(r"(" + "|".join(MODIFIERS) + r")\b\s*", rest)
        if not m:
            break
        rest = rest[m.end():]
    m = re.match(r"(#?[A-Za-z_]+)", rest)
    if not m:
        return None
    word = m.group(1)
    if word in DECL_KEYWORDS or word in OTHER_COMMANDS:
        return word
    if word in MODIFIERS:
        return word
    return None


def _split_statement(masked: str) -> int:
    """Offset where the statement ends, at bracket depth 0: the proof's `:=`, a `where`, or the
    first pattern-matching `|` that begins a line."""
    depth = 0
    for i, c in enumerate(masked):
        if c in "([{⟨":
            depth += 1
        elif c in ")]}⟩":
            depth = max(0, depth - 1)
        elif depth == 0:
            if masked.startswith(":=", i):
                return i
            prev = masked[i - 1] if i else " "
            if c == "w" and re.match(r"where\b", masked[i:]) and not re.match(r"[" + _IDENT_CHARS + r"]", prev):
                return i
            if c == "|" and masked[masked.rfind("\n", 0, i) + 1:i].strip() == "":
                return i
    return len(masked)


def parse_lean_file(path: Path | str, root: Path | str | None = None) -> LeanFile:
    """Parse one Lean file: declarations (with namespaces resolved), axioms and imports."""
    p = Path(path)
    rel = str(p.relative_to(root)) if root is not None else str(p)
    text = p.read_text(encoding="utf-8")
    try:
        masked = mask_comments_and_strings(text)
    except LeanParseError as exc:
        raise LeanParseError(f"{rel}: {exc}") from exc
    src_lines = text.split("\n")
    lines = masked.split("\n")
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln) + 1)

    # command boundaries
    starts: list[tuple[int, str]] = []
    for idx, ln in enumerate(lines):
        kw = _command_start(ln)
        if kw is not None:
            starts.append((idx, kw))
    # an attribute line alone (`@[simp]`) belongs to the next command
    merged: list[tuple[int, str]] = []
    pending_attr: int | None = None
    for idx, kw in starts:
        if kw == "@[":
            pending_attr = idx if pending_attr is None else pending_attr
            continue
        merged.append((pending_attr if pending_attr is not None else idx, kw))
        pending_attr = None

    namespaces: list[tuple[str, str]] = []  # (kind, name) kind in {"namespace", "section"}
    decls: list[Declaration] = []
    axioms: list[Declaration] = []
    imports: list[str] = []
    for pos, (idx, kw) in enumerate(merged):
        end_line = merged[pos + 1][0] if pos + 1 < len(merged) else len(lines)
        chunk_masked = "\n".join(lines[idx:end_line])
        chunk_src = "\n".join(src_lines[idx:end_line])
        if kw == "import":
            imports.extend(re.findall(r"^import\s+([\w.]+)", chunk_masked, flags=re.M))
            continue
        if kw == "namespace":
            m = re.match(r"namespace\s+([\w.']+)", chunk_masked.strip())
            if m:
                namespaces.append(("namespace", m.group(1)))
            continue
        if kw == "section":
            m = re.match(r"section(?:\s+([\w.']+))?", chunk_masked.strip())
            namespaces.append(("section", (m.group(1) or "") if m else ""))
            continue
        if kw == "end":
            m = re.match(r"end(?:\s+([\w.']+))?", chunk_masked.strip())
            name = m.group(1) if m else None
            if namespaces:
                kind, top = namespaces[-1]
                if name is not None and top != name and kind == "namespace":
                    raise LeanParseError(f"{rel}:{idx + 1}: `end {name}` closes `namespace {top}`")
                namespaces.pop()
            continue
        if kw == "noncomputable":
            continue  # `noncomputable section`
        if kw not in DECL_KEYWORDS:
            continue
        # find the keyword itself, after attributes/modifiers
        km = re.search(r"\b" + kw + r"\b", chunk_masked)
        if km is None:
            continue
        kline = idx + chunk_masked[: km.start()].count("\n")
        after = chunk_masked[km.end():]
        if kw in ("example", "instance"):
            nm = re.match(r"\s*([^\s:({\[]+)?", after)
            local = nm.group(1) if (kw == "instance" and nm and nm.group(1)) else f"<{kw}@{kline + 1}>"
        else:
            nm = re.match(r"\s*(«[^»]+»|[^\s:({\[]+)", after)
            if not nm:
                raise LeanParseError(f"{rel}:{kline + 1}: `{kw}` without a name")
            local = nm.group(1)
        if local.startswith("_root_."):
            qualified = local[len("_root_."):]
        else:
            prefix = ".".join(n for k, n in namespaces if k == "namespace" and n)
            qualified = f"{prefix}.{local}" if prefix else local
        decl_masked = chunk_masked[km.start():]
        decl_src = chunk_src[km.start():]
        cut = _split_statement(decl_masked)
        statement = decl_src[:cut].rstrip()
        holes = [m for m in _ESCAPE_HOLE.finditer(chunk_masked)]
        sorry_lines = sorted({idx + chunk_masked[: m.start()].count("\n") + 1 for m in holes})
        d = Declaration(
            kind=kw,
            name=qualified,
            file=rel,
            line=kline + 1,
            statement=statement,
            statement_masked=decl_masked[:cut],
            body_masked=decl_masked[cut:],
            has_sorry=bool(holes),
            sorry_lines=sorry_lines,
        )
        (axioms if kw == "axiom" else decls).append(d)
    return LeanFile(path=rel, declarations=decls, axioms=axioms, imports=imports)


@dataclass
class LeanProject:
    files: dict[str, LeanFile]

    def declarations(self) -> list[Declaration]:
        return [d for f in self.files.values() for d in f.declarations]

    def axioms(self) -> list[Declaration]:
        return [a for f in self.files.values() for a in f.axioms]

    def find(self, qualified: str) -> Declaration | None:
        for d in self.declarations():
            if d.name == qualified:
                return d
        return None

    def sorry_dependencies(self, decl: Declaration) -> list[Declaration]:
        """Project declarations containing `sorry` that `decl` uses, directly or transitively.

        "Uses" is read from the names mentioned in the declaration's text: a mention of a
        project declaration by its short or qualified name. This over-approximates (a local
        hypothesis that shadows a lemma name counts) and never misses a real use.
        """
        by_short: dict[str, list[Declaration]] = {}
        for d in self.declarations():
            by_short.setdefault(d.short_name, []).append(d)
            by_short.setdefault(d.name, []).append(d)

        def mentioned(d: Declaration) -> set[str]:
            text = d.statement_masked + d.body_masked
            names: set[str] = set()
            for tok in _IDENT_RE.findall(text):
                parts = tok.split(".")
                for k in range(len(parts)):
                    names.add(".".join(parts[k:]))
                names.add(parts[0])
            return names

        seen: set[str] = {decl.name}
        stack = [decl]
        found: dict[str, Declaration] = {}
        while stack:
            cur = stack.pop()
            for nm in mentioned(cur):
                for dep in by_short.get(nm, []):
                    if dep.name in seen:
                        continue
                    seen.add(dep.name)
                    if dep.has_sorry:
                        found[dep.name] = dep
                    stack.append(dep)
        return sorted(found.values(), key=lambda d: (d.file, d.line))


def load_lean_project(root: Path | str, folder: str = "Proofs") -> LeanProject:
    """Parse every ``.lean`` file under ``root/folder`` and the root module ``folder.lean``."""
    r = Path(root)
    files: dict[str, LeanFile] = {}
    paths = sorted((r / folder).rglob("*.lean"))
    top = r / f"{folder}.lean"
    if top.exists():
        paths.append(top)
    for p in paths:
        lf = parse_lean_file(p, root=r)
        files[lf.path] = lf
    return LeanProject(files=files)
