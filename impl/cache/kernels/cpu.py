"""CPU kernels (numba) that score and attend straight from packed codes.

Both kernels walk the coded tokens of each kv head once, all query heads of the GQA group together
(four queries per table look-up), so every code is read once per decode step whatever the group
size:

* `fused_scores` — the fused logit `α_t Σ_j T_j(β_{t,j}) + ⟪q_basis, ĉ_t⟫` (fused_logit_identity),
  `T_j` the lookup tables of the rotated query (`lut.lookup_tables`, built here by `_tables_kernel`,
  one addition per entry) and `β_{t,j}` the group patterns read from the packed bits
  (`lut.GroupLayout`);
* `decode_state` — for one decode step, the same logits, then scaling, softcap and mask, folded
  block by block into running online-softmax sums `(μ, Z, N)` (online_softmax_merge): neither the
  keys in floating point nor the whole logit row ever exist.

The work is split over (kv head, chunk of tokens) tasks run in parallel (`prange`); the chunks'
softmax states are merged afterwards with `softmax.reduce_softmax_blocks`. Everything is computed
in float32. Thread count: torch's (`torch.get_num_threads()`), capped by numba's pool; one thread
for calls below `PARALLEL_WORK`. The query's rotation and projection (`transform_query`) are
compiled too, so a call makes no small torch products.

numba has no 16-bit float type, so stored half-precision fields are handed over as their bit
patterns: a float16 tensor as uint16, a bfloat16 tensor as int16 (`storage_array`); `_f32` widens
either (and float32) exactly.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload
from torch import Tensor

from impl.cache.kernels.fused import FusedInputs
from impl.cache.kernels.lut import group_layout
from impl.cache.kernels.softmax import SoftmaxState, reduce_softmax_blocks

BLOCK = 64
"""Tokens whose logits `decode_state` folds into the running softmax at once (a (G, BLOCK) buffer)."""

QUAD = 4
"""Queries accumulated together: one table look-up serves four adds (tables are padded to a
multiple of four queries with zero queries)."""

_POW2_112 = np.float32(2.0**112)


# -- reading stored values ------------------------------------------------------------------------
def _f32(x):  # pragma: no cover - replaced by the overload inside compiled code
    raise NotImplementedError


@overload(_f32)
def _f32_overload(x):
    """float32 value of one stored element: float32/float64 as is; uint16 = float16 bits; int16 =
    bfloat16 bits."""
    if isinstance(x, types.Float):
        return lambda x: np.float32(x)
    if x == types.uint16:
        def half(x):
            u = np.uint32(x)
            em = np.uint32(u & np.uint32(0x7FFF))                 # exponent and mantissa, sign dropped
            # the 15 bits moved up by 13 are a float32 whose value is |x|·2^-112 (subnormal halves
            # land on float32 subnormals with the same mantissa), so one exact multiplication by
            # 2^112 restores |x|; an all-ones exponent (±inf, NaN) gets float32's all-ones exponent
            finite = np.float32(np.uint32(em << np.uint32(13)).view(np.float32) * _POW2_112).view(np.uint32)
            special = np.uint32(np.uint32(0x7F800000) | np.uint32((em & np.uint32(0x3FF)) << np.uint32(13)))
            is_special = np.uint32(em >= np.uint32(0x7C00))                # 0 or 1: a branch-free select
            bits = np.uint32(finite + is_special * (special - finite))
            sign = np.uint32((u & np.uint32(0x8000)) << np.uint32(16))
            return np.uint32(bits | sign).view(np.float32)
        return half
    if x == types.int16:
        def bfloat(x):
            # bfloat16 is the top half of a float32
            return np.uint32(np.uint32(np.uint16(x)) << np.uint32(16)).view(np.float32)
        return bfloat
    return None


def _coefficients(coef, coef_scale, coef_bits, l, t, out):  # pragma: no cover - compiled overload
    raise NotImplementedError


@overload(_coefficients)
def _coefficients_overload(coef, coef_scale, coef_bits, l, t, out):
    """out[k] = ĉ_{t,k}: float values as stored, or packed `c`-bit integers `i` (c = 8: one byte each;
    c = 4: two per byte, low nibble first) decoded as `s·(i − (2^{c−1} − 1))` with the token's step s."""
    if coef.dtype == types.uint8:
        def integer(coef, coef_scale, coef_bits, l, t, out):
            step = _f32(coef_scale[l, t])
            half = (1 << (coef_bits - 1)) - 1
            per_byte = 8 // coef_bits
            top = (1 << coef_bits) - 1
            for k in range(out.shape[0]):
                byte = np.int64(coef[l, t, k // per_byte])
                i = (byte >> ((k % per_byte) * coef_bits)) & top
                out[k] = np.float32(i - half) * step
        return integer

    def floating(coef, coef_scale, coef_bits, l, t, out):
        for k in range(out.shape[0]):
            out[k] = _f32(coef[l, t, k])
    return floating


@njit(cache=True)
def _widen_kernel(src, dst):
    for i in range(src.shape[0]):
        dst[i] = _f32(src[i])


def widen(t: Tensor) -> Tensor:
    """A float32 copy of a stored float16/bfloat16/float32 CPU tensor, read as the kernels read it
    (`_f32` on `storage_array`); for tests of the bit-level conversion."""
    out = torch.empty(t.numel(), dtype=torch.float32)
    _widen_kernel(storage_array(t.reshape(-1)), out.numpy())
    return out.reshape(t.shape)


# -- lookup tables ---------------------------------------------------------------------------------
@njit(cache=True)
def _tables_kernel(q, levels, bits, tables):
    """tables[l, j, β, n] = T_j(β) = Σ_{i<g} q[l, n, g·j+i] · ℓ_l[(β >> i·b) mod 2^b] (`lut.lookup_tables`),
    with q = 0 for coordinates ≥ d and for padding queries n ≥ N.

    Built one coordinate at a time: once coordinates < i are in, entries β < 2^{i·b} hold their
    partial sums; the entries with top digit δ = β >> i·b ≥ 1 are then `T(β mod 2^{i·b}) + q_i ℓ[δ]`
    (written first, as they read the low entries) and the low entries (δ = 0) add `q_i ℓ[0]` last."""
    L, N, d = q.shape
    n_groups, Np = tables.shape[1], tables.shape[3]
    g = 8 // bits
    n_levels = 1 << bits
    for l in range(L):          # serial: (L·groups·2^{g·b}·N_pad) additions, a few microseconds
        for j in range(n_groups):
            for n in range(Np):
                size = 1
                tables[l, j, 0, n] = 0.0
                for i in range(g):
                    c = g * j + i
                    qi = q[l, n, c] if (c < d and n < N) else np.float32(0.0)
                    for delta in range(1, n_levels):
                        w = qi * levels[l, delta]
                        for low in range(size):
                            tables[l, j, delta * size + low, n] = tables[l, j, low, n] + w
                    w = qi * levels[l, 0]
                    for low in range(size):
                        tables[l, j, low, n] += w
                    size *= n_levels


# -- the fused logits of a run of tokens ----------------------------------------------------------
@njit(cache=True, inline="always")
def _quad_sums(codes, l, t, tables, n0, gbyte, gshift, gtwo, pmask, aligned):
    """Σ_j T_j^{(n)}(β_{t,j}) for the four queries n0 … n0 + 3 of kv head l and token t.

    tables: (L, groups, 2^{g·b}, N_pad) float32; codes: (L, T, W) uint8. `aligned` is a literal at
    every call, so each caller compiles one of the two loops."""
    s0 = s1 = s2 = s3 = np.float32(0.0)
    n_groups = tables.shape[1]
    if aligned:
        # b ∈ {1, 2, 4}: g·b = 8, so group j is byte j of the code
        for j in range(n_groups):
            beta = codes[l, t, j]
            s0 += tables[l, j, beta, n0]
            s1 += tables[l, j, beta, n0 + 1]
            s2 += tables[l, j, beta, n0 + 2]
            s3 += tables[l, j, beta, n0 + 3]
    else:
        # b = 3 (groups of 6 bits, starting at stream bit 6j). Four groups are 24 bits = three whole
        # bytes: bytes 3m, 3m+1, 3m+2 joined little-endian hold groups 4m … 4m+3 at bits 0, 6, 12,
        # 18 (they always exist: a last odd coordinate's padding still ends inside byte 3m+2).
        full = n_groups // 4
        for m in range(full):
            w = (np.uint32(codes[l, t, 3 * m]) | (np.uint32(codes[l, t, 3 * m + 1]) << np.uint32(8))
                 | (np.uint32(codes[l, t, 3 * m + 2]) << np.uint32(16)))
            for i in range(4):
                j = 4 * m + i
                beta = (w >> np.uint32(6 * i)) & pmask
                s0 += tables[l, j, beta, n0]
                s1 += tables[l, j, beta, n0 + 1]
                s2 += tables[l, j, beta, n0 + 2]
                s3 += tables[l, j, beta, n0 + 3]
        # the last n_groups mod 4 groups: group j starts at bit gshift[j] of byte gbyte[j] and runs
        # into the next byte when gshift[j] > 2 (gtwo[j]; never past the code's last byte): join the
        # two bytes into a 16-bit word, shift, keep 6 bits
        for j in range(4 * full, n_groups):
            w = np.uint32(codes[l, t, gbyte[j]])
            if gtwo[j]:
                w |= np.uint32(codes[l, t, gbyte[j] + 1]) << np.uint32(8)
            beta = (w >> gshift[j]) & pmask
            s0 += tables[l, j, beta, n0]
            s1 += tables[l, j, beta, n0 + 1]
            s2 += tables[l, j, beta, n0 + 2]
            s3 += tables[l, j, beta, n0 + 3]
    return s0, s1, s2, s3


@njit(cache=True, inline="always")
def _rank_terms(qb, l, n0, cbuf):
    """Σ_k q_basis[l, n, k] ĉ_k for the four queries n = n0 … n0 + 3 (four independent sums)."""
    r0 = r1 = r2 = r3 = np.float32(0.0)
    for k in range(qb.shape[2]):
        c = cbuf[k]
        r0 += qb[l, n0, k] * c
        r1 += qb[l, n0 + 1, k] * c
        r2 += qb[l, n0 + 2, k] * c
        r3 += qb[l, n0 + 3, k] * c
    return r0, r1, r2, r3


@njit(cache=True, inline="always")
def _quad_logits(codes, tables, gbyte, gshift, gtwo, pmask, scale, qb, coef, coef_scale, coef_bits,
                 l, t0, t1, n0, cbuf, dst, col0, aligned, ranked):
    """dst[n0 + i, col0 + t − t0] = α_t Σ_j T_j^{(n0+i)}(β_{t,j}) + Σ_k q_basis[n0 + i, k] ĉ_{t,k} for
    i < 4 and tokens t ∈ [t0, t1) of kv head l (fused_logit_identity). `aligned` and `ranked` are
    literals at every call (b ∈ {1, 2, 4}; rank r > 0)."""
    for t in range(t0, t1):
        c = col0 + t - t0
        a = _f32(scale[l, t])
        s0, s1, s2, s3 = _quad_sums(codes, l, t, tables, n0, gbyte, gshift, gtwo, pmask, aligned)
        if ranked:
            _coefficients(coef, coef_scale, coef_bits, l, t, cbuf)
            r0, r1, r2, r3 = _rank_terms(qb, l, n0, cbuf)
            s0, s1, s2, s3 = a * s0 + r0, a * s1 + r1, a * s2 + r2, a * s3 + r3
        else:
            s0, s1, s2, s3 = a * s0, a * s1, a * s2, a * s3
        dst[n0, c] = s0
        dst[n0 + 1, c] = s1
        dst[n0 + 2, c] = s2
        dst[n0 + 3, c] = s3


@njit(cache=True)
def _block_logits(codes, tables, gbyte, gshift, gtwo, pmask, aligned, scale, qb, coef, coef_scale, coef_bits,
                  l, t0, t1, cbuf, dst, col0):
    """`_quad_logits` for every quad of (padded) queries, each specialised for the code width and rank
    (qb is padded with zero rows like the tables, so all N_pad rows of dst are written)."""
    ranked = qb.shape[2] > 0
    for n0 in range(0, tables.shape[3], QUAD):
        if aligned and ranked:
            _quad_logits(codes, tables, gbyte, gshift, gtwo, pmask, scale, qb, coef, coef_scale, coef_bits,
                         l, t0, t1, n0, cbuf, dst, col0, True, True)
        elif aligned:
            _quad_logits(codes, tables, gbyte, gshift, gtwo, pmask, scale, qb, coef, coef_scale, coef_bits,
                         l, t0, t1, n0, cbuf, dst, col0, True, False)
        elif ranked:
            _quad_logits(codes, tables, gbyte, gshift, gtwo, pmask, scale, qb, coef, coef_scale, coef_bits,
                         l, t0, t1, n0, cbuf, dst, col0, False, True)
        else:
            _quad_logits(codes, tables, gbyte, gshift, gtwo, pmask, scale, qb, coef, coef_scale, coef_bits,
                         l, t0, t1, n0, cbuf, dst, col0, False, False)


@njit(parallel=True, cache=True)
def _scores_kernel(codes, tables, gbyte, gshift, gtwo, pmask, aligned, scale, qb, coef, coef_scale, coef_bits,
                   chunk, out):
    """out (L, N_pad, T): the fused logits of every (padded) query and token; tasks (l, chunk)."""
    L, T = codes.shape[0], codes.shape[1]
    n_chunks = (T + chunk - 1) // chunk
    for task in prange(L * n_chunks):
        l = task // n_chunks
        c0 = (task - l * n_chunks) * chunk
        cbuf = np.empty(max(qb.shape[2], 1), np.float32)
        _block_logits(codes, tables, gbyte, gshift, gtwo, pmask, aligned, scale, qb, coef, coef_scale, coef_bits,
                      l, c0, min(c0 + chunk, T), cbuf, out[l], c0)


@njit(parallel=True, cache=True)
def _decode_kernel(codes, tables, gbyte, gshift, gtwo, pmask, aligned, scale, qb, coef, coef_scale, coef_bits,
                   values, first, keep, bias, heads, scaling, softcap, chunk, mu_out, z_out, n_out):
    """Online-softmax state of each (kv head l, chunk) over the coded tokens: mu_out, z_out (L, C, G),
    n_out (L, C, G, dv). Coded token t is position `first + t` of `values` (L, T_all, dv) and of the
    mask rows `keep` (B, Hm, T_all) bool / `bias` (B, Hm, T_all) float32 (empty arrays: no mask;
    Hm = 1 or heads·G)."""
    L, T = codes.shape[0], codes.shape[1]
    G = mu_out.shape[2]
    dv = values.shape[2]
    n_chunks = mu_out.shape[1]
    has_keep = keep.shape[0] > 0
    has_bias = bias.shape[0] > 0
    per_head_mask = (keep.shape[1] if has_keep else bias.shape[1]) > 1
    for task in prange(L * n_chunks):
        l = task // n_chunks
        ci = task - l * n_chunks
        b = l // heads
        h = l - b * heads
        c0 = ci * chunk
        c1 = min(c0 + chunk, T)
        x = np.empty((tables.shape[3], BLOCK), np.float32)
        cbuf = np.empty(max(qb.shape[2], 1), np.float32)
        vrow = np.empty(dv, np.float32)
        mu = np.full(G, -np.inf, dtype=np.float32)
        z = np.zeros(G, dtype=np.float32)
        acc = np.zeros((G, dv), dtype=np.float32)
        for t0 in range(c0, c1, BLOCK):
            t1 = min(t0 + BLOCK, c1)
            nt = t1 - t0
            _block_logits(codes, tables, gbyte, gshift, gtwo, pmask, aligned, scale, qb, coef, coef_scale,
                          coef_bits, l, t0, t1, cbuf, x, 0)
            for n in range(G):
                row = h * G + n if per_head_mask else 0
                # the block's logits: scaling, softcap, then the mask (as transformers' attention)
                top = np.float32(-np.inf)
                for c in range(nt):
                    s = x[n, c] * scaling
                    if softcap > 0:
                        s = softcap * math.tanh(s / softcap)
                    pos = first + t0 + c
                    if has_keep and not keep[b, row, pos]:
                        s = np.float32(-np.inf)
                    if has_bias:
                        s += bias[b, row, pos]
                    x[n, c] = s
                    top = max(top, s)
                new = max(mu[n], top)
                if new == -np.inf:            # every token so far masked: nothing to add
                    for c in range(nt):
                        x[n, c] = 0.0
                    continue
                if new > mu[n]:               # merge rule: rescale the running sums to the new max
                    corr = math.exp(mu[n] - new)          # 0 while mu[n] = −inf
                    z[n] *= corr
                    for k in range(dv):
                        acc[n, k] *= corr
                    mu[n] = new
                for c in range(nt):
                    p = math.exp(x[n, c] - new)
                    x[n, c] = p
                    z[n] += p
            for c in range(nt):
                pos = first + t0 + c
                for k in range(dv):
                    vrow[k] = _f32(values[l, pos, k])
                for n in range(G):
                    p = x[n, c]
                    if p != 0.0:
                        for k in range(dv):
                            acc[n, k] += p * vrow[k]
        for n in range(G):
            mu_out[l, ci, n] = mu[n]
            z_out[l, ci, n] = z[n]
            for k in range(dv):
                n_out[l, ci, n, k] = acc[n, k]


# -- wrappers ------------------------------------------------------------------------------------
def storage_array(t: Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor for the kernels (no copy, strides kept): float16 as its uint16
    bit patterns, bfloat16 as int16 bit patterns, other dtypes as they are."""
    t = t.detach()
    if t.dtype == torch.float16:
        return t.view(torch.int16).numpy().view(np.uint16)
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    return t.numpy()


PARALLEL_WORK = 1 << 20
"""Below about this many table look-ups and value products (≈ 1 ms on one core) a call runs on one
thread: waking a thread pool costs more than it saves, and on a loaded machine a parallel region
waits for a descheduled worker (measured here: ≈ 8 ms per region at load 4 on 2 cores)."""


def _threads(work: int) -> int:
    """Threads for a call of `work` units: torch's count (capped by numba's pool), or 1 for small work."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)) if work >= PARALLEL_WORK else 1
    numba.set_num_threads(n)
    return n


@njit(cache=True)
def _query_kernel(q, rotation, sigma, basis, q_rot, q_basis):
    """q_rot[b, h, n] = (R_h q[b, h, n]) ⊙ σ_h and q_basis[b, h, n] = B_hᵀ R_h q[b, h, n] (float32, serial)."""
    B, H, N, d = q.shape
    r = basis.shape[2]
    rq = np.empty(d, dtype=np.float32)
    for b in range(B):
        for h in range(H):
            for n in range(N):
                for i in range(d):
                    s = np.float32(0.0)
                    for j in range(d):
                        s += rotation[h, i, j] * q[b, h, n, j]
                    rq[i] = s
                    q_rot[b, h, n, i] = s * sigma[h, i]
                for k in range(r):
                    s = np.float32(0.0)
                    for i in range(d):
                        s += basis[h, i, k] * rq[i]
                    q_basis[b, h, n, k] = s


def transform_query(codec, qf: Tensor) -> tuple[Tensor, Tensor | None]:
    """`fused.transform_query` compiled (float32 queries (B, H, N, d)): `((R q) ⊙ σ, Bᵀ R q)` without
    torch's small batched products, each of which is a thread-pool round trip."""
    B, H, N, d = qf.shape
    q_rot = torch.empty(B, H, N, d, dtype=torch.float32)
    q_basis = torch.empty(B, H, N, codec.rank, dtype=torch.float32)
    _query_kernel(storage_array(qf.float()), storage_array(codec.rotation.float()),
                  storage_array(codec.channel_scale.float()), storage_array(codec.basis.float()),
                  q_rot.numpy(), q_basis.numpy())
    return q_rot, (q_basis if codec.rank else None)


def _chunk(T: int, L: int, threads: int) -> int:
    """Tokens per task: enough tasks for every thread (four per thread), at least one block."""
    want = max(1, -(-4 * threads // max(L, 1)))
    per = -(-T // want)
    return max(BLOCK, -(-per // BLOCK) * BLOCK)


_NO_STEP = np.zeros((0, 0), dtype=np.float32)


def build_tables(q: Tensor, levels: Tensor, bits: int, d: int) -> Tensor:
    """The compiled table builder on its own: `lut.lookup_tables`' tables for q (L, N, d) and levels
    (L, 2^b), as (L, ⌈d/g⌉, 2^{g·b}, N_pad) float32 (N padded to a multiple of four with zero queries)."""
    lay = group_layout(d, bits)
    L, N, _ = q.shape
    out = np.empty((L, lay.groups, 2**lay.pattern_bits, -(-N // QUAD) * QUAD), dtype=np.float32)
    _tables_kernel(storage_array(q.float()), storage_array(levels.float()), lay.bits, out)
    return torch.from_numpy(out)


class _Prepared:
    """Kernel arguments shared by both kernels: tables padded to a multiple of four queries, the
    group layout, and the stored fields as numpy views."""

    def __init__(self, x: FusedInputs):
        lay = group_layout(x.d, x.bits)
        self.tables = build_tables(x.q_rot, x.levels, x.bits, x.d).numpy()
        self.gbyte = np.asarray(lay.byte, dtype=np.int64)
        self.gshift = np.asarray(lay.shift, dtype=np.uint32)
        self.gtwo = np.asarray(lay.two_bytes, dtype=np.bool_)
        self.pmask = np.uint32(2**lay.pattern_bits - 1)
        self.aligned = lay.pattern_bits == 8
        self.codes = storage_array(x.packed)
        self.scale = storage_array(x.scale)
        qb = x.q_basis.float()
        n_pad = self.tables.shape[3]
        if n_pad != qb.shape[1]:
            qb = torch.nn.functional.pad(qb, (0, 0, 0, n_pad - qb.shape[1]))           # zero padding queries
        self.qb = storage_array(qb)
        self.coef = storage_array(x.coeffs)
        self.coef_scale = storage_array(x.coef_scale) if x.coef_scale is not None else _NO_STEP
        self.coef_bits = x.coef_bits

    def args(self) -> tuple:
        return (self.codes, self.tables, self.gbyte, self.gshift, self.gtwo, self.pmask, self.aligned,
                self.scale, self.qb, self.coef, self.coef_scale, self.coef_bits)


def fused_scores(x: FusedInputs) -> Tensor:
    """`α_t Σ_j T_j(β_{t,j}) + ⟪q_basis, ĉ_t⟫` for every query and coded token: float32 (L, N, T)."""
    L, N, _ = x.q_rot.shape
    T = x.packed.shape[1]
    if T == 0 or L == 0 or N == 0:
        return torch.empty(L, N, T, dtype=torch.float32)
    prep = _Prepared(x)
    n_pad = prep.tables.shape[3]
    out = torch.empty(L, n_pad, T, dtype=torch.float32)
    work = L * T * prep.tables.shape[1] * (n_pad // QUAD)
    _scores_kernel(*prep.args(), _chunk(T, L, _threads(work)), out.numpy())
    return out if n_pad == N else out[:, :N]


def decode_state(x: FusedInputs, values: Tensor, first: int, keep: Tensor | None, bias: Tensor | None,
                 heads: int, scaling: float, softcap: float | None) -> SoftmaxState:
    """The online-softmax state (μ, Z, N) of one decode step over the coded tokens, per kv head l
    (L = B·heads) and query head n < G = N: max/denom (L, G), numer (L, G, dv), float32.

    `values` (L, T_all, dv) holds every token's value; coded token t is position `first + t` of it
    and of the mask rows: `keep` (B, Hm, T_all) bool or `bias` (B, Hm, T_all) float32 (−inf =
    masked), Hm ∈ {1, heads·G}."""
    L, G, _ = x.q_rot.shape
    T = x.packed.shape[1]
    dv = values.shape[-1]
    prep = _Prepared(x)
    work = L * T * (prep.tables.shape[1] * (prep.tables.shape[3] // QUAD) + G * dv // 8)
    chunk = _chunk(T, L, _threads(work))
    C = max(1, -(-T // chunk))
    mu = torch.empty(L, C, G, dtype=torch.float32)
    z = torch.empty(L, C, G, dtype=torch.float32)
    numer = torch.empty(L, C, G, dv, dtype=torch.float32)
    empty_keep = np.zeros((0, 0, 0), dtype=np.bool_)
    empty_bias = np.zeros((0, 0, 0), dtype=np.float32)
    vals = values if values.dtype in (torch.float32, torch.float16, torch.bfloat16) else values.float()
    _decode_kernel(*prep.args(), storage_array(vals), int(first),
                   keep.numpy() if keep is not None else empty_keep,
                   bias.numpy() if bias is not None else empty_bias,
                   int(heads), np.float32(scaling), np.float32(softcap or 0.0), chunk,
                   mu.numpy(), z.numpy(), numer.numpy())
    return reduce_softmax_blocks(SoftmaxState(mu, z, numer), dim=1)
