"""Densely packed codes and scores computed from the packed form.

A `b`-bit code of a vector of dimension `d` is `d` level indices `idxᵢ ∈ [0, 2^b)`. They are stored
as one little-endian bit stream along the last dimension: bit `j` of `idxᵢ` is stream bit
`i·b + j`, and stream bit `8c + j` is bit `j` of byte `c` — so `⌈d·b/8⌉` bytes per code, the last
byte zero-padded (the padding is never read back). For `b = 1` the index is the sign bit
`bᵢ = [kᵢ ≥ 0]` of `signVec k ∈ {±1}^d` (SPEC §1, zero ↦ +1): eight coordinates per byte, bit `j`
of byte `c` is coordinate `8c + j`.

Scores against packed codes never materialise the whole context in full precision:

* ``packed_sign_scores(..., method="unpack")`` decodes a chunk of tokens at a time through a
  256-entry table of ±1 rows (one byte ↦ 8 signs) and multiplies; only one chunk is ever in
  floating point.
* ``method="lut"`` uses the identity `⟪q, s⟫ = 2⟪q, b⟫ − Σᵢ qᵢ` with, per query and byte
  position, a 256-entry table of partial sums `Σ_{j<8} q_{8c+j} · bit_j(v)`; each token then
  costs one table look-up per byte.
"""

from __future__ import annotations

import torch
from torch import Tensor

from impl.multilevel import check_bits, check_levels
from impl.validation import check_tensor

_BIT_WEIGHTS = torch.tensor([1 << j for j in range(8)], dtype=torch.uint8)


def _byte_bits() -> Tensor:
    """(256, 8) table: row v holds the 8 bits of byte v, least significant first."""
    v = torch.arange(256, dtype=torch.int64)
    return ((v[:, None] >> torch.arange(8)) & 1).to(torch.uint8)


_BYTE_BITS = _byte_bits()


def packed_width(d: int) -> int:
    """Bytes per packed code of dimension `d`: ⌈d / 8⌉."""
    if d < 1:
        raise ValueError(f"d must be a positive dimension, got {d}")
    return (d + 7) // 8


def pack_bits(bits: Tensor) -> Tensor:
    """Pack a boolean tensor along its last dimension, 8 bits per byte (little-endian).

    Returns a ``uint8`` tensor of shape ``(..., ⌈d/8⌉)`` on the input's device.
    """
    if bits.dtype != torch.bool:
        raise ValueError(f"bits must be a bool tensor, got dtype {bits.dtype}")
    if bits.dim() == 0:
        raise ValueError("bits must have at least one dimension (the code dimension d)")
    d = bits.shape[-1]
    nb = packed_width(d)
    pad = nb * 8 - d
    b = bits.to(torch.uint8)
    if pad:
        b = torch.nn.functional.pad(b, (0, pad))
    b = b.reshape(*bits.shape[:-1], nb, 8)
    weights = _BIT_WEIGHTS.to(bits.device)
    return (b * weights).sum(dim=-1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, d: int) -> Tensor:
    """Inverse of :func:`pack_bits`: a bool tensor of shape ``(..., d)``."""
    _check_packed(packed, d)
    table = _BYTE_BITS.to(packed.device)
    bits = table[packed.long()].reshape(*packed.shape[:-1], packed.shape[-1] * 8)
    return bits[..., :d].bool()


def pack_signs(x: Tensor) -> Tensor:
    """Pack the sign code of `x` (SPEC §1: `sgn 0 = +1`): bit `bᵢ = [xᵢ ≥ 0]`.

    Realises the storage of `signVec k` from cos_sign_quant_formula at one bit per coordinate.
    """
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite (found NaN or Inf)")
    return pack_bits(x >= 0)


def packed_code_width(d: int, bits: int) -> int:
    """Bytes per packed `bits`-bit code of dimension `d`: ⌈d·b/8⌉."""
    if d < 1:
        raise ValueError(f"d must be a positive dimension, got {d}")
    return (d * check_bits(bits) + 7) // 8


