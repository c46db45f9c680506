"""Text cleaning on literal snippets, the disjoint document splits, passages, windows, and token ids
(deterministic, prefix-consistent, cached) on a small synthetic corpus with a byte tokenizer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from betaspec.data import corpus
from betaspec.data.catalog import TEXT
from betaspec.data.corpus import (
    EXCLUDED,
    SPLITS,
    clean_britannica,
    clean_milton,
    clean_play,
    passages,
    split_passages,
    token_ids,
    window_token_count,
    windows,
)
from betaspec.data.locations import AssetMissingError, asset_present

# ------------------------------------------------------------------------------------- cleaning

PLAY = """HAMLET, PRINCE OF DENMARK

by William Shakespeare



PERSONS REPRESENTED.

Claudius, King of Denmark.
Hamlet, Son to the former.

SCENE. Elsinore.



ACT I.

Scene I. Elsinore. A platform before the Castle.

[Francisco at his post. Enter to him Bernardo.]

Ber.
Who's there?   

[Enter the King, Queen, Hamlet, Polonius, Laertes, Voltimand,
Cornelius, Lords, and Attendant.]

Ham.
[Aside.] A little more than kin, and less than kind!
How say you by that?--[Aside.] Still harping on my daughter.

[Exeunt Rosencrantz, Guildenstern, and some Attendants].
"""


def test_clean_play_drops_front_matter_and_stage_directions():
    assert clean_play(PLAY) == (
        "ACT I.\n\n"
        "Scene I. Elsinore. A platform before the Castle.\n\n"
        "Ber.\nWho's there?\n\n"
        "Ham.\n"
        "A little more than kin, and less than kind!\n"
        "How say you by that?-- Still harping on my daughter.\n"
    )


def test_clean_play_setting_line_variants_and_brace_typos():
    text = "CYMBELINE\n\nby William Shakespeare\n\nA Roman Captain.\n\nScene,--Britain.\n\nAct I.\n\n{Enter X.]\nKent.\nGo.\n"
    assert clean_play(text) == "Act I.\n\nKent.\nGo.\n"
    text = "AS YOU LIKE IT\n\nThe SCENE lies first near OLIVER'S house; afterwards\npartly in Arden.\n\nACT I.\n"
    assert clean_play(text) == "ACT I.\n"


def test_clean_play_without_cast_list_drops_title_and_byline():
    text = "THE SONNETS\nby William Shakespeare\n\n\n\nI\n\nFrom fairest creatures we desire increase,\n"
    assert clean_play(text) == "I\n\nFrom fairest creatures we desire increase,\n"


def test_clean_milton_line_numbers_crlf_bom_dots_trailing_spaces():
    text = (
        "\ufeffPARADISE REGAINED \r\n\r\n\r\n\r\n"
        "Against the spiritual foe, and brought'st him thence        10\r\n"
        "By proof the undoubted Son of God, inspire, \r\n"
        "............Of Cerberus and blackest Midnight born\r\n"
        "   From hopes and fears that still the crowd abuse,  10\r\n"
        "In 1644 he wrote\r\n"
    )
    assert clean_milton(text) == (
        "PARADISE REGAINED\n\n"
        "Against the spiritual foe, and brought'st him thence\n"
        "By proof the undoubted Son of God, inspire,\n"
        "Of Cerberus and blackest Midnight born\n"
        "   From hopes and fears that still the crowd abuse,\n"
        "In 1644 he wrote\n"
    )


BRITANNICA = """## Shakespeare's Entry in the Encyclopaedia Britannica 11th Edition (1911)

### START: ED4A800_0.tif.txt ###
#### Source: http://upload.wikimedia.org/wikipedia/commons/scans/ED4A800.TIF 

p.772:0

Shakespeare, William (1564--1616), was baptized at Stratford-upon-
Avon. His rivals in *The Poetaster*.[^1] It  has been said that Shake-
speare, earl of South-
ampton, knew _latterly him.
l Tirnon which remained in manuscript
, provisionally in 1607. The critical
32. In the case of Coriolanus

