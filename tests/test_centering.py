"""Properties of impl.centering against SPEC §3 (DC-mean centering, mean-domination collapse,
the two β's after centring).

Error bounds, u = eps/2 of the tested dtype: a mean over n tokens has |Δm| ≤ (n + 1)u·mean|k|;
a sum of N nonnegative terms has relative error ≤ N·u; v_t = k_t − m inherits |Δv| ≤ u|v| + |Δm|.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import FLOATS, eps, orthogonal_matrix, real_tensors, seeds

from impl.centering import (
    centered_effective_beta,
    dc_center,
    energy_split,
    mean_domination_collapse,
)
from impl.moments import beta_vec
from impl.sign_quant import residual_energy

key_batches = st.integers(1, 24).flatmap(
    lambda n: real_tensors(max_d=32, batch_shapes=st.sampled_from([(n,), (2, n), (3, 1, n)]))
)


def ref_beta(x: torch.Tensor) -> torch.Tensor:
    """cos²∠(x, signVec x) per row in float64 (0 for a zero row)."""
    x = x.to(torch.float64)
    amax = x.abs().amax(dim=-1, keepdim=True)
    y = x / torch.where(amax > 0, amax, torch.ones_like(amax))
    c = F.cosine_similarity(y, torch.where(y >= 0, 1.0, -1.0).to(torch.float64), dim=-1)
    return torch.where(amax.squeeze(-1) > 0, c * c, torch.zeros_like(c))


@pytest.mark.theorem("l2Norm_uncentered_gt")
@given(keys=key_batches)
def test_dc_center_residuals_sum_to_zero(keys, device):
    """m = (1/n) Σ_t k_t and v_t = k_t − m, so Σ_t v_t = 0 (to rounding)."""
    n = keys.shape[-2]
    c = dc_center(keys.to(device))
    m, v = c.mean.cpu().to(torch.float64), c.residual.cpu().to(torch.float64)
    k64 = keys.to(torch.float64)
    abs_sum = k64.abs().sum(dim=-2)
    assert bool(((m - k64.mean(dim=-2)).abs() <= (n + 1) * eps(keys.dtype) * abs_sum / n).all())
    assert bool((v.sum(dim=-2).abs() <= (n + 2) * eps(keys.dtype) * abs_sum + 1e-300).all())
    assert bool(((v - (k64 - m.unsqueeze(-2))).abs() <= eps(keys.dtype) * (k64.abs() + m.abs().unsqueeze(-2))).all())


@pytest.mark.theorem("l2Norm_uncentered_gt")
@given(keys=key_batches)
def test_energy_split_identity(keys, device):
    """Σ_t sqnorm k_t = n·sqnorm m + Σ_t sqnorm v_t, hence Σ_t sqnorm v_t < Σ_t sqnorm k_t when
    m ≠ 0. Each side is a sum of ≤ n·d + n nonnegative terms computed independently."""
    n, d = keys.shape[-2], keys.shape[-1]
    e = energy_split(keys.to(device))
    mean_e, res_e, tot = (t.cpu().to(torch.float64) for t in e)
    k64 = keys.to(torch.float64)
    ref_tot = (k64 * k64).sum(dim=(-2, -1))
    assert bool(((tot - ref_tot).abs() <= (n * d + 1) * eps(keys.dtype) * ref_tot).all())
    tol = 4 * (n * d + 2 * n + 4) * eps(keys.dtype) * ref_tot
    assert bool(((mean_e + res_e - tot).abs() <= tol).all())
    dominated = mean_e > 2 * tol
    assert bool((res_e[dominated] < tot[dominated]).all())


@pytest.mark.theorem("l2Norm_uncentered_gt")
@given(d=st.integers(2, 32), mu=st.floats(1e-3, 1e3), seed=seeds, dtype=st.sampled_from(FLOATS))
def test_single_vector_form(d, mu, seed, dtype):
    """⟪v, e⟫ = 0, e ≠ 0, μ ≠ 0 ⇒ l2 (μ•e + v) > l2 v — as the two-token batch
    {μe + v, μe − v} (mean μe, residuals ±v): residual energy 2‖v‖² < total 2‖μe + v‖²."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(d, generator=g, dtype=torch.float64)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    v = v - (v @ e) / (e @ e) * e
    keys = torch.stack([mu * e + v, mu * e - v]).to(dtype)
    split = energy_split(keys)
    k64 = keys.to(torch.float64)
    v64 = (k64[0] - k64[1]) / 2
    tol = 4 * (2 * d + 8) * eps(dtype) * float((k64 * k64).sum())
    assert abs(float(split.residual_energy) - 2 * float(v64 @ v64)) <= tol
    assert float(split.residual_energy) < float(split.total_energy)


