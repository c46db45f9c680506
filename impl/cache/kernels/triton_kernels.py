"""GPU kernels (Triton) for the same two operations as `cpu`: fused logits from packed codes, and
one decode step of attention with online softmax.

On a GPU a 2^{g·b}-entry table per group and query is a poor fit (gathers from shared memory);
instead each program unpacks a tile of (tokens × coordinates) level indices in registers —
coordinate i's `b` bits start at stream bit `i·b`, i.e. bit `(i·b) mod 8` of byte `⌊i·b/8⌋`, and
for `b = 3` may run into the next byte — looks the levels up (2^b ≤ 16 of them) and multiplies by
the queries of the GQA group with one matrix product (fp32, `input_precision="ieee"`: no TF32
rounding). The sum is the same `⟪q_rot, ℓ[idx_t]⟫` the lookup tables give
(packed_score_lut_identity), then `α_t ·` it `+ ⟪q_basis, ĉ_t⟫` (fused_logit_identity).

`decode_state` splits each kv head's coded tokens over programs; each folds its blocks into
running sums `(μ, Z, N)` (online_softmax_merge) and the splits are merged by
`softmax.reduce_softmax_blocks`. The kernels run in Triton's CPU interpreter under
``TRITON_INTERPRET=1`` (the CI tests do that on tiny shapes).

Layout requirements: the last dimension of codes, coefficients and values must be contiguous
(they are `.contiguous()`-copied otherwise); other dimensions are read through their strides, so
the store's growable buffers are used in place.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from impl.cache.kernels.backend import triton_interpreted
from impl.cache.kernels.fused import FusedInputs
from impl.cache.kernels.softmax import SoftmaxState, reduce_softmax_blocks

BLOCK_T = 32
INTERPRETED = triton_interpreted()   # `triton.jit` reads TRITON_INTERPRET when it decorates, i.e. now


@triton.jit
def _block_logits(q_ptr, lv_ptr, codes_ptr, scale_ptr, qb_ptr, coef_ptr, cstep_ptr,
                  l, t, t_ok, N, d, r, W,
                  s_cl, s_ct, s_sl, s_st, s_fl, s_ft, s_gl, s_gt,
                  BITS: tl.constexpr, D_PAD: tl.constexpr, N_PAD: tl.constexpr, R_PAD: tl.constexpr,
                  COEF_BITS: tl.constexpr, HAS_RANK: tl.constexpr):
    """s[t, n] = α_t ⟪q_rot_n, ℓ[idx_t]⟫ + ⟪q_basis_n, ĉ_t⟫ for a block of tokens t (BLOCK_T, N_PAD)."""
    i = tl.arange(0, D_PAD)
    i_ok = i < d
    bit = i * BITS
    byte = bit >> 3
    shift = bit & 7
    row = codes_ptr + l * s_cl + t[:, None] * s_ct
    ok = t_ok[:, None] & i_ok[None, :]
    word = tl.load(row + byte[None, :], mask=ok, other=0).to(tl.int32)
    if BITS == 3:
        # a 3-bit index starting at bit 6 or 7 of its byte continues into the next byte (which exists
        # whenever the index's own bits need it): join the two bytes little-endian
        hi_ok = ok & ((shift + BITS) > 8)[None, :] & ((byte + 1) < W)[None, :]
        word = word | (tl.load(row + byte[None, :] + 1, mask=hi_ok, other=0).to(tl.int32) << 8)
    idx = (word >> shift[None, :]) & ((1 << BITS) - 1)
    vals = tl.zeros(idx.shape, dtype=tl.float32)
    for k in tl.static_range(1 << BITS):
        vals = tl.where(idx == k, tl.load(lv_ptr + l * (1 << BITS) + k), vals)
    vals = tl.where(ok, vals, 0.0)
    n = tl.arange(0, N_PAD)
    n_ok = n < N
    q = tl.load(q_ptr + l * N * d + n[:, None] * d + i[None, :], mask=n_ok[:, None] & i_ok[None, :], other=0.0)
    s = tl.dot(vals, tl.trans(q), input_precision="ieee")                           # (BLOCK_T, N_PAD)
    alpha = tl.load(scale_ptr + l * s_sl + t * s_st, mask=t_ok, other=0.0).to(tl.float32)
    s = s * alpha[:, None]
    if HAS_RANK:
        k = tl.arange(0, R_PAD)
        k_ok = k < r
        cok = t_ok[:, None] & k_ok[None, :]
        crow = coef_ptr + l * s_fl + t[:, None] * s_ft
        if COEF_BITS == 16:
            c = tl.load(crow + k[None, :], mask=cok, other=0.0).to(tl.float32)
        else:
            # packed integers i (8 bits: one per byte; 4 bits: two per byte, low nibble first),
            # ĉ = step · (i − (2^{c−1} − 1))
            per = 8 // COEF_BITS
            raw = tl.load(crow + (k // per)[None, :], mask=cok, other=0).to(tl.int32)
            iv = (raw >> ((k % per) * COEF_BITS)[None, :]) & ((1 << COEF_BITS) - 1)
            step = tl.load(cstep_ptr + l * s_gl + t * s_gt, mask=t_ok, other=0.0).to(tl.float32)
            c = (iv - ((1 << (COEF_BITS - 1)) - 1)).to(tl.float32) * step[:, None]
            c = tl.where(cok, c, 0.0)
        qb = tl.load(qb_ptr + l * N * r + n[:, None] * r + k[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0)
        s = s + tl.dot(c, tl.trans(qb), input_precision="ieee")
    return s


@triton.jit
def _scores_kernel(q_ptr, lv_ptr, codes_ptr, scale_ptr, qb_ptr, coef_ptr, cstep_ptr, out_ptr,
                   T, N, d, r, W,
                   s_cl, s_ct, s_sl, s_st, s_fl, s_ft, s_gl, s_gt,
                   BITS: tl.constexpr, D_PAD: tl.constexpr, N_PAD: tl.constexpr, R_PAD: tl.constexpr,
                   COEF_BITS: tl.constexpr, HAS_RANK: tl.constexpr, BLOCK: tl.constexpr):
    l = tl.program_id(0).to(tl.int64)           # offsets in int64: L·T·dv may pass 2^31
    t = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    t_ok = t < T
    s = _block_logits(q_ptr, lv_ptr, codes_ptr, scale_ptr, qb_ptr, coef_ptr, cstep_ptr, l, t, t_ok, N, d, r, W,
                      s_cl, s_ct, s_sl, s_st, s_fl, s_ft, s_gl, s_gt,
                      BITS, D_PAD, N_PAD, R_PAD, COEF_BITS, HAS_RANK)
    n = tl.arange(0, N_PAD)
    tl.store(out_ptr + l * N * T + n[None, :] * T + t[:, None], s, mask=t_ok[:, None] & (n < N)[None, :])


@triton.jit
def _decode_kernel(q_ptr, lv_ptr, codes_ptr, scale_ptr, qb_ptr, coef_ptr, cstep_ptr,
                   v_ptr, keep_ptr, bias_ptr, mu_ptr, z_ptr, acc_ptr,
                   T, N, d, r, W, dv, first, heads, split, n_splits, scaling, softcap,
                   s_cl, s_ct, s_sl, s_st, s_fl, s_ft, s_gl, s_gt, s_vl, s_vt, s_mb, s_mh,
                   BITS: tl.constexpr, D_PAD: tl.constexpr, N_PAD: tl.constexpr, R_PAD: tl.constexpr,
                   DV_PAD: tl.constexpr, COEF_BITS: tl.constexpr, HAS_RANK: tl.constexpr,
                   MASK: tl.constexpr, HEAD_MASK: tl.constexpr, SOFTCAP: tl.constexpr, BLOCK: tl.constexpr):
    """Online-softmax state of kv head l over coded tokens [sp·split, (sp+1)·split): μ, Z (N) and
    N (N, dv) written to mu/z/acc[l, sp]. MASK: 0 none, 1 keep rows (uint8, 1 = attend), 2 additive."""
    l = tl.program_id(0).to(tl.int64)           # offsets in int64: L·T·dv may pass 2^31
    sp = tl.program_id(1)
    b = l // heads
    h = l % heads
    n = tl.arange(0, N_PAD)
    n_ok = n < N
    e = tl.arange(0, DV_PAD)
    e_ok = e < dv
    mu = tl.full((N_PAD,), float("-inf"), tl.float32)
    z = tl.zeros((N_PAD,), tl.float32)
    acc = tl.zeros((N_PAD, DV_PAD), tl.float32)
    start = sp * split
    stop = tl.minimum(start + split, T)
    for t0 in range(start, stop, BLOCK):
        t = t0 + tl.arange(0, BLOCK)
        t_ok = t < stop
        s = _block_logits(q_ptr, lv_ptr, codes_ptr, scale_ptr, qb_ptr, coef_ptr, cstep_ptr, l, t, t_ok, N, d, r, W,
                          s_cl, s_ct, s_sl, s_st, s_fl, s_ft, s_gl, s_gt,
                          BITS, D_PAD, N_PAD, R_PAD, COEF_BITS, HAS_RANK)
        s = s * scaling
        if SOFTCAP:
            s = softcap * (2.0 * tl.sigmoid(2.0 * s / softcap) - 1.0)      # softcap · tanh(s / softcap)
        pos = first + t
        ok = t_ok[:, None] & n_ok[None, :]
        if HEAD_MASK:
            mrow = b * s_mb + (h * N + n[None, :]) * s_mh + pos[:, None]
        else:
            mrow = b * s_mb + pos[:, None] + n[None, :] * 0
        if MASK == 1:
            keep = tl.load(keep_ptr + mrow, mask=ok, other=0)
            s = tl.where(keep != 0, s, float("-inf"))
        if MASK == 2:
            s = s + tl.load(bias_ptr + mrow, mask=ok, other=0.0)
        s = tl.where(ok, s, float("-inf"))
        new = tl.maximum(mu, tl.max(s, axis=0))
        safe = tl.where(new == float("-inf"), 0.0, new)          # all masked so far: weights stay 0
        corr = tl.exp(mu - safe)
        p = tl.exp(s - safe[None, :])
        z = z * corr + tl.sum(p, axis=0)
        v = tl.load(v_ptr + l * s_vl + pos[:, None] * s_vt + e[None, :], mask=t_ok[:, None] & e_ok[None, :],
                    other=0.0).to(tl.float32)
        acc = acc * corr[:, None] + tl.dot(tl.trans(p), v, input_precision="ieee")
        mu = new
    base = l * n_splits * N + sp * N
    tl.store(mu_ptr + base + n, mu, mask=n_ok)
    tl.store(z_ptr + base + n, z, mask=n_ok)
    tl.store(acc_ptr + (base + n[:, None]) * dv + e[None, :], acc, mask=n_ok[:, None] & e_ok[None, :])


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _multiprocessors(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (2 for the CPU interpreter)."""
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device()) if device.type == "cuda" else 2