[^1]: It is worth noting that Walter Roche

### END: ED4A800_0.tif.txt ###
BIBLIOGRAPHY '
1623 P. ISL folio, J. Heminge
"""


def test_clean_britannica_markers_footnotes_hyphenation_and_bibliography():
    assert clean_britannica(BRITANNICA) == (
        "Shakespeare, William (1564--1616), was baptized at Stratford-upon-Avon.\n"
        "His rivals in The Poetaster. It has been said that Shakespeare,\n"
        "earl of Southampton,\n"
        "knew latterly him.\n"
        "Tirnon which remained in manuscript\n"
        "provisionally in 1607. The critical\n"
        "32. In the case of Coriolanus\n\n"
        "It is worth noting that Walter Roche\n"
    )


# ------------------------------------------------------------------------------------- splits


def _paths(split: str) -> set[str]:
    return {d.path for d in SPLITS[split]}


def test_splits_are_disjoint_nonempty_and_of_the_right_kinds():
    names = list(SPLITS)
    assert names == ["train", "heldout", "ood"]
    for i, a in enumerate(names):
        assert SPLITS[a], a
        assert len(_paths(a)) == len(SPLITS[a]), f"{a} lists a document twice"
        for b in names[i + 1 :]:
            assert not _paths(a) & _paths(b), (a, b)
    assert {d.kind for d in SPLITS["train"] + SPLITS["heldout"]} == {"play"}
    assert {d.kind for d in SPLITS["ood"]} == {"milton", "britannica"}
    assert len(SPLITS["train"]) > 3 * len(SPLITS["heldout"])


def test_splits_use_no_folio_and_no_excluded_file():
    for split in SPLITS:
        for d in SPLITS[split]:
            assert not d.path.endswith("_gut_f.txt"), d.path
            assert not any(re.fullmatch(rx, d.path) for rx in EXCLUDED), d.path
            assert d.kind in corpus.CLEANERS


@pytest.mark.skipif(not asset_present(TEXT.name), reason="text not fetched (run `betaspec fetch-assets --only text`)")
def test_every_text_file_is_in_one_split_or_deliberately_excluded():
    root = corpus.text_dir()
    files = sorted(
        str(p.relative_to(root)) for folder in ("shksprdata/texts", "miltondata/texts", "shksprdata/ancillary")
        for p in (root / folder).iterdir() if p.is_file()
    )
    used = set().union(*(_paths(s) for s in SPLITS))
    assert used <= set(files), used - set(files)
    unaccounted = [f for f in files if f not in used and not any(re.fullmatch(rx, f) for rx in EXCLUDED)]
    assert not unaccounted


# ------------------------------------------------------------------------------------- passages, windows


def test_passages_cut_at_paragraph_breaks_and_keep_all_text():
    text = "\n\n".join(f"paragraph {i} " + "x" * 30 for i in range(20))
    ps = passages(text, target_chars=100)
    assert all(p.startswith("paragraph") for p in ps)
    assert "\n\n".join(ps) == text
    assert max(map(len, ps)) < 200
    assert passages(text, target_chars=100) == ps
    with pytest.raises(ValueError, match="target_chars"):
        passages(text, target_chars=0)


def test_windows_cut_consecutive_blocks_with_optional_bos():
    ids = torch.arange(100)
    w = windows(ids, 10, 3)
    assert w.shape == (3, 10) and w.dtype == torch.long
    assert torch.equal(w.flatten(), ids[:30])
    wb = windows(ids, 10, 3, bos_id=-1)
    assert torch.equal(wb[:, 0], torch.full((3,), -1))
    assert torch.equal(wb[:, 1:].flatten(), ids[:27])
    assert window_token_count(10, 3, bos=True) == 27
    with pytest.raises(ValueError, match="ids: has 100 tokens"):
        windows(ids, 50, 3)
    with pytest.raises(ValueError, match="1-D"):
        windows(ids.view(10, 10), 5, 1)


# ------------------------------------------------------------------------------------- token ids


class ByteTokenizer:
    """The smallest HF-style tokenizer: UTF-8 bytes shifted by 3; counts its calls."""

    name_or_path = "bytes"
    bos_token_id = 1
    all_special_tokens = ["<pad>", "<bos>", "<eos>"]

    def __init__(self):
        self.calls = 0

    def __len__(self) -> int:
        return 259

    def __call__(self, text, add_special_tokens=True):
        assert add_special_tokens is False
        self.calls += 1
        enc = lambda s: [b + 3 for b in s.encode()]
        return {"input_ids": enc(text) if isinstance(text, str) else [enc(t) for t in text]}


SAMPLE = {
    "play": "TITLE\n\nby William Shakespeare\n\nSCENE: Here.\n\nACT I.\n\n" + "A.\nWords of {name}, line {i}.\n\n",
    "milton": "Of Man's first disobedience in {name}, line {i}        10\n",
    "britannica": "p.772:0\nShake-\nspeare wrote {name}, line {i}.\n\n",
}


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch) -> Path:
    """An assets root whose text folder holds every split document, each a few kB of distinct text."""
    monkeypatch.setenv("BETASPEC_ASSETS", str(tmp_path))
    root = tmp_path / TEXT.directory
    for docs in SPLITS.values():
        for d in docs:
            head, line = SAMPLE[d.kind].split("A.\n") if d.kind == "play" else ("", SAMPLE[d.kind])
            line = ("A.\n" + line) if d.kind == "play" else line
            body = head + "".join(line.format(name=d.name, i=i) for i in range(120))
            (root / d.path).parent.mkdir(parents=True, exist_ok=True)
            (root / d.path).write_text(body, encoding="utf-8")
    return tmp_path


def test_token_ids_are_deterministic_prefix_consistent_and_cached(fake_corpus):
    tok = ByteTokenizer()
    short = token_ids("heldout", tok, 500, progress=False)
    assert short.shape == (500,) and short.dtype == torch.long
    calls = tok.calls
    again = token_ids("heldout", tok, 500, progress=False)
    assert torch.equal(short, again) and tok.calls == calls + 1  # only the fingerprint probe: read from cache
    longer = token_ids("heldout", tok, 20_000, progress=False)
    assert torch.equal(longer[:500], short)
    fresh = token_ids("heldout", ByteTokenizer(), 20_000, cache=False, progress=False)
    assert torch.equal(fresh, longer)
    assert list((fake_corpus / "tokens").rglob("heldout-*.safetensors"))
    stream = "".join(p + "\n\n" for p in split_passages("heldout")).encode()
    assert bytes((longer - 3).tolist()) == stream[:20_000]


def test_token_ids_interleave_documents_and_differ_across_splits(fake_corpus):
    tok = ByteTokenizer()
    first = bytes((token_ids("train", tok, 20_000, progress=False) - 3).tolist()).decode()
    names = {d.name for d in SPLITS["train"]}
    assert sum(f"Words of {n}," in first for n in names) >= 3  # a prefix draws on several documents
    heldout = bytes((token_ids("heldout", tok, 20_000, progress=False) - 3).tolist()).decode()
    assert not any(f"Words of {n}," in heldout for n in names)


def test_token_ids_bos_and_errors(fake_corpus):
    tok = ByteTokenizer()
    ids = token_ids("ood", tok, 100, add_bos=True, progress=False)
    assert ids[0] == tok.bos_token_id and torch.equal(ids[1:], token_ids("ood", tok, 99, progress=False))
    with pytest.raises(ValueError, match="has only"):
        token_ids("ood", tok, 10**8, progress=False)
    with pytest.raises(ValueError, match="split 'test'"):
        token_ids("test", tok, 10, progress=False)


def test_token_ids_without_text_name_the_missing_asset(tmp_path, monkeypatch):
    monkeypatch.setenv("BETASPEC_ASSETS", str(tmp_path))
    with pytest.raises(AssetMissingError, match="betaspec fetch-assets"):
        token_ids("train", ByteTokenizer(), 10, progress=False)
