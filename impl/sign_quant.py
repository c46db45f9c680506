"""Sign (1-bit) quantization of a key and its geometry — SPEC §1.

Notation as in SPEC: for a key `k ∈ ℝ^d` (last tensor dimension), `l1 k = Σ|kᵢ|`,
`sqnorm k = Σkᵢ²`, `l2 k = √sqnorm k`; `sgn x = +1 if x ≥ 0 else −1` (zero ↦ +1);
`signVec k`, `cosSign k = l1 k / (√d · l2 k)`, `optScale k = l1 k / d`,
`quant1 k = optScale k • signVec k`.

Every function is batched over leading dimensions. Ratios and norms are computed on `k`
rescaled by an exact power of two per vector (max |kᵢ| ∈ [1/2, 1)), so results do not
overflow or underflow for any finite input and `cos_sign(2ʲ k) == cos_sign(k)` bit for bit.
Half-precision inputs are computed in float32 and cast back.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from impl.validation import check_tensor, compute_dtype, result_dtype


def _pow2_normalize(k: Tensor) -> tuple[Tensor, Tensor]:
    """Return `(k · 2^(−e), e)` with `e` (int, shape (..., 1)) chosen per vector so that the
    largest |coordinate| lies in [1/2, 1). Multiplying by a power of two is exact, so every
    scale-invariant quantity is unchanged; `e` is clamped so 2^(±e) stays finite."""
    amax = k.detach().abs().amax(dim=-1, keepdim=True)
    e = torch.frexp(amax).exponent
    lim = int(math.log2(torch.finfo(k.dtype).max)) - 2
    e = e.clamp(-lim, lim)
    return k * _pow2(-e, k.dtype), e


def _pow2(e: Tensor, dtype: torch.dtype) -> Tensor:
    """Exact powers of two 2^e as floats. (`torch.ldexp(k, e)` itself is not used on `k`:
    its autograd returns a zero gradient for integer exponents in torch 2.13.)"""
    return torch.ldexp(torch.ones(e.shape, dtype=dtype, device=e.device), e)


def _l1_sq(ks: Tensor) -> tuple[Tensor, Tensor]:
    return ks.abs().sum(dim=-1), (ks * ks).sum(dim=-1)


def _sign_pm1(k: Tensor) -> Tensor:
    one = torch.ones((), dtype=k.dtype, device=k.device)
    return torch.where(k >= 0, one, -one)


def sign_vec(k: Tensor) -> Tensor:
    """The 1-bit code `signVec k = (sgn k₀, …, sgn k_{d−1}) ∈ {±1}^d` (cos_sign_quant_formula).

    `sgn x = +1 if 0 ≤ x else −1`: zero (and −0.0) maps to +1, never to 0. Returns ±1 in the
    dtype of `k` (a non-float `k` gives the default float dtype).
    """
    kc = check_tensor(k, "k")
    return _sign_pm1(kc).to(result_dtype(k.dtype))


def cos_sign(k: Tensor) -> Tensor:
    """The 1-bit cosine `cosSign k = l1 k / (√d · l2 k)` (cos_sign_quant_formula, cos_sign_le_one).

    It equals `⟪k, signVec k⟫ / (l2 k · l2 (signVec k))`, the cosine between `k` and its code,
    and lies in (0, 1] for `k ≠ 0`. Total convention at the excluded point: `cos_sign(0) = 0`
    (Lean's division by zero). Shape: `k.shape[:-1]`. Differentiable (for learned rotations).
    """
    kc = check_tensor(k, "k")
    d = kc.shape[-1]
    ks, _ = _pow2_normalize(kc)
    l1, sq = _l1_sq(ks)
    nonzero = sq > 0
    # The safe denominator keeps autograd finite at k = 0 (torch.where would propagate NaN).
    l2 = torch.sqrt(torch.where(nonzero, sq, torch.ones_like(sq)))
    c = torch.where(nonzero, l1 / (math.sqrt(d) * l2), torch.zeros_like(l1))
    return c.to(result_dtype(k.dtype))


def opt_scale(k: Tensor) -> Tensor:
    """The least-squares scale `optScale k = l1 k / d` (opt_scale_minimizes).

    For every real α, `sqnorm (k − optScale k • signVec k) ≤ sqnorm (k − α • signVec k)`.
    Shape: `k.shape[:-1]`; `opt_scale(0) = 0`.
    """
    kc = check_tensor(k, "k")
    ks, e = _pow2_normalize(kc)
    scale = (ks.abs().mean(dim=-1, keepdim=True) * _pow2(e, ks.dtype)).squeeze(-1)
    return scale.to(result_dtype(k.dtype))


class OneBitCode(NamedTuple):
    """A 1-bit code: `signs` (bool, True ↔ +1, shape (..., d)) and `scale` (shape (...))."""

    signs: Tensor
    scale: Tensor


def quantize_1bit(k: Tensor) -> OneBitCode:
    """Quantize `k` to one bit per coordinate: `signs = (kᵢ ≥ 0)` (zero ↦ +1) and
    `scale = optScale k = l1 k / d`, so that `quant1 k = scale • signVec k`
    (residual_energy_formula, opt_scale_minimizes)."""
    kc = check_tensor(k, "k")
    return OneBitCode(signs=kc >= 0, scale=opt_scale(k))


def dequantize_1bit(signs: Tensor, scale: Tensor) -> Tensor:
    """Reconstruction `k̂ = scale • signVec` from a 1-bit code (SPEC §1, `quant1 k`).

    `signs` is bool (True ↔ +1) or a tensor of ±1; `scale` has shape `signs.shape[:-1]`
    (or broadcasts to it). Returns a tensor in `scale`'s dtype.
    """
    if not isinstance(signs, Tensor) or signs.dim() < 1:
        raise ValueError("signs must be a tensor of shape (..., d) (bool, or entries ±1)")
    sc = check_tensor(scale, "scale", min_dim=0)
    try:
        torch.broadcast_shapes(sc.shape, signs.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"scale must broadcast to signs.shape[:-1] = {tuple(signs.shape[:-1])}, got {tuple(sc.shape)}"
        ) from None
    if signs.dtype != torch.bool and not bool(((signs == 1) | (signs == -1)).all()):
        raise ValueError("signs must be bool or have entries in {+1, -1}")
    pm = _sign_pm1(signs.to(sc.dtype)) if signs.dtype != torch.bool else torch.where(signs, 1.0, -1.0).to(sc.dtype)
    return (sc.unsqueeze(-1) * pm).to(result_dtype(scale.dtype))


def residual_energy(k: Tensor, relative: bool = False) -> Tensor:
    """The 1-bit error `sqnorm (k − quant1 k)` (residual_energy_formula, centered_quant_strict_gain).

    With `relative=True`, returns `sqnorm (k − quant1 k) / sqnorm k`, which equals
    `1 − cosSign k² = sin²θ_k`; it is computed from the residual itself (not as 1 − cos²), so it
    stays accurate near the sign lattice. Total convention: at `k = 0` the relative error is
    `0/0 = 0`. The absolute error satisfies `≤ (1 − 1/d)·sqnorm k` (centered_quant_strict_gain).
    Shape: `k.shape[:-1]`.
    """
    kc = check_tensor(k, "k")
    ks, e = _pow2_normalize(kc)
    alpha = ks.abs().mean(dim=-1, keepdim=True)
    r = ks - alpha * _sign_pm1(ks)
    err = (r * r).sum(dim=-1)
    if relative:
        sq = (ks * ks).sum(dim=-1)
        out = torch.where(sq > 0, err / torch.where(sq > 0, sq, torch.ones_like(sq)), torch.zeros_like(err))
    else:
        p = _pow2(e.squeeze(-1), err.dtype)
        out = (err * p) * p  # two steps: 2^(2e) alone may overflow while the product does not
    return out.to(result_dtype(k.dtype))


def is_sign_lattice(k: Tensor, rtol: float | None = None) -> Tensor:
    """Whether `k` lies on the sign lattice `{±a}^d`, `a > 0` (cos_eq_one_iff_sign_lattice).

    Tests `max|kᵢ| − min|kᵢ| ≤ rtol · max|kᵢ|` and `max|kᵢ| > 0`. With `rtol = 0` this is the
    exact condition `∃ a > 0, ∀ i, |kᵢ| = a`, which holds iff `cosSign k = 1` (k ≠ 0). Default
    `rtol = 2·eps(dtype)`: the spread that one rounding per coordinate can give a lattice point.
    Returns a bool tensor of shape `k.shape[:-1]`.
    """
    kc = check_tensor(k, "k")
    if rtol is None:
        rtol = 2.0 * torch.finfo(compute_dtype(k.dtype)).eps
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and rtol >= 0):
        raise ValueError(f"rtol must be a finite number ≥ 0, got {rtol!r}")
    a = kc.abs()
    amax = a.amax(dim=-1)
    amin = a.amin(dim=-1)
    return (amax > 0) & (amax - amin <= rtol * amax)
