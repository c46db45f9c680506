"""Bit-packed 1-bit codes and scores computed from the packed form.

A key's code is its sign pattern `signVec k ∈ {±1}^d` (SPEC §1, zero ↦ +1). It is stored as bits
`bᵢ = [kᵢ ≥ 0]`, eight per byte along the last dimension, little-endian within a byte
(bit `j` of byte `c` is coordinate `8c + j`); `d` need not be a multiple of 8 (the last byte is
zero-padded and the padding is never read back).

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
