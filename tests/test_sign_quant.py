"""Properties of impl.sign_quant against SPEC §1.

References are computed independently in float64 from the same (exactly representable) inputs:
the cosine with torch.nn.functional.cosine_similarity, the residual with numpy. Error bounds,
u = eps/2 the unit roundoff of the tested dtype:
* a sum of d nonnegative terms has relative error ≤ (d−1)u, so l1, sqnorm ≤ d·u, sqrt halves
  it, and the final divisions/√d add ≤ 3u: |Δ cos_sign| ≤ (1.5d + 3)u ≤ (d + 2)·eps;
* the residual r = k − α·s has |Δrᵢ| ≤ (d + 2)u·max|k| (α carries the sum error), so
  |Δ sqnorm r| ≤ 2‖r‖‖Δr‖ + ‖Δr‖² ≤ (√d(d+2) + d)·eps·sqnorm k.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import FLOATS, dims, eps, real_tensors

from impl.sign_quant import (
    cos_sign,
    dequantize_1bit,
    is_sign_lattice,
    opt_scale,
    quantize_1bit,
    residual_energy,
    sign_vec,
)

keys = real_tensors()
nonzero_keys = real_tensors(allow_zero_rows=False)


def _np(k: torch.Tensor) -> np.ndarray:
    return k.detach().cpu().to(torch.float64).numpy()


def ref_cos(k: torch.Tensor) -> torch.Tensor:
    """cos∠(k, signVec k) via cosine_similarity, float64, rows rescaled by max|kᵢ| (cosine is
    scale-invariant; the rescaling keeps cosine_similarity's norm clamp out of play)."""
    k64 = k.detach().cpu().to(torch.float64)
    amax = k64.abs().amax(dim=-1, keepdim=True)
    k64 = k64 / torch.where(amax > 0, amax, torch.ones_like(amax))
    s = torch.where(k64 >= 0, 1.0, -1.0).to(torch.float64)
    return F.cosine_similarity(k64, s, dim=-1)


def ref_residual(k: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(sqnorm (k − (l1/d)·sgn k), sqnorm k) in float64 numpy."""
    x = _np(k)
    s = np.where(x >= 0, 1.0, -1.0)
    a = np.abs(x).mean(axis=-1, keepdims=True)
    return ((x - a * s) ** 2).sum(axis=-1), (x**2).sum(axis=-1)


def cos_tol(d: int, dtype: torch.dtype) -> float:
    # (d + 2)·eps for the tested dtype, plus the same for the float64 reference.
    return (d + 2) * (eps(dtype) + eps(torch.float64))


def residual_tol(d: int, dtype: torch.dtype) -> float:
    return (math.sqrt(d) * (d + 2) + d) * eps(dtype) + 4 * d * eps(torch.float64)


@pytest.mark.exercises("cos_sign_quant_formula")
@given(k=keys)
def test_sign_vec_is_a_sign_code_with_zero_to_plus_one(k, device):
    """signVec k ∈ {±1}^d, sgn 0 = +1 (also −0.0), and sgn(kᵢ)·kᵢ = |kᵢ| so ⟪k, signVec k⟫ = l1 k."""
    s = sign_vec(k.to(device)).cpu()
    assert s.dtype == k.dtype and s.shape == k.shape
    assert bool(((s == 1) | (s == -1)).all())
    assert bool((s[k == 0] == 1).all())
    assert torch.equal(s * k, k.abs())  # exact: multiplying by ±1 does not round


@pytest.mark.theorem("cos_sign_quant_formula")
@given(k=keys)
def test_cos_sign_equals_cosine_with_its_code(k, device):
    """cosSign k = ⟪k, signVec k⟫ / (l2 k · l2 signVec k) = l1 / (√d · l2), and cos_sign(0) = 0."""
    c = cos_sign(k.to(device)).cpu()
    assert c.dtype == k.dtype and c.shape == k.shape[:-1]
    ref = ref_cos(k)
    zero = (k == 0).all(dim=-1)
    assert bool((c[zero] == 0).all())
    err = (c.to(torch.float64) - ref)[~zero].abs()
    assert bool((err <= cos_tol(k.shape[-1], k.dtype)).all()), float(err.max())


@pytest.mark.exercises("cos_sign_quant_formula")
@given(k=keys, j=st.integers(-40, 40))
def test_cos_sign_is_exactly_scale_and_sign_invariant(k, j):
    """cosSign (2ʲ k) = cosSign (−k) = cosSign k, bit for bit (exact power-of-two rescaling)."""
    scaled = k * 2.0**j
    tiny = torch.finfo(k.dtype).tiny
    exact = torch.isfinite(scaled).all() and ((scaled.abs() >= tiny) | (k == 0)).all()
    if bool(exact):  # no overflow and no rounding into the subnormal range
        assert torch.equal(cos_sign(scaled), cos_sign(k))
    assert torch.equal(cos_sign(-k), cos_sign(k))


@pytest.mark.theorem("cos_sign_le_one")
@given(k=nonzero_keys)
def test_cos_sign_range(k, device):
    """k ≠ 0 ⇒ 0 < cosSign k ≤ 1; moreover cosSign k ≥ 1/√d (l1 ≥ l2)."""
    d = k.shape[-1]
    c = cos_sign(k.to(device)).cpu().to(torch.float64)
    tol = cos_tol(d, k.dtype)
    assert bool((c > 0).all())
    assert bool((c <= 1 + tol).all())
    assert bool((c >= 1 / math.sqrt(d) - tol).all())


@pytest.mark.theorem("residual_energy_formula")
@given(k=keys)
def test_residual_energy_formula(k, device):
    """sqnorm (k − quant1 k) / sqnorm k = 1 − cosSign k² (k ≠ 0); absolute form against numpy."""
    d = k.shape[-1]
    err_abs = residual_energy(k.to(device)).cpu().to(torch.float64).numpy()
    err_rel = residual_energy(k.to(device), relative=True).cpu().to(torch.float64).numpy()
    ref_err, sq = ref_residual(k)
    tol = residual_tol(d, k.dtype)
    assert np.all(np.abs(err_abs - ref_err) <= tol * sq)
    zero = sq == 0
    assert np.all(err_rel[zero] == 0)  # total convention 0/0 = 0
    one_minus_cos2 = 1.0 - ref_cos(k).numpy() ** 2
    # 1 − cos² in float64 cancels: absolute error ≤ 2·cos_tol(float64) on top of the residual's.
    bound = tol + 4 * (d + 2) * eps(torch.float64)
    assert np.all(np.abs(err_rel - one_minus_cos2)[~zero] <= bound)


@pytest.mark.theorem("opt_scale_minimizes")
@given(k=keys, factors=st.lists(st.floats(-3, 3), min_size=1, max_size=5))
def test_opt_scale_is_least_squares(k, factors, device):
    """optScale k = l1/d, and ∀α: sqnorm (k − quant1 k) ≤ sqnorm (k − α•signVec k).

    α is tried as a multiple of the optimum (the objective is a parabola in α with minimum
    d·(α − optScale k)² above the optimum), including right next to it."""
    d = k.shape[-1]
    x = _np(k)
    a_star = opt_scale(k.to(device)).cpu().to(torch.float64).numpy()
    ref_a = np.abs(x).mean(axis=-1)
    assert np.all(np.abs(a_star - ref_a) <= (d + 1) * eps(k.dtype) * ref_a)
    code = quantize_1bit(k.to(device))
    khat = dequantize_1bit(code.signs, code.scale).cpu().to(torch.float64).numpy()
    s = np.where(x >= 0, 1.0, -1.0)
    err_star = ((x - khat) ** 2).sum(axis=-1)
    sq = (x**2).sum(axis=-1)
    tol = residual_tol(d, k.dtype) * sq
    err_impl = residual_energy(k.to(device)).cpu().to(torch.float64).numpy()
    assert np.all(np.abs(err_impl - err_star) <= 2 * tol)
    for f in list(factors) + [1 + 1e-6, 1 - 1e-6]:
        alpha = f * ref_a
        err_alpha = ((x - alpha[..., None] * s) ** 2).sum(axis=-1)
        assert np.all(err_star <= err_alpha + tol)


@pytest.mark.theorem("cos_eq_one_iff_sign_lattice")
@given(
    d=dims(1, 64),
    log_a=st.floats(-12, 12),
    dtype=st.sampled_from(FLOATS),
    seed=st.integers(0, 2**31 - 1),
)
def test_sign_lattice_points_have_cos_one(d, log_a, dtype, seed, device):
    """k = a•s, a > 0, s ∈ {±1}^d ⇒ is_sign_lattice(k, rtol=0), cosSign k = 1 and zero error."""
    g = torch.Generator().manual_seed(seed)
    s = (2 * torch.randint(0, 2, (d,), generator=g) - 1).to(dtype)
    k = (10.0**log_a * s).to(dtype).to(device)
    assert bool(is_sign_lattice(k, rtol=0.0))
    assert abs(float(cos_sign(k)) - 1.0) <= cos_tol(d, dtype)
    # α = mean of d equal floats is a·(1 + δ), |δ| ≤ (d−1)u, so the relative error is d·δ²/d.
    assert float(residual_energy(k, relative=True)) <= (d * eps(dtype)) ** 2


@pytest.mark.theorem("cos_eq_one_iff_sign_lattice")
@given(k=nonzero_keys)
def test_off_lattice_keys_have_cos_below_one(k, device):
    """The converse, quantitatively: 1 − cosSign k² ≥ (max|kᵢ| − min|kᵢ|)² / (2d·max|kᵢ|²).

    Σ(|kᵢ| − α)² ≥ (max − min)²/2 for every α, and sqnorm k ≤ d·max². is_sign_lattice(k, 0) is
    exactly "all |kᵢ| equal and nonzero"."""
    d = k.shape[-1]
    on = is_sign_lattice(k.to(device), rtol=0.0).cpu()
    a = k.abs().to(torch.float64)
    amax, amin = a.amax(dim=-1), a.amin(dim=-1)
    assert torch.equal(on, (amin == amax) & (amax > 0))
    spread = ((amax - amin) / amax) ** 2 / (2 * d)
    deficit = residual_energy(k.to(device), relative=True).cpu().to(torch.float64)
    assert bool((deficit >= spread - residual_tol(d, k.dtype)).all())


@pytest.mark.exercises("cos_eq_one_iff_sign_lattice")
@given(k=keys, rtol=st.floats(0, 0.5))
def test_is_sign_lattice_rtol_definition(k, rtol):
    """is_sign_lattice(k, rtol) ⟺ max|kᵢ| > 0 and max|kᵢ| − min|kᵢ| ≤ rtol·max|kᵢ|: the zero
    vector is not on the lattice (a > 0)."""
    a = k.abs().to(torch.float64)
    amax, amin = a.amax(dim=-1), a.amin(dim=-1)
    expected = (amax > 0) & (amax - amin <= rtol * amax)
    got = is_sign_lattice(k, rtol=rtol)
    # The float64 comparison can only differ from the tested dtype's within one rounding of the bound.
    borderline = (((amax - amin) - rtol * amax).abs() <= 4 * eps(k.dtype) * amax) & (amax > 0)
    assert torch.equal(got[~borderline], expected[~borderline])
    assert not bool(is_sign_lattice(torch.zeros_like(k), rtol=rtol).any())


@pytest.mark.theorem("centered_quant_strict_gain")
@given(v=nonzero_keys)
def test_centered_quant_strict_gain(v, device):
    """v ≠ 0 ⇒ sqnorm (v − quant1 v) ≤ (1 − 1/d)·sqnorm v < sqnorm v."""
    d = v.shape[-1]
    err = residual_energy(v.to(device)).cpu().to(torch.float64)
    sq = (v.to(torch.float64) ** 2).sum(dim=-1)
    tol = residual_tol(d, v.dtype) * sq
    assert bool((err <= (1 - 1 / d) * sq + tol).all())
    assert bool((err < sq).all())


@pytest.mark.exercises("residual_energy_formula")
@pytest.mark.exercises("opt_scale_minimizes")
@given(k=keys)
def test_quantize_dequantize_roundtrip(k, device):
    """quant1 k = optScale k • signVec k, bit for bit, from bool or ±1 signs."""
    kd = k.to(device)
    code = quantize_1bit(kd)
    assert code.signs.dtype == torch.bool
    expected = opt_scale(kd).unsqueeze(-1) * sign_vec(kd)
    assert torch.equal(dequantize_1bit(code.signs, code.scale), expected)
    assert torch.equal(dequantize_1bit(sign_vec(kd), code.scale), expected)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fn", [sign_vec, cos_sign, opt_scale, residual_energy])
def test_half_precision_is_computed_in_float32(fn, half):
    k = torch.randn(4, 33, generator=torch.Generator().manual_seed(0)).to(half)
    out = fn(k)
    assert out.dtype == half
    assert torch.equal(out, fn(k.float()).to(half))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fn", [sign_vec, cos_sign, opt_scale, quantize_1bit, residual_energy, is_sign_lattice])
def test_non_finite_keys_are_rejected(fn, bad):
    k = torch.ones(2, 5)
    k[1, 3] = bad
    with pytest.raises(ValueError, match=r"\bk\b.*finite"):
        fn(k)


@pytest.mark.parametrize("fn", [sign_vec, cos_sign, opt_scale, residual_energy])
def test_shape_errors(fn):
    with pytest.raises(ValueError, match=r"\bk\b"):
        fn(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"\bk\b"):
        fn(torch.ones(3, 0))
    with pytest.raises(ValueError, match=r"\bk\b"):
        fn([1.0, 2.0])


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="rtol"):
        is_sign_lattice(torch.ones(3), rtol=-1.0)
    with pytest.raises(ValueError, match="signs"):
        dequantize_1bit(torch.tensor([1.0, 0.0, -1.0]), torch.tensor(1.0))
    with pytest.raises(ValueError, match="scale"):
        dequantize_1bit(torch.ones(2, 3, dtype=torch.bool), torch.ones(5))
    with pytest.raises(ValueError, match="scale"):
        dequantize_1bit(torch.ones(3, dtype=torch.bool), torch.tensor(float("nan")))
