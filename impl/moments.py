"""Moment ratios, the generalised-Gaussian family and the isotropic floor — SPEC §2.

Population β of a real random variable K: `β = (E|K|)² / E[K²]`. Per vector (SPEC §1):
`betaVec k = cosSign k ²`, the same ratio computed on the coordinates of one key.
Generalised Gaussian of exponent `p > 0`: density ∝ `exp(−|x|^p)`, with
`ggBeta p = Γ(2/p)² / (Γ(1/p)·Γ(3/p))`. Isotropic floor: `β = 2/π`, cosine `√(2/π)`.

Closed forms (`gg_beta`, `gg_half_line_moment`, `sphere_expected_cos`,
`gg_exponent_for_beta`) are evaluated in float64 through `lgamma`, never through `Γ`
itself, so they neither overflow nor cancel catastrophically for small or large arguments.
They accept a Python number (returning ``float``) or a tensor (returning a tensor of the same
floating dtype, float64 for integer input).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from impl.sign_quant import _pow2_normalize, cos_sign
from impl.validation import check_positive_int, check_tensor, result_dtype

ISOTROPIC_FLOOR: float = 2.0 / math.pi
"""The isotropic floor β = 2/π (isotropic_floor_pos): ggBeta 2, the β of a Gaussian."""

ISOTROPIC_COS: float = math.sqrt(2.0 / math.pi)
"""The cosine floor √(2/π) ≈ 0.79788 (isotropic_floor_pos)."""


def _as_float64(x: float | Tensor, name: str) -> tuple[Tensor, bool, torch.dtype, torch.device | None]:
    """(x as float64 tensor, was_python_number, dtype for the result, device)."""
    if isinstance(x, Tensor):
        xc = check_tensor(x, name, min_dim=0)
        out_dtype = result_dtype(x.dtype) if x.is_floating_point() else torch.float64
        return xc.to(torch.float64), False, out_dtype, x.device
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{name} must be a real number or a tensor, got {type(x).__name__}")
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return torch.tensor(float(x), dtype=torch.float64), True, torch.float64, None


def _give_back(y: Tensor, scalar: bool, dtype: torch.dtype) -> float | Tensor:
    return float(y) if scalar else y.to(dtype)


def moment_ratio(samples: Tensor, dim: int = -1) -> Tensor:
    """Sample moment ratio `(mean|x|)² / mean(x²)` along `dim` — the plug-in estimate of the
    population β = (E|K|)² / E[K²] (iid_coord_moment_ratio_floor, gaussian_measure_moment_ratio).

    For iid coordinates it converges a.s. to β ≤ 1; on the coordinates of one key it equals
    `betaVec k = cosSign k²`. Total convention: an all-zero sample gives 0.
    """
    x = check_tensor(samples, "samples")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must index a dimension of samples (ndim {x.dim()}), got {dim}")
    xs, _ = _pow2_normalize(x.movedim(dim, -1))
    m1 = xs.abs().mean(dim=-1)
    m2 = (xs * xs).mean(dim=-1)
    pos = m2 > 0
    r = torch.where(pos, m1 * m1 / torch.where(pos, m2, torch.ones_like(m2)), torch.zeros_like(m1))
    return r.to(result_dtype(samples.dtype))


def beta_vec(k: Tensor) -> Tensor:
    """Per-vector β: `betaVec k = cosSign k² = (l1 k / d)² / (sqnorm k / d)` (SPEC §1).

    `beta_vec(0) = 0` (total convention of `cos_sign`). Shape `k.shape[:-1]`.
    """
    c = cos_sign(k)
    return c * c


def gg_beta(p: float | Tensor) -> float | Tensor:
    """`ggBeta p = Γ(2/p)² / (Γ(1/p)·Γ(3/p))`, the β of the generalised Gaussian ∝ exp(−|x|^p)
    (gaussian_moment_ratio_floor_eq): `ggBeta 1 = 1/2`, `ggBeta 2 = 2/π`, `ggBeta p ↑ 3/4`.

    Evaluated in float64 through `lgamma(z) = lgamma(1 + z) − log z`, which turns the ratio into
    `ggBeta p = (3/4) · exp(B)`, `B = 2·lgamma(1 + 2/p) − lgamma(1 + 1/p) − lgamma(1 + 3/p)`:
    for large p, B → 0 is computed without cancelling the large `log p` terms, and `B ≤ 0`
    (ggBeta increases strictly to 3/4) is enforced so the result never exceeds 3/4 by rounding.
    For small p the relative error is O(eps·lgamma(3/p)), the function's own conditioning.
    Needs p > 0.
    """
    pt, scalar, dtype, _ = _as_float64(p, "p")
    if not bool((pt > 0).all()):
        raise ValueError("p must be > 0 (the generalised-Gaussian exponent)")
    x = 1.0 / pt
    b = 2.0 * torch.lgamma(1.0 + 2.0 * x) - torch.lgamma(1.0 + x) - torch.lgamma(1.0 + 3.0 * x)
    y = 0.75 * torch.exp(torch.clamp(b, max=0.0))
    return _give_back(y, scalar, dtype)


def gg_half_line_moment(p: float | Tensor, q: float | Tensor) -> float | Tensor:
    """`∫₀^∞ x^q · exp(−x^p) dx = Γ((q+1)/p) / p` for `p > 0, q > −1` (gg_moment_identity).

    Hence the moments of the density ∝ exp(−|x|^p) are `E|X|^q = Γ((q+1)/p) / Γ(1/p)` and
    `ggBeta p = m₁² / (m₀·m₂)` with `m_q` this integral. Evaluated as `exp(lgamma((q+1)/p)) / p`.
    """
    pt, sp, dtp, _ = _as_float64(p, "p")
    qt, sq, dtq, _ = _as_float64(q, "q")
    if not bool((pt > 0).all()):
        raise ValueError("p must be > 0")
    if not bool((qt > -1).all()):
        raise ValueError("q must be > −1 (the integral diverges otherwise)")
    pt, qt = torch.broadcast_tensors(pt, qt)
    y = torch.exp(torch.lgamma((qt + 1.0) / pt)) / pt
    dtype = dtp if not sp else dtq
    return _give_back(y, sp and sq, dtype)


def sample_generalized_gaussian(
    p: float,
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Exact samples of the generalised Gaussian with density ∝ exp(−|x|^p) (gg_moment_identity).

    If `G ~ Gamma(1/p, 1)` then `|X| = G^{1/p}`; the sign is an independent fair coin.
    `G` is drawn as `G_{a+1}·U^{1/a}` (a = 1/p, U uniform), with `G_{a+1}` from Marsaglia–Tsang,
    so `|X| = G_{a+1}^{1/p} · U` exactly — no underflow even for large p. All randomness comes
    from `generator` (its device is used for sampling; the result is moved to `device`).
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator must be a torch.Generator (randomness is explicit)")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0:
        raise ValueError(f"p must be a finite number > 0, got {p!r}")
    shape = tuple(check_positive_int(s, "shape entries", minimum=0) for s in shape)
    gdev = generator.device
    a = 1.0 / p
    g1 = _standard_gamma_ge1(a + 1.0, shape, generator, gdev)
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=gdev)
    mag = torch.exp(torch.log(g1) / p) * u
    sign = torch.where(torch.rand(shape, generator=generator, device=gdev) < 0.5, -1.0, 1.0)
    out = (mag * sign.to(torch.float64)).to(dtype)
    return out.to(device) if device is not None else out


def _standard_gamma_ge1(alpha: float, shape: tuple[int, ...], generator: torch.Generator, device) -> Tensor:
    """Gamma(alpha, 1) samples, alpha ≥ 1, by Marsaglia–Tsang (2000) rejection, float64."""
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    n = math.prod(shape)
    out = torch.empty(n, dtype=torch.float64, device=device)
    filled = 0
    while filled < n:
        m = max(16, int((n - filled) * 1.1) + 16)  # acceptance rate ≥ 0.95 for alpha ≥ 1
        x = torch.randn(m, generator=generator, dtype=torch.float64, device=device)
        u = torch.rand(m, generator=generator, dtype=torch.float64, device=device)
        v = (1.0 + c * x) ** 3
        vpos = torch.where(v > 0, v, torch.ones_like(v))
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * vpos + d * torch.log(vpos))
        acc = (d * vpos)[ok][: n - filled]
        out[filled : filled + acc.numel()] = acc
        filled += acc.numel()
    return out.reshape(shape)


def gg_exponent_for_beta(beta: float | Tensor) -> float | Tensor:
    """Inverse of `gg_beta` on (0, 3/4): the exponent p with `ggBeta p = β`
    (gaussian_moment_ratio_floor_eq: `β = 1/2 ↦ p = 1`, `β = 2/π ↦ p = 2`).

    `ggBeta` is continuous and strictly increasing from 0 (p → 0) to 3/4 (p → ∞), so a
    bisection on log p in float64 (200 halvings of [e^{−9}, e^{60}], i.e. to the last ulp)
    finds it. Needs 0 < β < 3/4.
    """
    bt, scalar, dtype, _ = _as_float64(beta, "beta")
    if not bool(((bt > 0) & (bt < 0.75)).all()):
        raise ValueError("beta must lie in (0, 3/4), the range of ggBeta")
    lo = torch.full_like(bt, -9.0)
    hi = torch.full_like(bt, 60.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        below = gg_beta(torch.exp(mid)) < bt
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return _give_back(torch.exp(0.5 * (lo + hi)), scalar, dtype)


def sphere_expected_cos(d: int | Tensor) -> float | Tensor:
    """Exact mean 1-bit cosine of a uniform unit vector in ℝ^d (isotropic_floor_pos):
    `E cosSign u = √d · Γ(d/2) / (√π · Γ((d+1)/2))`.

    Equals 1 at d = 1, 2√2/π at d = 2, √3/2 at d = 3, and decreases to the cosine floor
    `√(2/π)` as d → ∞ (it equals `E cosSign g` for a standard Gaussian g ∈ ℝ^d, since cosSign is
    scale-invariant). Computed through `lgamma` in float64. Needs integer d ≥ 1.
    """
    if isinstance(d, Tensor):
        if d.is_floating_point() or d.is_complex() or not bool((d >= 1).all()):
            raise ValueError("d must be an integer tensor with entries ≥ 1")
        dt = d.to(torch.float64)
        scalar = False
    else:
        dt = torch.tensor(float(check_positive_int(d, "d")), dtype=torch.float64)
        scalar = True
    y = torch.sqrt(dt / math.pi) * torch.exp(torch.lgamma(dt / 2.0) - torch.lgamma((dt + 1.0) / 2.0))
    return float(y) if scalar else y
