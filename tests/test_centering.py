"""Properties of impl.centering against SPEC §3 (DC-mean centering, mean-domination collapse,
the two β's after centring).

Error bounds, u = eps/2 of the tested dtype: a mean over n tokens has |Δm| ≤ (n + 1)u·mean|k|;
a sum of N nonnegative terms has relative error ≤ N·u; v_t = k_t − m inherits |Δv| ≤ u|v| + |Δm|.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import FLOATS, dims, eps, orthogonal_matrix, real_tensors, seeds

from impl.centering import (
    centered_effective_beta,
    dc_center,
    energy_split,
    mean_domination_collapse,
)
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


@pytest.mark.exercises("l2Norm_uncentered_gt")
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
    m ≠ 0. Each side is a sum of ≤ n·d + n nonnegative terms computed independently; each of the
    three energies is also checked against its definition in float64 (m = mean of the keys,
    v_t = k_t − m), where the mean's rounding moves n·sqnorm m and Σ sqnorm v_t by at most
    2(n + 2)u·(Σ|k|)·(‖m‖ + max‖v_t‖)·… ≤ 4(n·d + 2n + 4)·eps·Σ sqnorm k (Cauchy–Schwarz)."""
    n, d = keys.shape[-2], keys.shape[-1]
    e = energy_split(keys.to(device))
    mean_e, res_e, tot = (t.cpu().to(torch.float64) for t in e)
    k64 = keys.to(torch.float64)
    ref_tot = (k64 * k64).sum(dim=(-2, -1))
    assert bool(((tot - ref_tot).abs() <= (n * d + 1) * eps(keys.dtype) * ref_tot).all())
    m64 = k64.mean(dim=-2, keepdim=True)
    ref_mean_e = n * (m64 * m64).sum(dim=(-2, -1))
    ref_res_e = ((k64 - m64) ** 2).sum(dim=(-2, -1))
    ref_tol = 4 * (n * d + 2 * n + 4) * eps(keys.dtype) * ref_tot + 1e-300
    assert bool(((mean_e - ref_mean_e).abs() <= ref_tol).all())
    assert bool(((res_e - ref_res_e).abs() <= ref_tol).all())
    tol = 4 * (n * d + 2 * n + 4) * eps(keys.dtype) * ref_tot
    assert bool(((mean_e + res_e - tot).abs() <= tol).all())
    dominated = mean_e > 2 * tol
    assert bool((res_e[dominated] < tot[dominated]).all())


@pytest.mark.theorem("l2Norm_uncentered_gt")
@given(d=dims(2, 32), mu=st.floats(1e-3, 1e3), seed=seeds, dtype=st.sampled_from(FLOATS))
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
    d = draw(dims(2, 32))
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


@pytest.mark.exercises("dc_centering_lifts_rotational_ceiling")
def test_fixed_rotation_counterexample_from_spec():
    """SPEC's warning: at a fixed R centring can raise one key's error — v = (1, 1, −2) with
    mean 0.1 loses 2/3 centred against 0.4267 uncentred (exact: 6 − 16/3 and 6.03 − 4.1²/3)."""
    v = torch.tensor([1.0, 1.0, -2.0], dtype=torch.float64)
    assert float(residual_energy(v)) == pytest.approx(2 / 3, rel=1e-14)
    assert float(residual_energy(v + 0.1)) == pytest.approx(6.03 - 4.1**2 / 3, rel=1e-13)
    assert float(residual_energy(v)) > float(residual_energy(v + 0.1))