def _pad(n: int, least: int = 16) -> int:
    return max(least, triton.next_power_of_2(max(n, 1)))


def _inner_contiguous(t: Tensor) -> Tensor:
    return t if t.dim() == 0 or t.shape[-1] <= 1 or t.stride(-1) == 1 else t.contiguous()


class _Args:
    """Shared launch arguments: small tensors made contiguous, stored fields in place."""

    def __init__(self, x: FusedInputs):
        self.q = x.q_rot.float().contiguous()
        self.levels = x.levels.float().contiguous()
        self.codes = _inner_contiguous(x.packed)
        self.scale = x.scale
        self.qb = x.q_basis.float().contiguous()
        self.coef = _inner_contiguous(x.coeffs)
        if not self.qb.shape[-1]:                   # no rank-r term: never read, any valid pointer will do
            self.qb, self.coef = self.q, self.codes
        self.cstep = x.coef_scale if x.coef_scale is not None else self.scale
        L, N, d = self.q.shape
        self.L, self.N, self.d, self.r = L, N, d, x.rank
        self.T, self.W = self.codes.shape[1], self.codes.shape[2]
        self.strides = (self.codes.stride(0), self.codes.stride(1), self.scale.stride(0), self.scale.stride(1),
                        self.coef.stride(0), self.coef.stride(1), self.cstep.stride(0), self.cstep.stride(1))
        self.meta = {"BITS": x.bits, "D_PAD": _pad(d), "N_PAD": _pad(N), "R_PAD": _pad(self.r),
                     "COEF_BITS": x.coef_bits, "HAS_RANK": self.r > 0}

    def pointers(self) -> tuple:
        return (self.q, self.levels, self.codes, self.scale, self.qb, self.coef, self.cstep)


