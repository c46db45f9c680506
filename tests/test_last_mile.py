"""Properties of impl.last_mile against SPEC §4 (the last mile of β).

Inputs: s ∈ {±1}^d, u, and t with no sign flip, |t·uᵢ| < 1. Reference deficits are computed
exactly with SymPy rationals or in float64; float bounds, u₀ = eps/2 of the tested dtype:
* deficit_expansion is a product/quotient of sums of ≤ d terms: relative error ≤ (3d + 8)u₀;
* beta_deficit (residual route): the residual k − α s is known to |Δ| ≤ (d + 2)u₀·max|k| per
  coordinate, e := ‖Δ‖/‖k‖ ≤ √d(d + 2)u₀, so |Δf| ≤ 2√f·e + e² + (d + 2)u₀·f.
"""

from __future__ import annotations

import itertools
import math

import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import FLOATS, dims, eps, real_tensors, seeds

from impl.last_mile import (
    beta_deficit,
    deficit_bound,
    deficit_expansion,
    hessian_coefficient,
    perp_component,
)


def ref_deficit(k: torch.Tensor) -> torch.Tensor:
    """1 − cosSign k² from the definition, in float64 through the residual (no cancellation):
    sqnorm (k − (l1 k/d)·signVec k) / sqnorm k, rows rescaled by max|kᵢ| (independent of impl)."""
    x = k.detach().cpu().to(torch.float64)
    amax = x.abs().amax(dim=-1, keepdim=True)
    x = x / torch.where(amax > 0, amax, torch.ones_like(amax))
    r = x - x.abs().mean(dim=-1, keepdim=True) * torch.where(x >= 0, 1.0, -1.0).to(torch.float64)
    return (r * r).sum(dim=-1) / (x * x).sum(dim=-1)