def pack_codes(idx: Tensor, bits: int) -> Tensor:
    """Pack level indices `idx ∈ [0, 2^b)` (an integer tensor (..., d)) into the dense bit stream
    described in the module docstring: uint8 of shape (..., ⌈d·b/8⌉)."""
    b = check_bits(bits)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
        raise ValueError(f"idx must be an integer tensor, got dtype {idx.dtype}")
    if idx.dim() == 0:
        raise ValueError("idx must have at least one dimension (the code dimension d)")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= 2**b):
        raise ValueError(f"idx must lie in [0, 2^bits = {2**b}), got values in [{int(idx.min())}, {int(idx.max())}]")
    i = idx.to(torch.int64)
    stream = ((i.unsqueeze(-1) >> torch.arange(b, device=i.device)) & 1).bool()   # (..., d, b)
    return pack_bits(stream.reshape(*idx.shape[:-1], idx.shape[-1] * b))


def unpack_codes(packed: Tensor, bits: int, d: int) -> Tensor:
    """Inverse of :func:`pack_codes`: the level indices (int64, shape (..., d))."""
    b = check_bits(bits)
    width = packed_code_width(d, b)
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed must be a uint8 tensor, got dtype {packed.dtype}")
    if packed.dim() == 0 or packed.shape[-1] != width:
        raise ValueError(f"packed must have last dimension ⌈d·b/8⌉ = {width} for d = {d}, b = {b}, "
                         f"got shape {tuple(packed.shape)}")
    table = _BYTE_BITS.to(packed.device)
    stream = table[packed.long()].reshape(*packed.shape[:-1], width * 8)[..., : d * b]
    stream = stream.reshape(*packed.shape[:-1], d, b).to(torch.int64)
    return (stream << torch.arange(b, device=packed.device)).sum(-1)