def fused_scores(x: FusedInputs) -> Tensor:
    """`α_t ⟪q_rot, ℓ[idx_t]⟫ + ⟪q_basis, ĉ_t⟫` for every query and coded token: float32 (L, N, T)."""
    a = _Args(x)
    out = torch.empty(a.L, a.N, a.T, dtype=torch.float32, device=a.q.device)
    if a.T and a.L and a.N:
        _scores_kernel[(a.L, triton.cdiv(a.T, BLOCK_T))](*a.pointers(), out, a.T, a.N, a.d, a.r, a.W, *a.strides,
                                                          BLOCK=BLOCK_T, **a.meta)
    return out


def decode_state(x: FusedInputs, values: Tensor, first: int, keep: Tensor | None, bias: Tensor | None,
                 heads: int, scaling: float, softcap: float | None) -> SoftmaxState:
    """As `cpu.decode_state`: the online-softmax state of one decode step over the coded tokens,
    max/denom (L, G), numer (L, G, dv), float32; values (L, T_all, dv), coded token t at position
    `first + t`; mask rows `keep` (B, Hm, T_all) bool or `bias` float32, Hm ∈ {1, heads·G}."""
    a = _Args(x)
    vals = _inner_contiguous(values)
    dv = vals.shape[-1]
    n_sm = _multiprocessors(vals.device)
    want = max(1, triton.cdiv(2 * n_sm, max(a.L, 1)))
    split = max(BLOCK_T, triton.cdiv(triton.cdiv(max(a.T, 1), want), BLOCK_T) * BLOCK_T)
    n_splits = max(1, triton.cdiv(a.T, split))
    mu = torch.empty(a.L, n_splits, a.N, dtype=torch.float32, device=vals.device)
    z = torch.empty_like(mu)
    acc = torch.empty(a.L, n_splits, a.N, dv, dtype=torch.float32, device=vals.device)
    rows = keep if keep is not None else bias
    mask_kind = 0 if rows is None else (1 if keep is not None else 2)
    keep_t = keep.contiguous().view(torch.uint8) if keep is not None else mu
    bias_t = bias.contiguous() if bias is not None else mu
    m = keep_t if keep is not None else bias_t
    s_mb, s_mh = (m.stride(0), m.stride(1)) if rows is not None else (0, 0)
    _decode_kernel[(a.L, n_splits)](*a.pointers(), vals, keep_t, bias_t, mu, z, acc,
                                    a.T, a.N, a.d, a.r, a.W, dv, int(first), int(heads), split, n_splits,
                                    float(scaling), float(softcap or 1.0),
                                    *a.strides, vals.stride(0), vals.stride(1), s_mb, s_mh,
                                    DV_PAD=_pad(dv), MASK=mask_kind,
                                    HEAD_MASK=rows is not None and rows.shape[1] > 1,
                                    SOFTCAP=softcap is not None, BLOCK=BLOCK_T, **a.meta)
    return reduce_softmax_blocks(SoftmaxState(mu, z, acc), dim=1)