def ref_perp_sqnorm(s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """sqnorm u⊥, u⊥ = u − (⟪u, s⟫/d)·s, from the definition in float64."""
    s64, u64 = s.to(torch.float64), u.to(torch.float64)
    up = u64 - (u64 * s64).sum(dim=-1, keepdim=True) / s.shape[-1] * s64
    return (up * up).sum(dim=-1)


def ref_bound(s: torch.Tensor, u: torch.Tensor, t: float) -> torch.Tensor:
    """4t²·sqnorm u⊥ / d from the definition in float64, as 4(t·‖u⊥‖)²/d (t² alone may underflow)."""
    return 4 * (t * ref_perp_sqnorm(s, u).sqrt()) ** 2 / s.shape[-1]


def expansion_tol(d: int, dtype: torch.dtype) -> float:
    return (3 * d + 8) * eps(dtype) / 2


def deficit_abs_tol(f: torch.Tensor, d: int, dtype: torch.dtype) -> torch.Tensor:
    e = math.sqrt(d) * (d + 2) * eps(dtype) / 2
    return 2 * f.clamp_min(0).sqrt() * e + e * e + (d + 2) * eps(dtype) / 2 * f


@st.composite
def last_mile_cases(draw, t_max: float = 0.999):
    """(s, u, t): s ∈ {±1}^d (rows), u over many magnitudes, t with |t·uᵢ| ≤ t_max."""
    dtype = draw(st.sampled_from(FLOATS))
    u = draw(
        real_tensors(
            dtype=dtype,
            max_d=32,
            batch_shapes=st.sampled_from([(), (4,)]),
            kinds=("gaussian", "heavy", "sparse", "ties", "onehot"),
            allow_zero_rows=False,
        )
    )
    d = u.shape[-1]
    g = torch.Generator().manual_seed(draw(seeds))
    s = (2 * torch.randint(0, 2, u.shape, generator=g) - 1).to(dtype)
    frac = draw(st.one_of(st.floats(-t_max, t_max), st.sampled_from([1e-8, -1e-4, 1e-2])))
    umax = float(u.to(torch.float64).abs().max())
    t = frac / umax
    return s, u, t, d


@pytest.mark.theorem("beta_local_quadratic_expansion")
@given(case=last_mile_cases())
def test_expansion_equals_the_deficit(case, device):
    """1 − cosSign (s + t•u)² = t²·sqnorm u⊥ / sqnorm (s + t•u) (no flips): deficit_expansion
    against the deficit computed from its definition in float64 (ref_deficit), and beta_deficit
    (impl's left side) against the same reference."""
    s, u, t, d = case
    exp_ = deficit_expansion(s.to(device), u.to(device), t).cpu().to(torch.float64)
    k = (s.to(torch.float64) + t * u.to(torch.float64)).to(s.dtype)
    f = ref_deficit(k)
    # k itself is rounded once in the tested dtype: a relative perturbation u₀ of k moves f by
    # ≤ 2√f·(√d u₀) + d u₀²; the expansion evaluated at the unrounded k differs by that much.
    tol = (
        deficit_abs_tol(f, d, torch.float64)
        + expansion_tol(d, s.dtype) * exp_
        + 2 * f.sqrt() * math.sqrt(d) * eps(s.dtype)
        + d * eps(s.dtype) ** 2
    )
    assert bool(((exp_ - f).abs() <= tol).all())
    got = beta_deficit(k.to(device)).cpu().to(torch.float64)
    assert bool(((got - f).abs() <= deficit_abs_tol(f, d, s.dtype) + deficit_abs_tol(f, d, torch.float64)).all())


@pytest.mark.theorem("beta_local_quadratic_expansion")
@pytest.mark.parametrize("d", [2, 3])
def test_expansion_identity_symbolic(d):
    """SymPy: for every sign pattern s ∈ {±1}^d and symbolic u, t (no flips, so
    |sᵢ + t uᵢ| = sᵢ(sᵢ + t uᵢ)), 1 − (Σ|kᵢ|)²/(d Σkᵢ²) − t²‖u⊥‖²/‖k‖² simplifies to 0; then
    deficit_expansion and beta_deficit match the exact rational value at rational points."""
    t = sp.symbols("t", real=True)
    us = sp.symbols(f"u0:{d}", real=True)
    for signs in itertools.product((1, -1), repeat=d):
        k = [si + t * ui for si, ui in zip(signs, us)]
        l1 = sum(si * ki for si, ki in zip(signs, k))
        sq = sum(ki**2 for ki in k)
        dot = sum(si * ui for si, ui in zip(signs, us))
        uperp = [ui - dot / d * si for si, ui in zip(signs, us)]
        lhs = 1 - l1**2 / (d * sq)
        rhs = t**2 * sum(x**2 for x in uperp) / sq
        assert sp.simplify(lhs - rhs) == 0
        for vals, tv in (
            ((sp.Rational(1, 3), sp.Rational(-2, 5), sp.Rational(7, 4))[:d], sp.Rational(1, 5)),
            ((sp.Rational(-3, 2), sp.Rational(1, 7), sp.Rational(0))[:d], sp.Rational(-1, 3)),
        ):
            sub = {**dict(zip(us, vals)), t: tv}
            exact = float(lhs.subs(sub))
            s_t = torch.tensor(signs, dtype=torch.float64)
            u_t = torch.tensor([float(x) for x in vals], dtype=torch.float64)
            got = float(deficit_expansion(s_t, u_t, float(tv)))
            assert abs(got - exact) <= expansion_tol(d, torch.float64) * abs(exact) + 4 * eps(torch.float64) * abs(
                exact
            )
            got_f = float(beta_deficit(s_t + float(tv) * u_t))
            assert abs(got_f - exact) <= float(deficit_abs_tol(torch.tensor(exact), d, torch.float64)) + 4 * d * eps(
                torch.float64
            )


@pytest.mark.theorem("beta_hessian_nonneg")
@given(case=last_mile_cases())
def test_hessian_coefficient_nonneg(case, device):
    """d·sqnorm u − ⟪s, u⟫² = d·sqnorm u⊥ ≥ 0, u⊥ ⟂ s; the deficit's curvature f(t)/t² → it/d²."""
    s, u, t, d = case
    h = hessian_coefficient(s.to(device), u.to(device)).cpu().to(torch.float64)
    assert bool((h >= 0).all())
    s64, u64 = s.to(torch.float64), u.to(torch.float64)
    direct = d * (u64 * u64).sum(-1) - (s64 * u64).sum(-1) ** 2
    # the direct form cancels: its absolute error is ≤ 2(d + 2)·eps·d·sqnorm u (in float64 here,
    # plus the tested dtype's for h itself)
    tol = 2 * (d + 2) * (eps(s.dtype) + eps(torch.float64)) * d * (u64 * u64).sum(-1)
    assert bool(((h - direct).abs() <= tol).all())
    up = perp_component(u.to(device), s.to(device)).cpu().to(torch.float64)
    assert bool(((up * s64).sum(-1).abs() <= (d + 2) * eps(s.dtype) * u64.abs().sum(-1)).all())
    assert bool(((d * (up * up).sum(-1) - h).abs() <= tol).all())


@pytest.mark.exercises("beta_hessian_nonneg")
@given(d=dims(1, 32), seed=seeds)
def test_hessian_is_the_curvature_of_the_deficit(d, seed):
    """f(t)/t² = sqnorm u⊥ / sqnorm (s + t u) → hessian_coefficient/d² as t → 0: with
    sqnorm (s + tu) = d(1 + ε), ε = (2t⟪s,u⟫ + t²‖u‖²)/d, the gap is ≤ |ε|/(1 − |ε|) relative."""
    g = torch.Generator().manual_seed(seed)
    s = (2 * torch.randint(0, 2, (d,), generator=g) - 1).to(torch.float64)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    h = float(hessian_coefficient(s, u))
    for t in (1e-2, 1e-3, 1e-4):
        f = float(beta_deficit(s + t * u))
        ep = abs(2 * t * float(s @ u) + t * t * float(u @ u)) / d
        num = float(deficit_abs_tol(torch.tensor(f), d, torch.float64)) / t**2
        assert abs(f / t**2 - h / d**2) <= h / d**2 * ep / (1 - ep) + num


@pytest.mark.theorem("beta_last_mile_quadratic_hardness")
@given(case=last_mile_cases(t_max=0.5))
def test_deficit_is_at_most_the_quadratic_bound(case, device):
    """|t·uᵢ| ≤ 1/2 ⇒ f t = 1 − cosSign (s + t•u)² ≤ 4t²·sqnorm u⊥ / d: deficit_bound against the
    bound from its definition in float64 (ref_bound), and the deficit from its definition
    (ref_deficit, at k rounded to the tested dtype) below it; impl's beta_deficit too."""
    s, u, t, d = case
    k = (s.to(torch.float64) + t * u.to(torch.float64)).to(s.dtype)
    bound = deficit_bound(s.to(device), u.to(device), t).cpu().to(torch.float64)
    t_d = float(torch.tensor(t, dtype=s.dtype))  # t as impl receives it, in the tested dtype
    ref_b = ref_bound(s, u, t_d)
    # t² may fall below the normal range of the dtype (|t| < 1e-19 in float32): each such rounding
    # is off by ≤ tiny·eps absolutely, scaled by 4·sqnorm u⊥/d afterwards, + the final rounding.
    sub = (4 * ref_perp_sqnorm(s, u) / d + 1) * torch.finfo(s.dtype).tiny * eps(s.dtype)
    assert bool(((bound - ref_b).abs() <= expansion_tol(d, s.dtype) * ref_b + sub).all())
    f = ref_deficit(k)
    tol = (
        deficit_abs_tol(f, d, torch.float64)
        + expansion_tol(d, s.dtype) * ref_b
        + 2 * f.sqrt() * math.sqrt(d) * eps(s.dtype)
        + d * eps(s.dtype) ** 2
        + sub
    )
    assert bool((f <= ref_b + tol).all())
    f_impl = beta_deficit(k.to(device)).cpu().to(torch.float64)
    assert bool((f_impl <= bound + tol + deficit_abs_tol(f, d, s.dtype) + expansion_tol(d, s.dtype) * ref_b).all())
    # and the bound is the expansion's numerator over its smallest denominator d/4
    assert bool((deficit_expansion(s, u, t).to(torch.float64) <= bound * (1 + expansion_tol(d, s.dtype))).all())


@pytest.mark.theorem("beta_last_mile_quadratic_hardness")
@given(d=dims(1, 32), seed=seeds, dtype=st.sampled_from(FLOATS))
def test_deficit_has_zero_derivative_at_the_lattice(d, seed, dtype):
    """f(0) = 0 and f′(0) = 0 (autograd through beta_deficit at k = s): the gradient signal
    vanishes on the sign lattice."""
    g = torch.Generator().manual_seed(seed)
    s = (2 * torch.randint(0, 2, (d,), generator=g) - 1).to(dtype)
    u = torch.randn(d, generator=g, dtype=dtype)
    t = torch.zeros((), dtype=dtype, requires_grad=True)
    f = beta_deficit(s + t * u)
    f.backward()
    assert float(f.detach()) == 0.0
    assert float(t.grad) == 0.0
    # at t ≠ 0 the gradient is nonzero when u⊥ ≠ 0: the derivative really is measured
    t2 = torch.tensor(0.25 / float(u.abs().max()), dtype=dtype, requires_grad=True)
    beta_deficit(s + t2 * u).backward()
    if float(hessian_coefficient(s, u)) > 1e-3 * d * float(u @ u):
        assert float(t2.grad) > 0


@given(k=real_tensors(max_d=32))
def test_beta_deficit_is_one_minus_cos_squared(k):
    """beta_deficit = 1 − cosSign² (with cosSign 0 = 0, so beta_deficit(0) = 1), against the float64
    cosine with the sign code (cosine_similarity) and the residual form (ref_deficit)."""
    d = k.shape[-1]
    f = beta_deficit(k).to(torch.float64)
    x = k.to(torch.float64)
    amax = x.abs().amax(dim=-1, keepdim=True)
    x = x / torch.where(amax > 0, amax, torch.ones_like(amax))
    c = F.cosine_similarity(x, torch.where(x >= 0, 1.0, -1.0).to(torch.float64), dim=-1)
    nz = (k != 0).any(dim=-1)
    tol = 2 * (d + 2) * (eps(k.dtype) + eps(torch.float64)) + math.sqrt(d) * (d + 2) * eps(k.dtype)
    assert bool(((f - (1 - c * c)).abs()[nz] <= tol).all())
    assert bool(((f - ref_deficit(k)).abs()[nz] <= tol).all())
    zero = (k == 0).all(dim=-1)
    assert bool((f[zero] == 1).all())


def test_bad_input_names_the_argument():
    s = torch.tensor([1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match=r"\bs\b"):
        perp_component(torch.ones(3), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\bu\b"):
        deficit_expansion(s, torch.ones(4), 0.1)
    with pytest.raises(ValueError, match=r"\bt\b"):
        deficit_bound(s, torch.ones(3), float("nan"))
    with pytest.raises(ValueError, match=r"\bu\b"):
        hessian_coefficient(s, torch.tensor([1.0, float("inf"), 0.0]))
    with pytest.raises(ValueError, match=r"\bk\b"):
        beta_deficit(torch.tensor(2.0))