@st.composite
def collapse_cases(draw):
    """(c, s, v) with s ∈ {±1}^d, ⟪v, s⟫ = 0, 0 < c, max|vᵢ| = ρ·c with ρ < 1."""
    d = draw(st.integers(2, 32))
    dtype = draw(st.sampled_from(FLOATS))
    g = torch.Generator().manual_seed(draw(seeds))
    s = (2 * torch.randint(0, 2, (d,), generator=g) - 1).to(torch.float64)
    c = 10.0 ** draw(st.floats(-6, 6))
    v = torch.randn(d, generator=g, dtype=torch.float64)
    v = v - (v @ s) / d * s
    rho = draw(st.floats(0.0, 0.99))
    amax = float(v.abs().max())
    v = v * (rho * c / amax) if amax > 0 else v
    # cast, then re-project in float64 and cast again so ⟪v, s⟫ is as small as the dtype allows
    v = v.to(dtype).to(torch.float64)
    v = (v - (v @ s) / d * s).to(dtype)
    return torch.tensor(c, dtype=dtype), s.to(dtype), v


@pytest.mark.theorem("dc_centering_lifts_rotational_ceiling")
@given(case=collapse_cases())
def test_mean_domination_collapse(case, device):
    """signVec (c•s + v) = s and optScale = c: every such key gets the code s and reconstruction
    c•s, so its 1-bit error is exactly sqnorm v (all of v lost), while the centred residual
    loses ≤ (1 − 1/d)·sqnorm v < sqnorm v."""
    c, s, v = case
    d = s.shape[-1]
    r = mean_domination_collapse(c.to(device), s.to(device), v.to(device))
    c64, v64 = float(c), v.to(torch.float64)
    sq_v = float(v64 @ v64)
    assert torch.equal(r.code.cpu(), s)
    # |⟪v, s⟫| after the cast is ≤ d·u·max|v| ≤ d·u·c; the mean adds (d + 1)u·(c + max|v|)
    assert abs(float(r.scale) - c64) <= (2 * d + 4) * eps(v.dtype) * c64
    # error = sqnorm(v + (c − α)s): |Δ| ≤ 2‖v‖√d|c − α| + d|c − α|² + rounding of sqnorm
    da = (2 * d + 4) * eps(v.dtype) * c64
    # results below the normal range are stored with absolute spacing tiny·eps (one per rounding)
    sub = (d + 2) * torch.finfo(v.dtype).tiny * eps(v.dtype)
    tol = 2 * math.sqrt(sq_v * d) * da + d * da * da + (d + 2) * eps(v.dtype) * (sq_v + d * c64 * c64) + sub
    assert abs(float(r.error) - sq_v) <= tol
    assert abs(float(r.lost_energy) - sq_v) <= (d + 1) * eps(v.dtype) * sq_v + sub
    assert abs(float(r.bound) - (1 - 1 / d) * float(r.lost_energy)) <= 4 * eps(v.dtype) * float(r.bound) + sub
    gain_tol = (math.sqrt(d) * (d + 2) + d) * eps(v.dtype) * sq_v + sub
    assert float(r.centered_error) <= float(r.bound) + gain_tol
    if sq_v / d > 2 * gain_tol:  # the strict gain sqnorm v / d is resolvable in this dtype
        assert float(r.centered_error) < float(r.lost_energy)


@pytest.mark.theorem("dc_centering_lifts_rotational_ceiling")
def test_fixed_rotation_counterexample_from_spec():
    """SPEC's warning: at a fixed R centring can raise one key's error — v = (1, 1, −2) with
    mean 0.1 loses 2/3 centred against 0.4267 uncentred (exact: 6 − 16/3 and 6.03 − 4.1²/3)."""
    v = torch.tensor([1.0, 1.0, -2.0], dtype=torch.float64)
    assert float(residual_energy(v)) == pytest.approx(2 / 3, rel=1e-14)
    assert float(residual_energy(v + 0.1)) == pytest.approx(6.03 - 4.1**2 / 3, rel=1e-13)
    assert float(residual_energy(v)) > float(residual_energy(v + 0.1))


