"""Lookup tables of query partial sums over groups of packed codes (packed_score_lut_identity).

A `b`-bit code of dimension `d` is a little-endian bit stream (`impl.cache.packing`): index `idxᵢ`
occupies stream bits `[i·b, i·b + b)`. The kernels read it in groups of `g = ⌊8/b⌋` coordinates —
`g·b` consecutive stream bits, so one group is one byte for `b ∈ {1, 2, 4}` (8, 4 and 2
coordinates) and 6 bits for `b = 3` (2 coordinates), which start at bit offset `6j` and may
straddle two bytes. Group `j`'s pattern is

    β_j = Σ_{i<g} idx_{g·j+i} · 2^{i·b}      (stream bits [g·b·j, g·b·(j+1)) read as one integer)

and its table, built once per query, is

    T_j(β) = Σ_{i<g} q_{g·j+i} · ℓ[(β >> i·b) mod 2^b]            (2^{g·b} entries)

so a key's score is `Σ_j T_j(β_j) = ⟪q, ℓ[idx]⟫`: one look-up per group instead of `g` products.
Coordinates past `d` in the last group get `q = 0`, so whatever pattern they carry adds nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from impl.cache.packing import packed_code_width
from impl.multilevel import check_bits, check_levels
from impl.validation import check_positive_int, check_tensor

MAX_TABLE_BITS = 4
"""Code widths the lookup-table kernels support (b ∈ {1, 2, 3, 4})."""


class GroupLayout(NamedTuple):
    """Where each group of `g` coordinates lies in a packed code of `width` bytes.

    `byte[j]`, `shift[j]`: the group's first stream bit is bit `shift[j]` of byte `byte[j]`;
    `two_bytes[j]`: the group's bits run into byte `byte[j] + 1` (only `b = 3`, and never past the
    last byte: a group whose real coordinates end in `byte[j]` reads one byte)."""

    bits: int
    group: int          # g = ⌊8/b⌋ coordinates per group
    pattern_bits: int   # g·b bits per group
    groups: int         # ⌈d/g⌉
    width: int          # ⌈d·b/8⌉ bytes per code
    byte: tuple[int, ...]
    shift: tuple[int, ...]
    two_bytes: tuple[bool, ...]


def group_layout(d: int, bits: int) -> GroupLayout:
    """The `GroupLayout` of a `bits`-bit code of dimension `d` (see the module docstring)."""
    d = check_positive_int(d, "d")
    b = check_bits(bits, "bits", maximum=MAX_TABLE_BITS)
    g = 8 // b
    gb = g * b
    n = (d + g - 1) // g
    width = packed_code_width(d, b)
    offsets = [j * gb for j in range(n)]
    byte = tuple(o >> 3 for o in offsets)
    shift = tuple(o & 7 for o in offsets)
    two = tuple(s + gb > 8 and y + 1 < width for y, s in zip(byte, shift))
    return GroupLayout(b, g, gb, n, width, byte, shift, two)


def pattern_levels(levels: Tensor, bits: int) -> Tensor:
    """`P[..., β, i] = ℓ[(β >> i·b) mod 2^b]`: the level of coordinate `i` of a group whose
    pattern is `β`, shape (..., 2^{g·b}, g) for levels (..., 2^b)."""
    b = check_bits(bits, "bits", maximum=MAX_TABLE_BITS)
    g = 8 // b
    beta = torch.arange(2 ** (g * b), device=levels.device)
    digits = (beta[:, None] >> (torch.arange(g, device=levels.device) * b)) & (2**b - 1)     # (K, g)
    return levels[..., digits]


def lookup_tables(q: Tensor, levels: Tensor, bits: int, d: int) -> Tensor:
    """The per-group score tables of packed_score_lut_identity:

        T_j(β) = Σ_{i<g} q_{g·j+i} · ℓ[(β >> i·b) mod 2^b],   g = ⌊8/b⌋,  β ∈ [0, 2^{g·b}),

    so that `Σ_j T_j(β_j) = ⟪q, ℓ[idx]⟫` for the group patterns `β_j` of a packed code
    (`group_codes`). Shapes: ``q`` (..., N, d), ``levels`` (..., 2^b) with leading dimensions that
    broadcast against q's (without N) — e.g. (H, 2^b) for q (B, H, N, d) — or (2^b,); the result
    is (..., N, ⌈d/g⌉, 2^{g·b}) in q's compute dtype (float32, or float64 for float64 queries).
    Coordinates past `d` in the last group count as `q = 0`."""
    qc = check_tensor(q, "q", min_dim=2)
    lay = group_layout(d, bits)
    if qc.shape[-1] != d:
        raise ValueError(f"q must have last dimension d = {d}, got shape {tuple(q.shape)}")
    lv = check_levels(levels, "levels").to(qc.dtype)
    if lv.shape[-1] != 2**lay.bits:
        raise ValueError(f"levels must hold 2^bits = {2**lay.bits} values along the last dimension, "
                         f"got shape {tuple(levels.shape)}")
    pad = lay.groups * lay.group - d
    qp = torch.nn.functional.pad(qc, (0, pad)) if pad else qc
    qg = qp.reshape(*qc.shape[:-1], lay.groups, lay.group)                      # (..., N, n, g)
    P = pattern_levels(lv, lay.bits)                                             # (..., K, g)
    return qg @ P.transpose(-1, -2).unsqueeze(-3)                                # (..., N, n, K); N broadcasts


def group_codes(packed: Tensor, bits: int, d: int) -> Tensor:
    """The group patterns `β_{t,j}` of packed codes (..., T, ⌈d·b/8⌉): int64 (..., T, ⌈d/g⌉).

    Read as the kernels read them: group `j` starts at stream bit `g·b·j`, i.e. bit `shift[j]` of
    byte `byte[j]`; with `b = 3` it may continue into the next byte, so the two bytes are joined
    little-endian into a 16-bit word before shifting (`GroupLayout`)."""
    lay = group_layout(d, bits)
    if not isinstance(packed, Tensor) or packed.dtype != torch.uint8:
        raise ValueError(f"packed must be a uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
    if packed.dim() == 0 or packed.shape[-1] != lay.width:
        raise ValueError(f"packed must have last dimension ⌈d·b/8⌉ = {lay.width} for d = {d}, b = {lay.bits}, "
                         f"got shape {tuple(packed.shape)}")
    p = packed.long()
    byte = torch.tensor(lay.byte, device=packed.device)
    word = p[..., byte]
    if any(lay.two_bytes):
        hi_idx = torch.tensor([y + 1 if two else y for y, two in zip(lay.byte, lay.two_bytes)], device=packed.device)
        two = torch.tensor(lay.two_bytes, device=packed.device)
        word = word | torch.where(two, p[..., hi_idx] << 8, torch.zeros_like(word))
    shift = torch.tensor(lay.shift, device=packed.device)
    return (word >> shift) & (2**lay.pattern_bits - 1)


def table_scores(tables: Tensor, packed: Tensor, bits: int, d: int) -> Tensor:
    """`Σ_j T_j(β_{t,j})` for tables (..., N, n, K) (`lookup_tables`) and packed codes (..., T, W)
    with the same leading dimensions: (..., N, T). The torch statement of what the compiled kernels
    compute, one look-up per group (packed_score_lut_identity)."""
    beta = group_codes(packed, bits, d)                                          # (..., T, n)
    N, n, K = tables.shape[-3:]
    lead = torch.broadcast_shapes(tables.shape[:-3], beta.shape[:-2])
    tab = tables.expand(*lead, N, n, K)
    idx = beta.expand(*lead, *beta.shape[-2:]).transpose(-1, -2).unsqueeze(-3)  # (..., 1, n, T)
    return torch.gather(tab, -1, idx.expand(*lead, N, n, idx.shape[-1])).sum(-2)