@pytest.mark.theorem("centered_energy_accounting")
@given(d=dims(2, 32), seed=seeds, mu=st.floats(-1e3, 1e3), dtype=st.sampled_from(FLOATS))
def test_centered_energy_accounting_per_key(d, seed, mu, dtype, device):
    """v ≠ 0, ⟪v, m⟫ = 0 ⇒ sqnorm (v − quant1 v)/sqnorm (m + v)
    = (1 − betaVec v)·(sqnorm v / sqnorm (m + v)) ≤ 1 − betaVec v.

    betaVec v comes from its definition (mean|vᵢ|)²/mean(vᵢ²) in float64, not from impl. The
    registered impl, centered_effective_beta, is checked on the two-token batch {m + v, m − v}
    (mean m, residuals ±v, both with betaVec v): 1 − β_c must be the same per-key ratio. Its
    bound: the keys are rounded once and centred, so ‖Δv‖ ≤ 3u(2‖m‖ + ‖v‖); cosSign is
    2/‖v‖-Lipschitz, so ρ·|Δβ_v| ≤ 4ρ‖Δv‖/‖v‖ ≤ 24u, ρ's own relative error ≤ 2‖Δv‖/‖v‖ + (2d + 2)u
    adds ≤ 12u + (2d + 2)u·ρ, and β_v is computed to 2(d + 2)·eps: ≤ (4d + 24)·eps in all."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(d, generator=g, dtype=torch.float64)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    v = v - (v @ e) / (e @ e) * e
    m = mu * e / e.norm()
    vd = v.to(dtype)
    v64 = vd.to(torch.float64)  # the vector actually quantized
    b = float(v64.abs().mean()) ** 2 / float((v64 * v64).mean())
    err = float(residual_energy(vd.to(device)))
    sq_v = float(v64 @ v64)
    sq_k = float((m + v) @ (m + v))  # = sqnorm m + sqnorm v by orthogonality
    lhs, rhs = err / sq_k, (1 - b) * sq_v / sq_k
    tol = ((math.sqrt(d) * (d + 2) + d) * eps(dtype) + 4 * d * eps(torch.float64)) * sq_v / sq_k
    assert abs(lhs - rhs) <= tol
    assert lhs <= (1 - b) + tol
    keys = torch.stack([m + v, m - v]).to(dtype)
    out = centered_effective_beta(keys.to(device))
    assert abs((1 - float(out.beta_c)) - (1 - b) * sq_v / sq_k) <= (4 * d + 24) * eps(dtype) + tol


@pytest.mark.exercises("centered_energy_accounting")
@given(keys=key_batches, rotate=st.booleans(), seed=seeds)
def test_centered_effective_beta(keys, rotate, seed, device):
    """β_v = mean betaVec of R(k_t − m); ρ = Σ sqnorm v_t / Σ sqnorm k_t (unchanged by R);
    β_c = 1 − ρ(1 − β_v) ≥ β_v — each against float64 references built from the definitions
    (β_c from the reference β_v and ρ, never from impl's own outputs)."""
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
    rho_tol = 4 * (n * d + 2 * n + 4) * eps(keys.dtype)
    assert bool(((rho - ref_rho).abs() <= rho_tol).all())
    # |Δβ_c| ≤ |Δρ|·(1 − β_v) + ρ·|Δβ_v| + the final rounding (ρ ≤ 1, 1 − β_v ≤ 1)
    ref_bc = 1 - ref_rho * (1 - ref_bv)
    assert bool(((beta_c - ref_bc).abs() <= rho_tol + tol_t.mean(dim=-1) + 4 * eps(keys.dtype)).all())
    assert bool((beta_c >= beta_v - 4 * eps(keys.dtype)).all())
    assert bool((rho <= 1 + 4 * (n * d + 2 * n + 4) * eps(keys.dtype)).all())


def ref_quant1(x: np.ndarray) -> np.ndarray:
    """quant1 x = (l1 x / d)·signVec x per row, from the definition (sgn 0 = +1), float64 numpy."""
    return np.abs(x).mean(axis=-1, keepdims=True) * np.where(x >= 0, 1.0, -1.0)


@pytest.mark.theorem("centered_energy_accounting")
@given(d=dims(2, 32), pairs=st.integers(1, 4), seed=seeds, mu=st.floats(0.1, 1e3))
def test_beta_c_is_the_energy_of_the_stored_mean_plus_coded_residual(d, pairs, seed, mu):
    """1 − β_c is the key-level relative error when the mean is stored exactly and each residual
    is 1-bit coded: Σ_t sqnorm (k_t − (m + quant1 v_t)) / Σ_t sqnorm k_t, computed here from the
    definitions in float64 numpy — for batches whose residuals share one betaVec (tokens
    m ± a_j·P_j(σ_j ⊙ u): permutations P_j, sign flips σ_j and scales a_j keep betaVec and sum to
    zero), where the per-key accounting sums to exactly ρ(1 − β_v).
    Bound: impl centres float64 keys, so ρ|Δβ_v| ≤ 24u and ρ|Δρ|/ρ ≤ 12u + n·d·u (as in
    test_centered_energy_accounting_per_key), β_v to 2(d + 2)·eps, the reference to ≤ 4d·eps."""
    g = torch.Generator().manual_seed(seed)
    m = mu * torch.randn(d, generator=g, dtype=torch.float64)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    res = []
    for _ in range(pairs):
        perm = torch.randperm(d, generator=g)
        flip = (2 * torch.randint(0, 2, (d,), generator=g) - 1).to(torch.float64)
        a = 0.5 + 1.5 * float(torch.rand((), generator=g, dtype=torch.float64))
        w = a * flip * u[perm]
        res += [w, -w]
    V = torch.stack(res)
    keys = m + V
    out = centered_effective_beta(keys)
    k = keys.numpy()
    mean = k.mean(axis=0, keepdims=True)
    v = k - mean
    stored = mean + ref_quant1(v)  # stored mean + coded residual
    key_err = float(((k - stored) ** 2).sum()) / float((k * k).sum())
    n = keys.shape[0]
    tol = (12 + 2 * (d + 2) + n * d + 2 + 4 * d) * eps(torch.float64)
    assert abs((1 - float(out.beta_c)) - key_err) <= tol


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
