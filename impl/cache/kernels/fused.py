"""The fused logit of a transform code, stated in torch (fused_logit_identity), and the argument
checks every backend shares.

For a coded key `k̂_t = Rᵀ(α_t v_t + B ĉ_t) + m` with `v_t = σ ⊙ ℓ[idx_t]` (SPEC §7,
`impl.cache.codecs.transform`), its logit against `q` is

    ⟪q, k̂_t⟫ − ⟪q, m⟫ = α_t ⟪q_rot, ℓ[idx_t]⟫ + ⟪q_basis, ĉ_t⟫,    q_rot = (R q) ⊙ σ,  q_basis = Bᵀ R q,

and `⟪q_rot, ℓ[idx_t]⟫ = Σ_j T_j(β_{t,j})` with the lookup tables of `q_rot` (`lut.lookup_tables`).
The kernels take `q_rot`, `q_basis` and the stored fields as they are: the packed indices, `α` in
its side dtype, and `ĉ` as float16/bfloat16/float32 values (`coef_bits = 16`) or as packed `c`-bit
integers `i` with one step `s` per token, `ĉ = s·(i − (2^{c−1} − 1))` (`coef_bits ∈ {8, 4}`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from impl.cache.kernels.backend import backend_for, kernel_module
from impl.cache.kernels.lut import group_layout
from impl.cache.packing import packed_code_width, packed_level_scores, unpack_codes
from impl.multilevel import check_levels, uniform_dequantize
from impl.validation import check_tensor

COEF_BITS = (16, 8, 4)
SIDE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def coefficient_values(coeffs: Tensor, coef_bits: int, r: int, coef_scale: Tensor | None = None) -> Tensor:
    """The rank-r coefficients `ĉ` (float32, (..., T, r)) from their stored form: float values
    (`coef_bits = 16`) or packed `c`-bit integers `i` with per-token step `s`:
    `ĉ = −(2^{c−1} − 1)·s + s·i` (`uniform_dequantize`)."""
    if coef_bits == 16:
        return coeffs.float()
    half = 2 ** (coef_bits - 1) - 1
    st = coef_scale.float().unsqueeze(-1)
    return uniform_dequantize(unpack_codes(coeffs, coef_bits, r), -half * st, st)


class FusedInputs(NamedTuple):
    """Checked arguments of a fused-logit call, flattened to L = ∏ leading dimensions:
    `q_rot` (L, N, d) float32/float64, `packed` (L, T, W) uint8, `levels` (L, 2^b), `scale` (L, T),
    `q_basis` (L, N, r), `coeffs` (L, T, r) or (L, T, ⌈r·c/8⌉), `coef_scale` (L, T) or None.
    Stored fields keep their dtypes and strides (views of the caller's buffers where the leading
    dimensions already agree)."""

    lead: tuple[int, ...]
    q_rot: Tensor
    packed: Tensor
    levels: Tensor
    bits: int
    d: int
    scale: Tensor
    q_basis: Tensor
    coeffs: Tensor
    coef_bits: int
    coef_scale: Tensor | None

    @property
    def rank(self) -> int:
        return self.q_basis.shape[-1]


def _side(x: object, name: str, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(x, Tensor) or x.dtype not in SIDE_DTYPES:
        raise ValueError(f"{name} must be a float16, bfloat16 or float32 tensor, got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    return x


def check_fused_inputs(q_rot: Tensor, packed: Tensor, levels: Tensor, bits: int, d: int, scale: Tensor,
                       q_basis: Tensor | None = None, coeffs: Tensor | None = None, *, coef_bits: int = 16,
                       coef_scale: Tensor | None = None) -> FusedInputs:
    """Check the arguments of `fused_logits` (ValueError naming the argument) and flatten them.

    ``q_rot`` (..., N, d); ``packed`` (..., T, ⌈d·b/8⌉) uint8; ``levels`` (..., 2^b) or (2^b,);
    ``scale`` (..., T); ``q_basis`` (..., N, r) and ``coeffs`` (..., T, r) (float, `coef_bits = 16`)
    or (..., T, ⌈r·c/8⌉) uint8 with ``coef_scale`` (..., T) (`coef_bits ∈ {8, 4}`); the leading
    dimensions of the stored fields must equal packed's, and broadcast against q_rot's."""
    lay = group_layout(d, bits)
    qc = check_tensor(q_rot, "q_rot", min_dim=2)
    if qc.shape[-1] != d:
        raise ValueError(f"q_rot must have last dimension d = {d}, got shape {tuple(q_rot.shape)}")
    if not isinstance(packed, Tensor) or packed.dtype != torch.uint8:
        raise ValueError(f"packed must be a uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
    if packed.dim() < 2 or packed.shape[-1] != lay.width:
        raise ValueError(f"packed must have shape (..., T, ⌈d·b/8⌉ = {lay.width}) for d = {d}, b = {lay.bits}, "
                         f"got {tuple(packed.shape)}")
    if packed.device != qc.device:
        raise ValueError(f"packed must be on q_rot's device {qc.device}, got {packed.device}")
    try:
        lead = tuple(torch.broadcast_shapes(qc.shape[:-2], packed.shape[:-2]))
    except RuntimeError:
        raise ValueError(f"q_rot {tuple(q_rot.shape)} and packed {tuple(packed.shape)} must have broadcastable "
                         "leading dimensions") from None
    ptok = tuple(packed.shape[:-1])
    lv = check_levels(levels, "levels")
    if lv.shape[-1] != 2**lay.bits:
        raise ValueError(f"levels must hold 2^bits = {2**lay.bits} values along the last dimension, "
                         f"got shape {tuple(levels.shape)}")
    sc = _side(scale, "scale", ptok)
    if coef_bits not in COEF_BITS or isinstance(coef_bits, bool):
        raise ValueError(f"coef_bits must be one of {COEF_BITS}, got {coef_bits!r}")
    if (q_basis is None) != (coeffs is None):
        raise ValueError("q_basis and coeffs must be given together (the rank-r term), or neither")
    L = math.prod(lead)
    N = qc.shape[-2]
    if q_basis is None:
        r = 0
        qb = qc.new_zeros(*lead, N, 0)
        cf = sc.new_zeros(*packed.shape[:-1], 0)
        cs = None
        coef_bits = 16
    else:
        qb = check_tensor(q_basis, "q_basis", min_dim=2, allow_empty_last=True).to(qc.dtype)
        r = qb.shape[-1]
        if qb.shape[-2] != N:
            raise ValueError(f"q_basis must have shape (..., N = {N}, r), got {tuple(q_basis.shape)}")
        if coef_bits == 16:
            cf = _side(coeffs, "coeffs", ptok + (r,))
            cs = None
        else:
            w = packed_code_width(r, coef_bits) if r else 0
            if not isinstance(coeffs, Tensor) or coeffs.dtype != torch.uint8:
                raise ValueError(f"coeffs must be a uint8 tensor of packed {coef_bits}-bit integers, got "
                                 f"{getattr(coeffs, 'dtype', type(coeffs).__name__)}")
            if tuple(coeffs.shape) != ptok + (w,):
                raise ValueError(f"coeffs must have shape {ptok + (w,)} (packed {coef_bits}-bit, r = {r}), "
                                 f"got {tuple(coeffs.shape)}")
            cf = coeffs
            cs = _side(coef_scale, "coef_scale", ptok)
    for name, t in (("scale", sc), ("coeffs", cf)) + ((("coef_scale", cs),) if cs is not None else ()):
        if t.device != qc.device:
            raise ValueError(f"{name} must be on q_rot's device {qc.device}, got {t.device}")

    def flat(x: Tensor, tail: int) -> Tensor:
        return x.expand(*lead, *x.shape[x.dim() - tail:]).reshape(L, *x.shape[x.dim() - tail:])

    try:
        levels_l = lv.to(device=qc.device).expand(*lead, lv.shape[-1]).reshape(L, lv.shape[-1])
    except RuntimeError:
        raise ValueError(f"levels {tuple(levels.shape)} must broadcast against the leading dimensions {lead}") from None
    return FusedInputs(lead, flat(qc, 2), flat(packed, 2), levels_l, lay.bits, d, flat(sc, 1), flat(qb, 2),
                       flat(cf, 2), coef_bits, flat(cs, 1) if cs is not None else None)


def reference_logits(x: FusedInputs) -> Tensor:
    """The torch statement of the fused logit (fused_logit_identity), (L, N, T) in q_rot's dtype:
    `α_t ⟪q_rot, ℓ[idx_t]⟫` from the packed indices (`packed_level_scores`, a chunk of tokens decoded
    at a time) plus `⟪q_basis, ĉ_t⟫`."""
    s = packed_level_scores(x.q_rot, x.packed, x.levels, x.bits, x.d)
    s = s * x.scale.to(s.dtype).unsqueeze(-2)
    if x.rank:
        c = coefficient_values(x.coeffs, x.coef_bits, x.rank, x.coef_scale).to(s.dtype)
        s = s + x.q_basis.to(s.dtype) @ c.transpose(-1, -2)
    return s


def transform_query(codec, qf: Tensor) -> tuple[Tensor, Tensor | None]:
    """`(q_rot, q_basis) = ((R q) ⊙ σ, Bᵀ R q)` of a `TransformCodec` for queries (B, H, N, d), in
    torch (q_basis None for rank 0)."""
    rq = codec.rotate(qf)
    q_rot = rq * codec.channel_scale.to(qf.dtype)[None, :, None, :]
    q_basis = torch.einsum("bhqd,hdr->bhqr", rq, codec.basis.to(qf.dtype)) if codec.rank else None
    return q_rot, q_basis


def query_transform(q: Tensor):
    """The function that forms `(R q ⊙ σ, Bᵀ R q)` for queries `q` of a transform codec: compiled
    (numba) for float32-computable CPU queries when numba is the backend, torch otherwise."""
    if isinstance(q, Tensor) and q.dtype != torch.float64 and backend_for(q.device) == "numba":
        return kernel_module("numba").transform_query
    return transform_query


def transform_inputs(codec, q: Tensor, codes: dict[str, Tensor], query=transform_query) -> FusedInputs:
    """The fused-logit arguments of a `TransformCodec` for queries (B, H, N, d) (float32; float64
    kept) and its stored `codes`: `q_rot = (R q) ⊙ σ`, `q_basis = Bᵀ R q` (by `query`, once per call:
    `transform_query`, or the compiled `cpu.transform_query`), the packed indices, α, and the
    coefficients in their stored form."""
    from impl.cache.codecs.base import check_queries

    qf = check_queries(q, codec.heads, codec.dim)
    q_rot, q_basis = query(codec, qf)
    coeffs = coef_scale = None
    if codec.rank:
        coeffs = codes["coeffs"]
        coef_scale = codes.get("coef_scale")
    return check_fused_inputs(q_rot, codes["codes"], codec.levels, codec.bits, codec.dim, codes["scale"], q_basis,
                              coeffs, coef_bits=codec.coef_bits if codec.rank else 16, coef_scale=coef_scale)
