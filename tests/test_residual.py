"""Properties of impl.residual against SPEC §5 (β_eff, top-k optimality, Ky Fan, Eckart–Young).

Spectral references come from numpy.linalg (eigvalsh of EᵀE, svd) in float64 — independent
of torch.linalg. Error bounds, u = eps/2 of the tested dtype, E of shape (n, d), r columns:
* ‖E B‖_F² with unit columns b_j: |Δ(E b_j)_t| ≤ γ_d‖e_t‖, so the captured energy moves by
  ≤ 2√r·d·u·‖E‖_F²; the totals are sums of n·d squares (≤ n·d·u relative);
* an SVD basis in the tested dtype is orthonormal to ≤ 16·d·eps (impl.validation), which moves
  captured energy by ≤ that times ‖E‖_F²; torch's SVD is backward stable, so its top-r
  subspace captures the optimum to ≤ c·max(n, d)·eps·‖E‖_F² (c = 8 here).
Hence tol = (2√r·d + n·d + 8·max(n, d) + 32·d)·eps·‖E‖_F².
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    FLOATS,
    dims,
    eps,
    orthonormal_frame,
    real_tensors,
    scaled_examples,
    seeds,
)

from impl.residual import (
    beta_eff,
    gamma_r,
    low_rank_error,
    rank_r_correction,
    top_k_mask,
    top_k_sum,
)


def spectral_tol(n: int, d: int, r: int, dtype: torch.dtype) -> float:
    return (2 * math.sqrt(max(r, 1)) * d + n * d + 8 * max(n, d) + 32 * d) * eps(dtype)


@st.composite
def residual_matrices(draw, max_n: int = 40, max_d: int = 16):
    """E (n, d): generic, low rank, repeated singular values, column scales over orders."""
    dtype = draw(st.sampled_from(FLOATS))
    n, d = draw(st.integers(1, max_n)), draw(dims(1, max_d))
    g = torch.Generator().manual_seed(draw(seeds))
    kind = draw(st.sampled_from(["generic", "low_rank", "repeated", "scaled_columns", "drawn"]))
    if kind == "drawn":
        E = draw(real_tensors(d=d, dtype=dtype, batch_shapes=st.just((n,)))).to(torch.float64)
    else:
        E = torch.randn(n, d, generator=g, dtype=torch.float64)
        if kind == "low_rank":
            k = draw(st.integers(0, min(n, d)))
            E = torch.randn(n, k, generator=g, dtype=torch.float64) @ torch.randn(
                k, d, generator=g, dtype=torch.float64
            )
        elif kind == "repeated":  # orthogonal rows scaled equally: repeated singular values
            Q = torch.linalg.qr(torch.randn(max(n, d), max(n, d), generator=g, dtype=torch.float64)).Q
            E = Q[:n, :d] * 3.0
        elif kind == "scaled_columns":
            E = E * 10.0 ** torch.empty(d, dtype=torch.float64).uniform_(-4, 4, generator=g)
        E = E * 10.0 ** draw(st.floats(-8, 8))
    return E.to(dtype)


def eig_desc(E: torch.Tensor) -> np.ndarray:
    """Eigenvalues of EᵀE, descending (numpy, float64)."""
    e = E.to(torch.float64).numpy()
    return np.sort(np.linalg.eigvalsh(e.T @ e))[::-1].clip(min=0)


# ----------------------------------------------------------------------------- β_eff


@pytest.mark.theorem("beta_eff_formula")
@given(b=st.floats(0, 1), g=st.floats(0, 1), seed=seeds, d=dims(1, 32))
def test_beta_eff_formula(b, g, seed, d):
    """With sqnorm r = (1 − b)·sqnorm k and sqnorm (r − c) = (1 − g)·sqnorm r:
    1 − sqnorm (r − c)/sqnorm k = 1 − (1 − b)(1 − g), and max b g ≤ it ≤ 1."""
    be = beta_eff(b, g)
    assert isinstance(be, float)
    assert max(b, g) - 2 * eps(torch.float64) <= be <= 1 + 2 * eps(torch.float64)
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(d, generator=gen, dtype=torch.float64)
    direction = torch.randn(d, generator=gen, dtype=torch.float64)
    r = math.sqrt(1 - b) * k.norm() * direction / direction.norm()
    c = (1 - math.sqrt(1 - g)) * r
    measured = 1 - float(((r - c) ** 2).sum() / (k * k).sum())
    assert abs(measured - be) <= 8 * (d + 4) * eps(torch.float64)


@pytest.mark.theorem("beta_eff_formula")
def test_beta_eff_algebra_symbolic():
    """SymPy: the identity, and 1 − (1−b)(1−g) − b = g(1 − b), − g = b(1 − g), 1 − it = (1−b)(1−g)
    (all ≥ 0 on [0, 1]²); impl agrees with the exact value on a rational grid."""
    b, g, K = sp.symbols("b g K", positive=True)
    beff = 1 - (1 - b) * (1 - g)
    sq_r = (1 - b) * K
    sq_rc = (1 - g) * sq_r
    assert sp.simplify(1 - sq_rc / K - beff) == 0
    assert sp.factor(beff - b) == sp.factor(g * (1 - b))
    assert sp.factor(beff - g) == sp.factor(b * (1 - g))
    assert sp.simplify(1 - beff - (1 - b) * (1 - g)) == 0
    grid = [sp.Rational(i, 7) for i in range(8)]
    for bv, gv in itertools.product(grid, grid):
        exact = beff.subs({b: bv, g: gv})
        assert abs(beta_eff(float(bv), float(gv)) - float(exact)) <= 4 * eps(torch.float64)


@pytest.mark.exercises("beta_eff_formula")
@given(bs=st.lists(st.floats(0, 1), min_size=1, max_size=8), g=st.floats(0, 1), dtype=st.sampled_from(FLOATS))
def test_beta_eff_broadcasts_over_tensors(bs, g, dtype, device):
    bt = torch.tensor(bs, dtype=dtype, device=device)
    out = beta_eff(bt, g)
    assert out.dtype == dtype and out.shape == bt.shape and out.device.type == device.type
    ref = torch.tensor([beta_eff(float(x), g) for x in bt.cpu().tolist()], dtype=torch.float64)
    assert bool(((out.cpu().to(torch.float64) - ref).abs() <= 4 * eps(dtype)).all())
    both = beta_eff(bt, torch.full_like(bt, g))
    assert torch.equal(both, out)


# ----------------------------------------------------------------------------- top-k


@st.composite
def weights_summing_to(draw, d: int, k: int) -> np.ndarray:
    """0 ≤ cᵢ ≤ 1, Σ cᵢ = k: a convex combination of k-subset indicators (the hypersimplex)."""
    m = draw(st.integers(1, 4))
    lam = np.array(draw(st.lists(st.floats(0.01, 1.0), min_size=m, max_size=m)))
    lam = lam / lam.sum()
    c = np.zeros(d)
    for w in lam:
        subset = draw(st.permutations(list(range(d))))[:k]
        c[list(subset)] += w
    return c


@pytest.mark.theorem("top_k_optimal")
@given(data=st.data(), d=st.integers(1, 10), dtype=st.sampled_from(FLOATS))
def test_top_k_optimal(data, d, dtype):
    """Σ cᵢλᵢ ≤ Σ_{i∈S} λᵢ for weights in [0, 1] summing to k = |S|, S the top-k set; top_k_sum
    is the best k-subset (brute force) and the first k after sorting; the mask is a threshold set."""
    vals = st.one_of(
        st.floats(-1e6, 1e6, width=32 if dtype == torch.float32 else 64), st.sampled_from([-1.0, 0.0, 1.0, 2.0])
    )
    lam = torch.tensor(data.draw(st.lists(vals, min_size=d, max_size=d)), dtype=dtype)
    k = data.draw(st.integers(0, d))
    c = data.draw(weights_summing_to(d, k)) if k else np.zeros(d)
    lam64 = lam.to(torch.float64).numpy()
    total = float(top_k_sum(lam, k))
    scale = np.abs(lam64).sum()
    tol = (k + 2) * eps(dtype) * scale
    assert float(c @ lam64) <= total + tol + 4 * d * eps(torch.float64) * scale
    best = max((lam64[list(S)].sum() for S in itertools.combinations(range(d), k)), default=0.0)
    assert abs(total - best) <= tol
    assert abs(total - np.sort(lam64)[::-1][:k].sum()) <= tol
    mask = top_k_mask(lam, k)
    assert int(mask.sum()) == k
    if 0 < k < d:
        tau = lam[mask].min()
        assert bool((lam[~mask] <= tau).all())  # λᵢ ≤ τ off S, τ ≤ λᵢ on S
    assert abs(float(lam[mask].to(torch.float64).sum()) - total) <= tol


def test_top_k_batched_and_bad_k():
    x = torch.tensor([[3.0, 1.0, 2.0], [0.0, -1.0, 5.0]])
    assert torch.equal(top_k_sum(x, 2), torch.tensor([5.0, 5.0]))
    assert torch.equal(top_k_mask(x, 1), torch.tensor([[True, False, False], [False, False, True]]))
    assert torch.equal(top_k_sum(x, 0), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\bk\b"):
        top_k_sum(x, 4)
    with pytest.raises(ValueError, match=r"\bk\b"):
        top_k_mask(x, -1)
    with pytest.raises(ValueError, match=r"\bx\b"):
        top_k_sum(torch.tensor([1.0, float("nan")]), 1)


# ----------------------------------------------------------------------------- Ky Fan, Eckart–Young


@pytest.mark.theorem("svd_topk_maximizes_gammaR")
@given(E=residual_matrices(), data=st.data(), seed=seeds)
def test_svd_topk_maximizes_gamma_r(E, data, seed, device):
    """Ky Fan for T = EᵀE: any orthonormal r-frame captures Σ_j ⟪T b_j, b_j⟫ ≤ Σ_{i<r} λᵢ(T); the
    SVD basis attains it, so γ_r(random frame) ≤ γ_r(SVD basis) = Σ_{i<r} λᵢ / tr T."""
    n, d = E.shape
    r = data.draw(st.integers(0, d))
    lam = eig_desc(E)
    total = lam.sum()
    B = rank_r_correction(E.to(device), r).basis
    g_svd = float(gamma_r(E.to(device), B))
    frame = orthonormal_frame(d, r, seed).to(E.dtype)
    g_rand = float(gamma_r(E.to(device), frame.to(device)))
    tol = spectral_tol(n, d, r, E.dtype)
    assert -tol <= g_rand <= g_svd + 2 * tol
    assert g_svd <= 1 + tol
    if total > 0:
        assert abs(g_svd - lam[:r].sum() / total) <= tol
        captured = ((E.to(torch.float64) @ frame.to(torch.float64)) ** 2).sum().item()
        assert abs(g_rand - captured / total) <= tol
    else:
        assert g_svd == 0 and g_rand == 0


@pytest.mark.theorem("residual_topk_eckart_young")
@given(E=residual_matrices(), data=st.data(), seed=seeds)
def test_residual_topk_eckart_young(E, data, seed, device):
    """‖E − E P‖_F² = tr(EᵀE) − Σ_j ⟪EᵀE b_j, b_j⟫ ≥ Σ_{i ≥ r} λᵢ(EᵀE), equality at the top-r
    eigenvectors (the SVD basis)."""
    n, d = E.shape
    r = data.draw(st.integers(0, d))
    lam = eig_desc(E)
    total = lam.sum()
    tol = spectral_tol(n, d, r, E.dtype) * total + 1e-300
    frame = orthonormal_frame(d, r, seed).to(E.dtype)
    err = float(low_rank_error(E.to(device), frame.to(device)))
    E64, F64 = E.to(torch.float64), frame.to(torch.float64)
    T = E64.T @ E64
    trace_form = float(torch.trace(T) - torch.einsum("ij,ik,kj->", F64, T, F64))
    assert abs(err - trace_form) <= tol
    assert err >= lam[r:].sum() - tol
    B = rank_r_correction(E.to(device), r).basis
    assert abs(float(low_rank_error(E.to(device), B)) - lam[r:].sum()) <= tol


@pytest.mark.theorem("eckart_young_full")
@settings(max_examples=scaled_examples(1))
@given(E=residual_matrices(), data=st.data(), seed=seeds)
def test_rank_r_correction_is_optimal_among_rank_r_matrices(E, data, seed, device):
    """The metric of the open target, against an independent reference: the rank-r correction X = E B Bᵀ has
    ‖E − X‖_F² = Σ_{i ≥ r} σᵢ² (numpy SVD), and no other rank-≤r matrix we try does better —
    random ones, the best fit in a random row space, and X with both factors nudged."""
    n, d = E.shape
    r = data.draw(st.integers(0, d))
    corr = rank_r_correction(E.to(device), r)
    B, C, X = (t.cpu() for t in corr)
    assert B.shape == (d, r) and C.shape == (n, r) and X.shape == (n, d)
    tol_frame = 16 * d * eps(E.dtype)
    assert (
        float(torch.linalg.matrix_norm(B.to(torch.float64).T @ B.to(torch.float64) - torch.eye(r, dtype=torch.float64)))
        <= tol_frame
    )
    E64 = E.to(torch.float64)
    sv = np.linalg.svd(E64.numpy(), compute_uv=False)
    tail = float((sv[r:] ** 2).sum())
    total = float((sv**2).sum())
    tol = spectral_tol(n, d, r, E.dtype) * total + 1e-300
    err = float(((E64 - X.to(torch.float64)) ** 2).sum())
    assert abs(err - tail) <= tol
    X_from_parts = C.to(torch.float64) @ B.to(torch.float64).T
    assert float(((X_from_parts - X.to(torch.float64)) ** 2).sum()) <= tol
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        A = torch.randn(n, r, generator=g, dtype=torch.float64)
        W = torch.randn(d, r, generator=g, dtype=torch.float64)
        scale = math.sqrt(total) / max(1.0, float((A @ W.T).norm()))
        C64, B64 = C.to(torch.float64), B.to(torch.float64)
        nudged = (C64 + 1e-3 * scale * A) @ (B64 + 1e-3 * W).T  # still rank ≤ r
        for cand in (scale * A @ W.T, E64 @ W @ torch.linalg.pinv(W), nudged):
            assert float(((E64 - cand) ** 2).sum()) >= tail - tol


@pytest.mark.exercises("eckart_young_full")
@settings(max_examples=scaled_examples(2))
@given(n=st.integers(20, 60), d=st.integers(8, 24), data=st.data(), seed=seeds, dtype=st.sampled_from(FLOATS))
def test_randomized_rank_r_correction(n, d, data, seed, dtype):
    """Randomized range finder: orthonormal basis, error ≥ the optimum always; exact (error ≈ 0)
    when rank E ≤ r; reproducible from its generator."""
    r = data.draw(st.integers(1, d // 2))
    g = torch.Generator().manual_seed(seed)
    rank = data.draw(st.integers(0, r))
    E = (
        torch.randn(n, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    ).to(dtype)
    noise = data.draw(st.sampled_from([0.0, 1e-2, 1.0]))
    E = E + (noise * torch.randn(n, d, generator=g, dtype=torch.float64)).to(dtype)
    corr = rank_r_correction(E, r, method="randomized", generator=torch.Generator().manual_seed(seed), oversample=2)
    B = corr.basis.to(torch.float64)
    assert float(torch.linalg.matrix_norm(B.T @ B - torch.eye(r, dtype=torch.float64))) <= 16 * d * eps(dtype)
    sv = np.linalg.svd(E.to(torch.float64).numpy(), compute_uv=False)
    total = float((sv**2).sum())
    tol = spectral_tol(n, d, r, dtype) * total + 1e-300
    err = float(low_rank_error(E, corr.basis))
    assert err >= float((sv[r:] ** 2).sum()) - tol
    assert err <= total + tol
    if noise == 0.0:
        assert err <= tol
    again = rank_r_correction(E, r, method="randomized", generator=torch.Generator().manual_seed(seed), oversample=2)
    assert torch.equal(again.basis, corr.basis)


def test_batched_and_edge_cases():
    E = torch.randn(3, 10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    corr = rank_r_correction(E, 2)
    assert corr.basis.shape == (3, 4, 2)
    assert gamma_r(E, corr.basis).shape == (3,)
    zero = torch.zeros(5, 3)
    assert float(gamma_r(zero, torch.eye(3)[:, :2])) == 0.0
    assert rank_r_correction(E[0], 0).basis.shape == (4, 0)
    wide = torch.randn(2, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    B = rank_r_correction(wide, 5).basis  # r > n: the frame is completed by null-space directions
    assert torch.allclose(B.T @ B, torch.eye(5, dtype=torch.float64), atol=1e-12)
    assert float(low_rank_error(wide, B)) <= 1e-24 * float((wide**2).sum()) + 1e-30


def test_bad_input_names_the_argument():
    E = torch.randn(6, 4)
    with pytest.raises(ValueError, match="basis"):
        gamma_r(E, 2 * torch.eye(4)[:, :2])
    with pytest.raises(ValueError, match="basis"):
        low_rank_error(E, torch.eye(3)[:, :2])
    with pytest.raises(ValueError, match=r"\br\b"):
        rank_r_correction(E, 5)
    with pytest.raises(ValueError, match="method"):
        rank_r_correction(E, 2, method="qr")
    with pytest.raises(ValueError, match="generator"):
        rank_r_correction(torch.randn(50, 30), 2, method="randomized")
    with pytest.raises(ValueError, match="residual"):
        rank_r_correction(torch.randn(4), 1)
    with pytest.raises(ValueError, match="residual"):
        gamma_r(torch.tensor([[1.0, float("nan")]]), torch.eye(2))
    with pytest.raises(ValueError, match=r"\bb\b"):
        beta_eff(float("nan"), 0.5)
    with pytest.raises(ValueError, match=r"\bg\b"):
        beta_eff(torch.tensor([0.5]), torch.tensor([float("inf")]))


def test_half_precision():
    E = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)).half()
    corr = rank_r_correction(E, 2)
    assert corr.basis.dtype == torch.float16 and corr.approximation.dtype == torch.float16
    assert beta_eff(torch.tensor([0.5], dtype=torch.bfloat16), 0.5).dtype == torch.bfloat16