@pytest.mark.theorem("centered_energy_accounting")
@given(d=st.integers(2, 32), seed=seeds, mu=st.floats(-1e3, 1e3), dtype=st.sampled_from(FLOATS))
def test_centered_energy_accounting_per_key(d, seed, mu, dtype, device):
    """v ≠ 0, ⟪v, m⟫ = 0 ⇒ sqnorm (v − quant1 v)/sqnorm (m + v)
    = (1 − betaVec v)·(sqnorm v / sqnorm (m + v)) ≤ 1 − betaVec v."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(d, generator=g, dtype=torch.float64)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    v = v - (v @ e) / (e @ e) * e
    m = mu * e / e.norm()
    vd = v.to(dtype).to(device)
    err = float(residual_energy(vd))
    b = float(beta_vec(vd))
    sq_v = float(v @ v)
    sq_k = float((m + v) @ (m + v))  # = sqnorm m + sqnorm v by orthogonality
    lhs, rhs = err / sq_k, (1 - b) * sq_v / sq_k
    tol = ((math.sqrt(d) * (d + 2) + d) * eps(dtype) + 2 * (d + 2) * eps(dtype)) * sq_v / sq_k
    assert abs(lhs - rhs) <= tol
    assert lhs <= (1 - b) + tol


@pytest.mark.theorem("centered_energy_accounting")
@given(keys=key_batches, rotate=st.booleans(), seed=seeds)
def test_centered_effective_beta(keys, rotate, seed, device):
    """β_v = mean betaVec of R(k_t − m); ρ = Σ sqnorm v_t / Σ sqnorm k_t (unchanged by R);
    β_c = 1 − ρ(1 − β_v) ≥ β_v."""
    n, d = keys.shape[-2], keys.shape[-1]
    R = orthogonal_matrix(d, seed, keys.dtype) if rotate else None
    out = centered_effective_beta(keys.to(device), rotation=None if R is None else R.to(device))
    beta_v, beta_c, rho = (t.cpu().to(torch.float64) for t in out)
    k64 = keys.to(torch.float64)
    v = k64 - k64.mean(dim=-2, keepdim=True)
    vr = v @ R.to(torch.float64).T if R is not None else v
    ref_bv = ref_beta(vr).mean(dim=-1)
    # Per residual: |Δv_t| ≤ u‖v_t‖ + √d(n+1)u·K (K = max|k|, from the mean), R adds d^{3/2}u‖v_t‖,
    # cosSign is 2/‖v_t‖-Lipschitz and computed to (d+2)eps; |Δβ| ≤ 2|Δcos|. Averaged over t.
    K = k64.abs().amax(dim=(-2, -1), keepdim=True).squeeze(-1)
    nv = vr.norm(dim=-1).clamp_min(1e-300)
    tol_t = (2 + 2 * math.sqrt(d) * (n + 1) * K / nv + 2 * d**1.5 + 2 * (d + 2)) * eps(keys.dtype)
    assert bool(((beta_v - ref_bv).abs() <= tol_t.mean(dim=-1)).all())
    ek = (k64 * k64).sum(dim=(-2, -1))
    ev = (v * v).sum(dim=(-2, -1))
    ref_rho = torch.where(ek > 0, ev / torch.where(ek > 0, ek, torch.ones_like(ek)), torch.zeros_like(ek))
    assert bool(((rho - ref_rho).abs() <= 4 * (n * d + 2 * n + 4) * eps(keys.dtype)).all())
    assert bool(((beta_c - (1 - rho * (1 - beta_v))).abs() <= 4 * eps(keys.dtype)).all())
    assert bool((beta_c >= beta_v - 4 * eps(keys.dtype)).all())
    assert bool((rho <= 1 + 4 * (n * d + 2 * n + 4) * eps(keys.dtype)).all())


@pytest.mark.theorem("centered_energy_accounting")
@given(d=st.integers(2, 32), seed=seeds, mu=st.floats(0.1, 1e3))
def test_beta_c_is_the_batch_relative_error_for_equal_norm_residuals(d, seed, mu):
    """With equal residual norms (tokens m ± u), 1 − β_c = Σ_t sqnorm (v_t − quant1 v_t) / Σ_t sqnorm k_t:
    the key-level error when the mean is stored exactly."""
    g = torch.Generator().manual_seed(seed)
    m = mu * torch.randn(d, generator=g, dtype=torch.float64)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    keys = torch.stack([m + u, m - u])
    out = centered_effective_beta(keys)
    batch_err = float(residual_energy(torch.stack([u, -u])).sum()) / float((keys * keys).sum())
    assert abs((1 - float(out.beta_c)) - batch_err) <= 16 * (2 * d + 8) * eps(torch.float64)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="keys"):
        dc_center(torch.ones(4))
    with pytest.raises(ValueError, match="keys"):
        energy_split(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="keys"):
        centered_effective_beta(torch.ones(0, 3))
    with pytest.raises(ValueError, match="rotation"):
        centered_effective_beta(torch.ones(3, 2), rotation=2 * torch.eye(2))
    with pytest.raises(ValueError, match="rotation"):
        centered_effective_beta(torch.ones(3, 2), rotation=torch.eye(3))
    with pytest.raises(ValueError, match=r"\bs\b"):
        mean_domination_collapse(1.0, torch.tensor([1.0, 0.0]), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\bv\b"):
        mean_domination_collapse(1.0, torch.ones(2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\bc\b"):
        mean_domination_collapse(float("nan"), torch.ones(2), torch.zeros(2))


def test_half_precision_roundtrip():
    k = torch.randn(5, 8, generator=torch.Generator().manual_seed(0)).half()
    c = dc_center(k)
    assert c.mean.dtype == torch.float16 and c.residual.dtype == torch.float16
    assert torch.equal(c.residual, dc_center(k.float()).residual.half())
