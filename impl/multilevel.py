"""Multi-level scalar codes — SPEC §7.

A scalar quantizer `Q` has levels `c₀ < … < c_{n−1}` (`n = 2^b`) and cells `[t_{i−1}, t_i)` whose
thresholds are the midpoints of neighbouring levels (nearest-neighbour condition; a value on a
threshold takes the upper level); it is
*Lloyd–Max* when, in addition, each level is the mean of its cell (centroid condition). A key's
code is the index of the nearest level for each coordinate of a normalised vector; the code vector
`v = (c_{idx₀}, …, c_{idx_{d−1}})` is then scaled by one number per key:

* `ls_scale y v = ⟪y, v⟫ / sqnorm v`, the least-squares scale (ls_scale_minimizes) — the b-bit
  analogue of `optScale` (for `b = 1` and `v = signVec y` it is `l1 y / d`);
* `unbiased_rescale y v = sqnorm y / ⟪y, v⟫`, the scale that makes `⟪q, α v⟫` an unbiased
  estimate of `⟪q, y⟫` in the isotropic model (mse_code_logit_shrinkage).

Level tables: `gaussian_lloyd_max(b)` for the standard Gaussian (lloyd_max_isotropic_floor),
`sphere_lloyd_max(b, d)` for one coordinate of a uniform point of the unit sphere in ℝ^d (the
codebook TurboQuant uses), and `lloyd_max_levels(x, n)` fitted to a finite sample
(lloyd_max_conditions). `uniform_quantize` is the uniform `b`-bit grid (uniform_quant_half_step).

Every table is computed in float64 and cached; functions on tensors are batched over leading
dimensions and follow their input's device.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from impl.validation import check_positive_int, check_tensor, result_dtype

MAX_BITS = 8
TABLE_MAX_BITS = 6   # the Lloyd tables of continuous densities (a few seconds at b = 6, python loops)


def check_bits(bits: object, name: str = "bits", maximum: int = MAX_BITS) -> int:
    """Raise unless `bits` is an integer in [1, maximum]; return it."""
    b = check_positive_int(bits, name)
    if b > maximum:
        raise ValueError(f"{name} must be an integer in [1, {maximum}], got {b}")
    return b


def check_levels(levels: Tensor, name: str = "levels") -> Tensor:
    """Raise unless `levels` holds finite, strictly increasing values along its last dimension
    (at least two); return it in its compute dtype."""
    lv = check_tensor(levels, name)
    if lv.shape[-1] < 2:
        raise ValueError(f"{name} must hold at least 2 levels along the last dimension, got shape {tuple(lv.shape)}")
    if not bool((lv[..., 1:] > lv[..., :-1]).all()):
        raise ValueError(f"{name} must be strictly increasing along the last dimension")
    return lv


def midpoints(levels: Tensor) -> Tensor:
    """Thresholds `tᵢ = (cᵢ + c_{i+1}) / 2` of the nearest-level quantizer, shape (..., n − 1)."""
    lv = check_levels(levels)
    return (lv[..., 1:] + lv[..., :-1]) / 2


def nearest_level(x: Tensor, levels: Tensor) -> Tensor:
    """Index of the nearest level for every entry of `x` (int64, shape of `x`).

    Ties go up: an entry equal to a threshold takes the upper level, so with the two levels
    `(−a, a)` the code of 0 is the `+a` level — SPEC's `sgn 0 = +1`. `levels` is one table
    (n,) or one per leading index of `x` (shape `x.shape[:k] + (n,)` for some k).
    """
    xc = check_tensor(x, "x", min_dim=0)
    t = midpoints(levels).to(xc.dtype)
    if t.dim() == 1:
        return torch.bucketize(xc, t, right=True)
    lead = t.shape[:-1]
    if xc.shape[: len(lead)] != lead:
        raise ValueError(f"levels must be one table or one per leading index of x: x {tuple(x.shape)}, "
                         f"levels {tuple(levels.shape)}")
    flat_t = t.reshape(-1, t.shape[-1])
    flat_x = xc.reshape(flat_t.shape[0], -1).contiguous()
    out = torch.stack([torch.bucketize(flat_x[i], flat_t[i], right=True) for i in range(flat_t.shape[0])])
    return out.reshape(xc.shape)


def ratio_or_zero(num: Tensor, den: Tensor, ok: Tensor) -> Tensor:
    """`num / den` where `ok`, 0 elsewhere (the total convention of the scales and cosines below),
    without ever dividing by an excluded denominator."""
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def rms_normalised(u: Tensor) -> Tensor:
    """`u / (‖u‖/√d)` along the last axis — coordinates of unit mean square, the scale the
    unit-variance Lloyd–Max levels are for; `u = 0` gives 0."""
    rms = torch.linalg.vector_norm(u, dim=-1, keepdim=True) / math.sqrt(u.shape[-1])
    return ratio_or_zero(u, rms, rms > 0)


def ls_scale(y: Tensor, v: Tensor) -> Tensor:
    """The least-squares scale `α = ⟪y, v⟫ / sqnorm v` of a code vector `v` (ls_scale_minimizes):
    for every real a, `sqnorm (y − α v) ≤ sqnorm (y − a v)`, and
    `sqnorm (y − α v) = sqnorm y − ⟪y, v⟫² / sqnorm v = sqnorm y · (1 − cos²(y, v))`.

    Total convention: `v = 0` gives 0. Shape `y.shape[:-1]`; computed in float64 when either
    input is float64, else float32."""
    yc, vc = check_tensor(y, "y"), check_tensor(v, "v")
    if yc.shape[-1] != vc.shape[-1]:
        raise ValueError(f"y and v must share the last dimension: got {tuple(y.shape)} and {tuple(v.shape)}")
    dt = torch.promote_types(yc.dtype, vc.dtype)
    yc, vc = yc.to(dt), vc.to(dt)
    num = (yc * vc).sum(-1)
    den = (vc * vc).sum(-1)
    return ratio_or_zero(num, den, den > 0)


def weighted_ls_scale(y: Tensor, v: Tensor, weight: Tensor) -> Tensor:
    """The least-squares scale in the inner product of a positive semi-definite `weight` W,
    `α = ⟪y, W v⟫ / ⟪v, W v⟫`: it minimises `(y − α v)ᵀ W (y − α v)`, which for `W = E[q qᵀ]` is the
    expected squared logit error `E ⟪q, y − α v⟫²` over queries q (ls_scale_minimizes applied to
    `Lᵀy` and `Lᵀv` for `W = L Lᵀ`). `W` (..., d, d) broadcasts over the leading dimensions of
    `y` (…, d) from the left after its own batch dimensions (e.g. W (H, d, d) with y (B, H, T, d)).
    Total convention: `⟪v, W v⟫ = 0` gives 0."""
    yc, vc = check_tensor(y, "y"), check_tensor(v, "v")
    wc = check_tensor(weight, "weight", min_dim=2)
    d = yc.shape[-1]
    if vc.shape[-1] != d or wc.shape[-2:] != (d, d):
        raise ValueError(f"y, v and weight must share d: got {tuple(y.shape)}, {tuple(v.shape)}, {tuple(weight.shape)}")
    dt = torch.promote_types(torch.promote_types(yc.dtype, vc.dtype), wc.dtype)
    yc, vc, wc = yc.to(dt), vc.to(dt), wc.to(dt)
    extra = yc.dim() - wc.dim()                        # W (H, d, d) vs y (B, H, T, d): insert the token axis
    wb = wc.reshape(*([1] * (extra - 1 if extra > 0 else 0)), *wc.shape[:-2], *([1] if extra > 0 else []), d, d)
    wv = (wb @ vc.unsqueeze(-1)).squeeze(-1)
    num = (yc * wv).sum(-1)
    den = (vc * wv).sum(-1)
    return ratio_or_zero(num, den, den > 0)


def unbiased_rescale(y: Tensor, v: Tensor) -> Tensor:
    """The scale `α = sqnorm y / ⟪y, v⟫` that removes the shrinkage of an MSE code
    (mse_code_logit_shrinkage).

    With the least-squares scale, `ŷ = ls_scale(y, v)·v` satisfies `⟪ŷ, y⟫ = cos²(y, v)·sqnorm y`,
    so for an isotropic query the regression slope of `⟪q, ŷ⟫` on `⟪q, y⟫` is `cos² ≈ 1 − D_b`
    (Lloyd–Max codes of Gaussian coordinates): logits shrink by `1 − D_b`. Dividing by that
    cosine², per key, gives `α v` with `⟪α v, y⟫ = sqnorm y`: unbiased, at the price of a larger
    error. Which one attention prefers is measured, not assumed. Total convention:
    `⟪y, v⟫ = 0` gives 0."""
    yc, vc = check_tensor(y, "y"), check_tensor(v, "v")
    if yc.shape[-1] != vc.shape[-1]:
        raise ValueError(f"y and v must share the last dimension: got {tuple(y.shape)} and {tuple(v.shape)}")
    dt = torch.promote_types(yc.dtype, vc.dtype)
    yc, vc = yc.to(dt), vc.to(dt)
    num = (yc * yc).sum(-1)
    den = (yc * vc).sum(-1)
    return ratio_or_zero(num, den, den != 0)


def level_cosine(y: Tensor, levels: Tensor) -> Tensor:
    """`cos(y, v)` for the code vector `v = ℓ[idx]` of `y` — the nearest level of each coordinate of
    `y / (‖y‖/√d)` in the table `levels` (2^b,). By ls_scale_minimizes the relative error of the
    least-squares code is `1 − cos²`, so this is the b-bit quality of `y` (for the levels ±1 it is
    `cosSign y`: the L1-max objective is its `b = 1` case). Differentiable in `y` with the code held
    fixed, which is the exact gradient wherever no coordinate sits on a threshold. `y = 0` gives 0.
    Shape `y.shape[:-1]`."""
    yc = check_tensor(y, "y")
    lv = check_levels(levels)
    if lv.dim() != 1:
        raise ValueError(f"levels must be one table (2^b,), got shape {tuple(levels.shape)}")
    with torch.no_grad():
        v = lv.to(yc.dtype)[nearest_level(rms_normalised(yc), lv)]
    num = (yc * v).sum(-1)
    ny = torch.linalg.vector_norm(yc, dim=-1)
    nv = torch.linalg.vector_norm(v, dim=-1)
    den = ny * nv
    return ratio_or_zero(num, den, den > 0)


# ------------------------------------------------------------------------------------ level tables


class LloydMax(NamedTuple):
    """A scalar quantizer: `levels` (n,), `thresholds` (n − 1,) = midpoints, and its mean squared
    error `distortion` on the distribution it was fitted to (float64)."""

    levels: Tensor
    thresholds: Tensor
    distortion: float


def _lloyd_on_cells(mass_and_moment, n: int, init: list[float], tol: float, max_iter: int) -> list[float]:
    """Lloyd's iteration on a distribution given by `mass_and_moment(a, b) -> (P, M1)` (cell mass
    and first moment): alternate midpoint thresholds and centroid levels until the levels move by
    less than `tol`."""
    c = list(init)
    for _ in range(max_iter):
        t = [-math.inf] + [(c[i] + c[i + 1]) / 2 for i in range(n - 1)] + [math.inf]
        new = []
        for i in range(n):
            p, m1 = mass_and_moment(t[i], t[i + 1])
            new.append(m1 / p if p > 0 else c[i])
        done = max(abs(a - b) for a, b in zip(new, c)) < tol
        c = new
        if done:
            break
    return c


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _normal_pdf(x: float) -> float:
    return 0.0 if math.isinf(x) else math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


@functools.cache
def _gaussian_table(bits: int) -> tuple[tuple[float, ...], float]:
    n = 2**bits

    def cell(a: float, b: float) -> tuple[float, float]:
        # P(a < X ≤ b) and E[X; a < X ≤ b] = φ(a) − φ(b) for X ~ 𝒩(0, 1)
        return _normal_cdf(b) - _normal_cdf(a), _normal_pdf(a) - _normal_pdf(b)

    init = [-2.0 + 4.0 * (i + 0.5) / n for i in range(n)]
    c = _lloyd_on_cells(cell, n, init, tol=1e-15, max_iter=100_000)
    # D = E X² − E (QX)² under the centroid condition (lloyd_max_conditions, in expectation)
    t = [-math.inf] + [(c[i] + c[i + 1]) / 2 for i in range(n - 1)] + [math.inf]
    second = sum(ci * ci * cell(t[i], t[i + 1])[0] for i, ci in enumerate(c))
    return tuple(c), 1.0 - second


def gaussian_lloyd_max(bits: int, dtype: torch.dtype = torch.float64) -> LloydMax:
    """The `2^b`-level Lloyd–Max quantizer of the standard Gaussian and its distortion
    `D_b = E(X − QX)² = 1 − E(QX)²` (lloyd_max_isotropic_floor): `b = 1` gives the levels
    `±√(2/π)` and `1 − D₁ = 2/π`, the isotropic floor; Max (1960) tabulates `D₂ ≈ 0.1175`,
    `D₃ ≈ 0.03454`, `D₄ ≈ 0.009497`.

    Computed by Lloyd's iteration with the exact Gaussian cell masses and first moments (erf),
    in float64, to a fixed point of both conditions."""
    b = check_bits(bits, maximum=TABLE_MAX_BITS)
    c, dist = _gaussian_table(b)
    lv = torch.tensor(c, dtype=torch.float64)
    return LloydMax(lv.to(dtype), ((lv[1:] + lv[:-1]) / 2).to(dtype), dist)


@functools.cache
def _sphere_table(bits: int, d: int) -> tuple[tuple[float, ...], float]:
    # one coordinate of a uniform point on S^{d−1}: density ∝ (1 − x²)^{(d−3)/2} on [−1, 1]
    grid = 1 << 18
    x = torch.linspace(-1.0, 1.0, grid + 1, dtype=torch.float64)
    w = torch.clamp(1 - x * x, min=0.0) ** ((d - 3) / 2)  # d ≥ 3: bounded on [−1, 1]
    w = w / w.sum()
    cw = torch.cumsum(w, 0)
    cxw = torch.cumsum(w * x, 0)

    def upto(t: float) -> tuple[float, float]:
        if t <= -1.0:
            return 0.0, 0.0
        if t >= 1.0:
            return float(cw[-1]), float(cxw[-1])
        i = int(torch.searchsorted(x, torch.tensor(t, dtype=torch.float64), right=True)) - 1
        i = max(0, min(i, grid))
        return float(cw[i]), float(cxw[i])

    def cell(a: float, b: float) -> tuple[float, float]:
        pa, ma = upto(a)
        pb, mb = upto(b)
        return pb - pa, mb - ma

    n = 2**bits
    # start at the mid-quantiles of the density: every starting level lies inside the support
    targets = torch.tensor([(i + 0.5) / n for i in range(n)], dtype=torch.float64)
    init = x[torch.searchsorted(cw, targets).clamp(max=grid)].tolist()
    c = _lloyd_on_cells(cell, n, init, tol=1e-13, max_iter=20_000)
    t = [-math.inf] + [(c[i] + c[i + 1]) / 2 for i in range(n - 1)] + [math.inf]
    second = sum(ci * ci * cell(t[i], t[i + 1])[0] for i, ci in enumerate(c))
    return tuple(c), 1.0 / d - second


def sphere_lloyd_max(bits: int, d: int, dtype: torch.dtype = torch.float64) -> LloydMax:
    """The `2^b`-level Lloyd–Max quantizer of one coordinate of a uniform point on the unit sphere
    of ℝ^d — density `∝ (1 − x²)^{(d−3)/2}` on [−1, 1], which tends to 𝒩(0, 1/d) — and its
    distortion per coordinate (TurboQuant's codebook, SPEC §7; `d · D` tends to the Gaussian `D_b`).

    Computed by Lloyd's iteration on a 2¹⁸-cell grid of the density, in float64."""
    b = check_bits(bits, maximum=TABLE_MAX_BITS)
    d = check_positive_int(d, "d", minimum=3)
    c, dist = _sphere_table(b, d)
    lv = torch.tensor(c, dtype=torch.float64)
    return LloydMax(lv.to(dtype), ((lv[1:] + lv[:-1]) / 2).to(dtype), dist)


def lloyd_max_levels(x: Tensor, n_levels: int, *, iters: int = 10_000) -> LloydMax:
    """Lloyd–Max levels fitted to a finite sample `x` (all entries pooled): Lloyd's iteration from
    the sample quantiles, alternating nearest-level cells (midpoint thresholds) and centroids
    (each level the mean of its cell), in float64, until the partition no longer changes — an
    exact fixed point — or `iters` rounds (ValueError then) (lloyd_max_conditions).

    At the fixed point both conditions hold on the sample, so the error is orthogonal to the code,
    `Σ (x − Qx)·Qx = 0`, and `Σ (x − Qx)² = Σ x² − Σ (Qx)²`. Levels whose cell empties keep their
    position; levels are returned strictly increasing (ValueError when the sample has fewer
    than `n_levels` distinct values)."""
    xc = check_tensor(x, "x", min_dim=1).reshape(-1).to(torch.float64)
    n = check_positive_int(n_levels, "n_levels", minimum=2)
    iters = check_positive_int(iters, "iters")
    if torch.unique(xc).numel() < n:
        raise ValueError(f"x must hold at least n_levels = {n} distinct values, got {torch.unique(xc).numel()}")
    xs, _ = torch.sort(xc)
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    c = torch.quantile(xs, q)
    c = torch.unique(c)
    if c.numel() < n:  # ties at the quantiles: spread from the distinct values instead
        u = torch.unique(xs)
        c = u[torch.linspace(0, u.numel() - 1, n).round().long()]
    idx = None
    for _ in range(iters):
        t = (c[1:] + c[:-1]) / 2
        new_idx = torch.bucketize(xs, t, right=True)
        if idx is not None and torch.equal(new_idx, idx):
            break                                  # the partition is stable: c are its centroids
        idx = new_idx
        sums = torch.zeros(n, dtype=torch.float64).scatter_add_(0, idx, xs)
        counts = torch.zeros(n, dtype=torch.float64).scatter_add_(0, idx, torch.ones_like(xs))
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
    else:
        raise ValueError(f"iters: Lloyd's iteration did not reach a fixed point in {iters} rounds")
    t = (c[1:] + c[:-1]) / 2
    qx = c[torch.bucketize(xs, t, right=True)]
    return LloydMax(c, t, float(((xs - qx) ** 2).mean()))


# ------------------------------------------------------------------------------------ uniform grid


class UniformCode(NamedTuple):
    """`codes` (uint8) on the grid `lo + step · code`, `code ∈ [0, 2^b − 1]`."""

    codes: Tensor
    lo: Tensor
    step: Tensor


def uniform_quantize(x: Tensor, lo: Tensor, step: Tensor, bits: int) -> Tensor:
    """Codes of `x` on the uniform grid `lo + step·i`, `i ∈ {0, …, 2^b − 1}`:
    `i = clamp(round((x − lo) / step), 0, 2^b − 1)` (round half to even, as torch.round), uint8.

    For `x ∈ [lo, lo + (2^b − 1) step]` the round trip errs by at most `step / 2`
    (uniform_quant_half_step); a zero `step` (a constant group) gives code 0, which decodes to
    `lo` exactly. `lo` and `step` broadcast against `x`."""
    b = check_bits(bits)
    xc = check_tensor(x, "x", min_dim=0)
    lo_c, st_c = check_tensor(lo, "lo", min_dim=0), check_tensor(step, "step", min_dim=0)
    if bool((st_c < 0).any()):
        raise ValueError("step must be ≥ 0")
    top = float(2**b - 1)
    pos = st_c > 0
    ratio = torch.where(pos, (xc - lo_c) / torch.where(pos, st_c, torch.ones_like(st_c)), torch.zeros_like(xc))
    return torch.round(ratio).clamp(0, top).to(torch.uint8)


def uniform_dequantize(codes: Tensor, lo: Tensor, step: Tensor) -> Tensor:
    """`lo + step · code` (uniform_quant_half_step), in the dtype of `step` widened to float32."""
    st_c = step.float() if step.dtype in (torch.float16, torch.bfloat16) else step
    return (lo.to(st_c.dtype) + st_c * codes.to(st_c.dtype)).to(result_dtype(st_c.dtype))