def unpack_signs(packed: Tensor, d: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ±1 sign vectors `sᵢ = 2bᵢ − 1` of packed codes, shape ``(..., d)``."""
    return unpack_bits(packed, d).to(dtype) * 2 - 1


def _check_packed(packed: Tensor, d: int) -> None:
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed must be a uint8 tensor, got dtype {packed.dtype}")
    if packed.dim() == 0 or packed.shape[-1] != packed_width(d):
        raise ValueError(
            f"packed must have last dimension ⌈d/8⌉ = {packed_width(d)} for d = {d}, got shape {tuple(packed.shape)}"
        )


def _sign_rows(dtype: torch.dtype, device: torch.device) -> Tensor:
    """(256, 8) table of ±1: row v is the sign pattern stored in byte v."""
    return _BYTE_BITS.to(device=device, dtype=dtype) * 2 - 1


def packed_sign_scores(q: Tensor, packed: Tensor, d: int, *, method: str = "unpack",
                       chunk_tokens: int = 4096) -> Tensor:
    """`⟪q, s_t⟫` for every query against every packed sign code, without materialising the
    whole context in floating point.

    Shapes: ``q`` is ``(..., Q, d)``, ``packed`` is ``(..., T, ⌈d/8⌉)`` with broadcastable
    leading dimensions; the result is ``(..., Q, T)`` in ``q``'s dtype (float32 for half inputs).
    Multiply by the per-token scale `optScale k_t` to get the 1-bit logit `⟪q, k̂_t⟫`.
    """
    _check_packed(packed, d)
    if not isinstance(q, Tensor) or not q.is_floating_point():
        raise ValueError(f"q must be a floating-point tensor, got {getattr(q, 'dtype', type(q).__name__)}")
    check_tensor(q, "q", min_dim=2)
    if q.shape[-1] != d:
        raise ValueError(f"q must have last dimension d = {d}, got shape {tuple(q.shape)}")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be ≥ 1, got {chunk_tokens}")
    work = q.float() if q.dtype in (torch.float16, torch.bfloat16) else q
    if method == "unpack":
        return _scores_unpack(work, packed, d, chunk_tokens)
    if method == "lut":
        return _scores_lut(work, packed, d, chunk_tokens)
    raise ValueError(f"method must be 'unpack' or 'lut', got {method!r}")


def _scores_unpack(q: Tensor, packed: Tensor, d: int, chunk: int) -> Tensor:
    rows = _sign_rows(q.dtype, q.device)                          # (256, 8): byte ↦ 8 signs
    nb = packed.shape[-1]
    outs = []
    for start in range(0, packed.shape[-2], chunk):
        block = packed[..., start:start + chunk, :]
        signs = torch.nn.functional.embedding(block.long(), rows)  # (..., Tc, nb, 8)
        signs = signs.reshape(*block.shape[:-1], nb * 8)[..., :d]
        outs.append(q @ signs.transpose(-1, -2))
    if not outs:
        return q.new_zeros(*torch.broadcast_shapes(q.shape[:-2], packed.shape[:-2]), q.shape[-2], 0)
    return torch.cat(outs, dim=-1)


def _scores_lut(q: Tensor, packed: Tensor, d: int, chunk: int) -> Tensor:
    nb = packed.shape[-1]
    pad = nb * 8 - d
    qp = torch.nn.functional.pad(q, (0, pad)) if pad else q
    lead = torch.broadcast_shapes(q.shape[:-2], packed.shape[:-2])
    Q = q.shape[-2]
    bits = _BYTE_BITS.to(device=q.device, dtype=q.dtype)          # (256, 8)
    lut = qp.reshape(*q.shape[:-1], nb, 8) @ bits.T                # (..., Q, nb, 256)
    lut = lut.expand(*lead, Q, nb, 256).reshape(-1, Q, nb, 256)    # (L, Q, nb, 256)
    L = lut.shape[0]
    # one embedding table whose rows are (leading index, byte position, byte value)
    table = lut.permute(0, 2, 3, 1).reshape(L * nb * 256, Q)
    offsets = (torch.arange(L, device=q.device)[:, None, None] * (nb * 256)
               + torch.arange(nb, device=q.device)[None, None, :] * 256)
    codes = packed.expand(*lead, *packed.shape[-2:]).reshape(L, -1, nb)
    total = q.sum(dim=-1).expand(*lead, Q).reshape(L, Q, 1)
    outs = []
    for start in range(0, codes.shape[1], chunk):
        idx = codes[:, start:start + chunk, :].long() + offsets   # (L, Tc, nb)
        partial = torch.nn.functional.embedding(idx, table).sum(dim=2)  # (L, Tc, Q): ⟪q, b_t⟫
        outs.append(2 * partial.transpose(1, 2) - total)
    out = torch.cat(outs, dim=-1) if outs else q.new_zeros(L, Q, 0)
    return out.reshape(*lead, Q, out.shape[-1])


def packed_level_scores(q: Tensor, packed: Tensor, levels: Tensor, bits: int, d: int, *,
                        chunk_tokens: int = 4096) -> Tensor:
    """`⟪q, ℓ[idx_t]⟫` for every query against every packed `bits`-bit code, where `ℓ[idx_t]` is
    the code's level vector (packed_score_lut_identity: the same sum the lookup-table kernels
    compute one group of coordinates at a time). Decodes `chunk_tokens` codes at a time, so only
    one chunk is ever in floating point.

    Shapes: ``q`` (..., Q, d) and ``packed`` (..., T, ⌈d·b/8⌉) with broadcastable leading dimensions;
    ``levels`` (..., 2^b) with the leading dimensions of ``packed`` (or fewer: (2^b,) is one table
    for all); the result is (..., Q, T) in float32 (float64 for float64 queries)."""
    b = check_bits(bits)
    if not isinstance(q, Tensor) or not q.is_floating_point():
        raise ValueError(f"q must be a floating-point tensor, got {getattr(q, 'dtype', type(q).__name__)}")
    qc = check_tensor(q, "q", min_dim=2)
    if qc.shape[-1] != d:
        raise ValueError(f"q must have last dimension d = {d}, got shape {tuple(q.shape)}")
    lv = check_levels(levels)
    if lv.shape[-1] != 2**b:
        raise ValueError(f"levels must hold 2^bits = {2**b} values along the last dimension, got {tuple(levels.shape)}")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be ≥ 1, got {chunk_tokens}")
    work = qc.dtype
    lv = lv.to(work)
    lead = torch.broadcast_shapes(qc.shape[:-2], packed.shape[:-2])
    outs = []
    for start in range(0, packed.shape[-2], chunk_tokens):
        idx = unpack_codes(packed[..., start:start + chunk_tokens, :], b, d)          # (..., Tc, d)
        table = lv.unsqueeze(-2)                                                     # (..., 1, 2^b)
        table = table.reshape(*([1] * (idx.dim() - table.dim())), *table.shape)
        vals = torch.take_along_dim(table, idx, dim=-1)                             # (..., Tc, d)
        outs.append(qc @ vals.transpose(-1, -2))
    if not outs:
        return qc.new_zeros(*lead, qc.shape[-2], 0)
    return torch.cat(outs, dim=-1)
