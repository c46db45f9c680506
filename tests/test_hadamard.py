"""Properties of impl.hadamard against SPEC §2 (Sylvester Hadamard matrix, SRHT).

Reference: the dense Sylvester matrix built here from its closed form
`(H_n)ᵢⱼ = (−1)^{popcount(i & j)}` (independent of the recursion used by impl) and applied in
float64. Error bounds, u = eps/2 of the tested dtype:
* elementwise: every output is a signed sum of the d inputs; however it is grouped (dense GEMM
  or Kronecker factors), each stage of size f adds ≤ (f−1)·u·‖x‖₁ and the stage sizes sum to
  ≤ d, so |Δyᵢ| ≤ (d + 2)·u·‖x‖₁·scale (the +2 covers the folded normalisation);
* in norm: a stage with the normalised f × f block has ‖Δ‖ ≤ γ_f·√f·‖x‖ (each output is at
  most ‖x-block‖ by Cauchy–Schwarz), and Σ f^{3/2} ≤ d^{3/2}: ‖Δy‖ ≤ (d^{3/2} + 2)·u·‖x‖.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import mpmath
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import eps, real_tensors, seeds

from impl.hadamard import (
    _CHUNK_ELEMS,
    fwht,
    hadamard_matrix,
    random_signs,
    srht,
    srht_inverse,
)
from impl.sign_quant import cos_sign

Z = 5.0


@functools.lru_cache(maxsize=None)
def sylvester_closed_form(n: int) -> torch.Tensor:
    """(H_n)ᵢⱼ = (−1)^{popcount(i & j)}, float64 (cached; never modified by the tests)."""
    idx = torch.arange(2**n)
    bits = idx[:, None] & idx[None, :]
    parity = torch.zeros_like(bits)
    while bool((bits > 0).any()):
        parity ^= bits & 1
        bits = bits >> 1
    return (1 - 2 * parity).to(torch.float64)


def elementwise_tol(x: torch.Tensor, dtype: torch.dtype, scale: float) -> torch.Tensor:
    d = x.shape[-1]
    return (d + 2) * eps(dtype) * x.to(torch.float64).abs().sum(dim=-1, keepdim=True) * scale + 1e-300


def norm_tol(d: int, dtype: torch.dtype) -> float:
    return (d**1.5 + 2) * eps(dtype)


pow2_tensors = st.integers(0, 11).flatmap(
    lambda m: real_tensors(
        d=2**m,
        batch_shapes=st.sampled_from([(), (1,), (5,), (2, 3)]),
        kinds=("gaussian", "heavy", "sparse", "ties", "onehot", "lattice"),
    )
)


@pytest.mark.theorem("hadamard_mul_transpose")
@pytest.mark.parametrize("n", range(0, 11))
def test_hadamard_mul_transpose(n):
    """H_n·H_nᵀ = 2ⁿ·I exactly; H_n is Sylvester's matrix [[H, H], [H, −H]]."""
    H = hadamard_matrix(n, dtype=torch.float64)
    assert H.shape == (2**n, 2**n)
    assert torch.equal(H, sylvester_closed_form(n))
    assert torch.equal(H @ H.T, 2.0**n * torch.eye(2**n, dtype=torch.float64))
    if n:
        h = hadamard_matrix(n - 1, dtype=torch.float64)
        assert torch.equal(H, torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0))
    assert torch.equal(hadamard_matrix(n, dtype=torch.float32), H.float())


@pytest.mark.exercises("hadamard_mul_transpose")
@given(x=pow2_tensors, normalize=st.booleans())
def test_fwht_matches_dense_sylvester(x, normalize, device):
    """fwht(x) = H_n x (× 2^{−n/2} when normalize), for any leading shape."""
    d = x.shape[-1]
    n = d.bit_length() - 1
    scale = 2.0 ** (-n / 2) if normalize else 1.0
    y = fwht(x.to(device), normalize=normalize).cpu()
    assert y.shape == x.shape and y.dtype == x.dtype
    ref = (x.to(torch.float64) @ sylvester_closed_form(n)) * scale
    assert bool(((y.to(torch.float64) - ref).abs() <= elementwise_tol(x, x.dtype, scale)).all())


@pytest.mark.exercises("hadamard_mul_transpose")
@pytest.mark.parametrize("d", [256, 1024, 2048])
def test_fwht_large_batches_use_the_same_transform(d):
    """Batches beyond one cache chunk (a full chunk plus a 3-row remainder) agree with the dense
    reference too."""
    x = torch.randn(_CHUNK_ELEMS // d + 3, d, generator=torch.Generator().manual_seed(d))
    n = d.bit_length() - 1
    ref = x.to(torch.float64) @ sylvester_closed_form(n) * 2.0 ** (-n / 2)
    y = fwht(x)
    assert bool(((y.to(torch.float64) - ref).abs() <= elementwise_tol(x, x.dtype, 2.0 ** (-n / 2))).all())


@pytest.mark.exercises("srht_isometry")
@given(x=pow2_tensors)
def test_fwht_normalized_is_an_orthogonal_involution(x, device):
    """(2^{−n/2} H_n)² = I: applying the normalised transform twice gives x back, norms kept."""
    d = x.shape[-1]
    xd = x.to(device)
    y = fwht(xd)
    back = fwht(y).cpu().to(torch.float64)
    x64 = x.to(torch.float64)
    nx = x64.norm(dim=-1)
    assert bool(((back - x64).norm(dim=-1) <= 2 * norm_tol(d, x.dtype) * nx + 1e-300).all())
    ny = y.cpu().to(torch.float64).norm(dim=-1)
    assert bool(((ny - nx).abs() <= norm_tol(d, x.dtype) * nx + 1e-300).all())


@pytest.mark.theorem("srht_isometry")
@given(x=pow2_tensors, seed=seeds, per_row=st.booleans())
def test_srht_is_the_scaled_hadamard_of_the_signed_input(x, seed, per_row, device):
    """srht(x, s) = 2^{−n/2} H_n (s ⊙ x) and sqnorm (srht x) = sqnorm x; srht_inverse undoes it.
    One shared diagonal D (signs of shape (d,)) or one per row."""
    d = x.shape[-1]
    n = d.bit_length() - 1
    g = torch.Generator().manual_seed(seed)
    shape = x.shape if per_row else (d,)
    s = (2 * torch.randint(0, 2, shape, generator=g) - 1).to(x.dtype)
    y = srht(x.to(device), s.to(device)).cpu()
    assert y.dtype == x.dtype and y.shape == x.shape
    scale = 2.0 ** (-n / 2)
    ref = ((s.to(torch.float64) * x.to(torch.float64)) @ sylvester_closed_form(n)) * scale
    assert bool(((y.to(torch.float64) - ref).abs() <= elementwise_tol(x, x.dtype, scale)).all())
    x64 = x.to(torch.float64)
    sq_x = (x64 * x64).sum(dim=-1)
    sq_y = (y.to(torch.float64) ** 2).sum(dim=-1)
    assert bool(((sq_y - sq_x).abs() <= 2.5 * norm_tol(d, x.dtype) * sq_x + 1e-300).all())
    back = srht_inverse(y.to(device), s.to(device)).cpu().to(torch.float64)
    assert bool(((back - x64).norm(dim=-1) <= 2 * norm_tol(d, x.dtype) * sq_x.sqrt() + 1e-300).all())


def mean_cos_sphere(k: int) -> float:
    """E cosSign of a standard Gaussian (equivalently a uniform unit vector) in ℝᵏ:
    √k·E|u₁| = √k·Γ(k/2)/(√π·Γ((k+1)/2)), by mpmath at 30 digits (independent of impl.moments)."""
    with mpmath.workdps(30):
        kk = mpmath.mpf(k)
        return float(mpmath.sqrt(kk) * mpmath.gamma(kk / 2) / (mpmath.sqrt(mpmath.pi) * mpmath.gamma((kk + 1) / 2)))


def mean_abs_rademacher_sum(k: int) -> Fraction:
    """E|ε₁ + … + ε_k| for iid fair signs, exactly, by enumerating the binomial law."""
    return Fraction(sum(math.comb(k, m) * abs(2 * m - k) for m in range(k + 1)), 2**k)


def mean_within(c: torch.Tensor, expected: float, extra: float = 0.0) -> tuple[bool, float, float]:
    """Whether the sample mean of iid values c is within Z standard errors (+ extra) of expected."""
    se = float(c.std()) / math.sqrt(c.numel())
    return abs(float(c.mean()) - expected) <= Z * se + extra, float(c.mean()), Z * se + extra


@pytest.mark.exercises("srht_achieves_isotropic_floor")
@pytest.mark.parametrize("d", [16, 64, 256, 1024])
def test_srht_of_gaussian_keys_sits_at_the_isotropic_floor(d):
    """SRHT is orthogonal, so it maps iid 𝒩(0, 1) keys to iid 𝒩(0, 1) keys: their mean cosSign is
    the exact finite-d value E cosSign = √d·Γ(d/2)/(√π·Γ((d+1)/2)) → √(2/π) (sample mean of N
    rows within z = 5 standard errors), and that value is within (2√¾ − 1)/(2d) of the floor.
    (Any orthogonal map, the identity included, passes this: it does not tell SRHT from doing
    nothing — the structured-input tests below do.)"""
    g = torch.Generator().manual_seed(100 + d)
    N = 2**20 // d
    G = torch.randn(N, d, generator=g, dtype=torch.float64)
    s = random_signs(d, g, dtype=torch.float64)
    c = cos_sign(srht(G, s))
    ok, mean, tol = mean_within(c, mean_cos_sphere(d))
    assert ok, (mean, mean_cos_sphere(d), tol)
    floor = math.sqrt(2 / math.pi)
    assert 0 < mean_cos_sphere(d) - floor <= floor * (2 * math.sqrt(0.75) - 1) / (2 * d)


@pytest.mark.theorem("srht_achieves_isotropic_floor")
def test_cos_sign_of_one_long_srht_gaussian_vector_converges():
    """(a) Kᵢ iid 𝒩(0,1) ⇒ cosSign (K₀…K_{n−1}) → √(2/π): for n = 2¹⁴, 2¹⁸, 2²⁰, of the Gaussian
    vector itself and after an SRHT (still iid Gaussian), within the delta-method tolerance
    z·std/√n + 2|bias|/n (moments √(2/π), 1, 2√(2/π), 3; √(2/π) from math, not from impl);
    (b) the SRHT keeps sqnorm, to the rounding bound (n^{3/2} + 2)·eps of the module docstring."""
    g = torch.Generator().manual_seed(5)
    floor = math.sqrt(2 / math.pi)
    m1, m2, m3, m4 = floor, 1.0, 2 * floor, 3.0
    grad = (1.0, -m1 / 2)
    var = grad[0] ** 2 * (m2 - m1**2) + 2 * grad[0] * grad[1] * (m3 - m1 * m2) + grad[1] ** 2 * (m4 - m2**2)
    bias = abs(-(m3 - m1 * m2) / 2 + 3 * m1 / 8 * (m4 - m2**2))
    for n in (14, 18, 20):
        x = torch.randn(2**n, generator=g, dtype=torch.float64)
        y = srht(x, random_signs(2**n, g, dtype=torch.float64))
        tol = Z * math.sqrt(var / 2**n) + 2 * bias / 2**n
        assert abs(float(cos_sign(x)) - floor) <= tol
        assert abs(float(cos_sign(y)) - floor) <= tol
        sq_x, sq_y = float((x * x).sum()), float((y * y).sum())
        assert abs(sq_y - sq_x) <= 2.5 * norm_tol(2**n, torch.float64) * sq_x


# ----------------------------------------------------------------------------- structured keys
#
# On iid Gaussian keys every orthogonal map, the identity included, gives the isotropic floor, so
# those tests cannot tell the SRHT from doing nothing. Structured keys can: the identity keeps
# their cosine (1/√d for one-hot, √(k/d)·… for sparse keys, ≈ 1 for a DC mean), the SRHT mixes
# the coordinates. Means over N iid rows are compared with exact expectations within Z = 5
# standard errors (two-sided normal tail ≈ 6e-7 per assertion; fixed seeds).

HEAD_DIMS = (64, 128, 256)


@pytest.mark.exercises("srht_achieves_isotropic_floor")
@pytest.mark.exercises("cos_eq_one_iff_sign_lattice")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_srht_maps_one_hot_keys_onto_the_sign_lattice(d, dtype):
    """One-hot e_i: cosSign e_i = 1/√d (the identity leaves it there), while
    SRHT e_i = ±2^{−n/2}·H_{:,i} has every |coordinate| = 2^{−n/2}: a sign-lattice point, cosSign = 1 —
    not √(2/π). The SRHT's Gaussian heuristic is about generic keys, not every key (registry note).
    Bounds: each output coordinate is one signed input, so |Δyᵢ| ≤ (d + 2)·u·2^{−n/2} (module
    docstring); a relative spread δ of the |yᵢ| costs 1 − cosSign ≤ δ², and cos_sign adds (d + 2)·eps."""
    n = d.bit_length() - 1
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        s = random_signs(d, g, dtype=dtype)
        X = torch.eye(d, dtype=dtype)
        raw = cos_sign(X).to(torch.float64)
        assert bool(((raw - 1 / math.sqrt(d)).abs() <= (d + 2) * eps(dtype)).all())
        Y = srht(X, s)
        mag = Y.to(torch.float64).abs()
        delta = (d + 2) * eps(dtype) / 2
        assert bool(((mag - 2.0 ** (-n / 2)).abs() <= delta * 2.0 ** (-n / 2)).all())
        cos = cos_sign(Y).to(torch.float64)
        assert bool(((1 - cos).abs() <= (2 * delta) ** 2 + (d + 2) * eps(dtype)).all())


@pytest.mark.exercises("srht_achieves_isotropic_floor")
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_srht_lifts_sparse_gaussian_keys_to_the_floor(d):
    """k-sparse keys (k random coordinates, iid 𝒩(0, 1) values, zeros elsewhere), k = 4 and d/4.

    Exact expectations, c_k := √k·Γ(k/2)/(√π·Γ((k+1)/2)) (the mean cosSign of a Gaussian in ℝᵏ):
    * identity: cosSign x = √(k/d)·cosSign(x_S), so E = √(k/d)·c_k — ≈ √(k/d)·√(2/π), small;
    * SRHT: with D fixed, (D x)_S is again iid 𝒩(0, 1), so y = 2^{−n/2} H_{:,S} g with
      g ~ 𝒩(0, I_k); write g = ρu, u uniform on the sphere: cosSign y = (1/d) Σ_j |⟪h_j, u⟫|
      with h_j = H_{j,S}, ‖h_j‖ = √k, and E|⟪h_j, u⟫| = √k·E|u₁|, so E cosSign y = c_k exactly,
      which is within √(2/π)·(2√¾ − 1)/(2k) of √(2/π) (Kershaw).
    For three seeds (three D), the sample means of N = 1024 rows sit within z = 5 standard errors
    of these, and the two expectations are ≥ 20 standard errors apart, so the identity map fails
    the SRHT check."""
    N = 1024
    for k in (4, d // 4):
        c_k = mean_cos_sphere(k)
        floor = math.sqrt(2 / math.pi)
        assert 0 < c_k - floor <= floor * (2 * math.sqrt(0.75) - 1) / (2 * k)
        for seed in range(3):
            g = torch.Generator().manual_seed(1000 * d + 10 * k + seed)
            support = torch.rand(N, d, generator=g).argsort(dim=-1)[:, :k]
            X = torch.zeros(N, d, dtype=torch.float64)
            X.scatter_(1, support, torch.randn(N, k, generator=g, dtype=torch.float64))
            s = random_signs(d, g, dtype=torch.float64)
            raw, rot = cos_sign(X), cos_sign(srht(X, s))
            ok, mean, tol = mean_within(raw, math.sqrt(k / d) * c_k)
            assert ok, ("identity", d, k, seed, mean, math.sqrt(k / d) * c_k, tol)
            ok, mean, tol = mean_within(rot, c_k)
            assert ok, ("srht", d, k, seed, mean, c_k, tol)
            assert c_k - math.sqrt(k / d) * c_k > 20 * tol  # the identity cannot pass the SRHT check


@pytest.mark.exercises("srht_achieves_isotropic_floor")
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_srht_mixes_mean_dominated_keys(d):
    """Mean-dominated keys x_t = c·m + σ·g_t (σ/c = 10⁻⁴, g_t iid 𝒩(0, I)) whose mean direction
    m = 1_S is k outlier channels (S random per row) — k = d is the DC mean c·𝟙, which already
    lies on the sign lattice. Each of the N = 2048 rows has its own random D_t (its own seed of
    the SRHT), so the rows are iid.

    Exact expectations for the pure mean: the identity gives cosSign 1_S = √(k/d) (= 1 for the DC
    mean); the SRHT gives y = 2^{−n/2} H D 1_S with yⱼ = 2^{−n/2} Σ_{i∈S} Hⱼᵢ sᵢ, a sum of k iid
    fair signs for each j (D uniform), and ‖y‖ = √k, so E cosSign y = E|ε₁ + … + ε_k| / √k
    (exact binomial sum; → √(2/π)). A plain Hadamard without D would send the DC mean to
    d·e₀ (cosSign 1/√d). The noise moves each cosine by at most
    δ_t = 2σ‖g_t‖ / (c‖m‖) (cosSign is ‖·‖-Lipschitz on unit vectors: |l1 â − l1 b̂| ≤ √d‖â − b̂‖,
    and ‖â − b̂‖ ≤ 2‖a − b‖/‖b‖; the SRHT keeps every norm), which is added to the tolerance."""
    N, ratio = 2048, 1e-4
    n = d.bit_length() - 1
    for k in (4, 16, d):
        srht_mean = float(mean_abs_rademacher_sum(k)) / math.sqrt(k)
        g = torch.Generator().manual_seed(7000 * d + k)
        support = torch.rand(N, d, generator=g).argsort(dim=-1)[:, :k]
        M = torch.zeros(N, d, dtype=torch.float64).scatter_(1, support, 1.0)
        noise = torch.randn(N, d, generator=g, dtype=torch.float64)
        X = M + ratio * noise  # c = 1
        delta = 2 * ratio * noise.norm(dim=-1) / math.sqrt(k)
        S = (2 * torch.randint(0, 2, (N, d), generator=g) - 1).to(torch.float64)
        raw, rot = cos_sign(X), cos_sign(srht(X, S))
        assert bool(((raw - math.sqrt(k / d)).abs() <= delta + (d + 2) * eps(torch.float64)).all())
        ok, mean, tol = mean_within(rot, srht_mean, float(delta.mean()))
        assert ok, ("srht", d, k, mean, srht_mean, tol)
        assert abs(srht_mean - math.sqrt(k / d)) > 10 * tol  # the identity is far outside
        if k == d:  # without D the DC mean goes to one coordinate
            y = fwht(torch.ones(d, dtype=torch.float64))
            assert abs(float(cos_sign(y)) - 1 / math.sqrt(d)) <= (d + 2) * eps(torch.float64)
            assert abs(float(y[0]) - 2.0 ** (n / 2)) <= elementwise_tol(torch.ones(1, d), torch.float64, 1.0).item()


def test_random_signs_are_fair_and_reproducible():
    s = random_signs(100_000, torch.Generator().manual_seed(3))
    assert bool(((s == 1) | (s == -1)).all()) and s.dtype == torch.float32
    assert abs(float(s.mean())) <= Z / math.sqrt(s.numel())  # ±1 has variance 1
    assert torch.equal(s, random_signs(100_000, torch.Generator().manual_seed(3)))


@given(x=real_tensors(min_d=1, max_d=100))
def test_fwht_pad_is_zero_padding(x):
    """pad=True: the transform of x zero-padded to the next power of two."""
    d = x.shape[-1]
    d2 = 1 << (d - 1).bit_length()
    padded = torch.nn.functional.pad(x, (0, d2 - d))
    assert torch.equal(fwht(x, pad=True), fwht(padded))
    if d != d2:
        with pytest.raises(ValueError, match=r"x\.shape\[-1\].*power of two"):
            fwht(x)


def test_fwht_is_differentiable():
    """The transform is linear and symmetric: ∇ₓ ⟪fwht x, w⟫ = fwht w (also for d above the
    dense size, where the factorised path is used)."""
    for d in (8, 512):
        x = torch.randn(3, d, dtype=torch.float64, requires_grad=True)
        w = torch.randn(3, d, dtype=torch.float64)
        (fwht(x) * w).sum().backward()
        assert torch.allclose(x.grad, fwht(w), rtol=0, atol=norm_tol(d, torch.float64) * float(w.abs().sum()))


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(half):
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)).to(half)
    s = random_signs(64, torch.Generator().manual_seed(1))
    assert fwht(x).dtype == half
    assert torch.equal(fwht(x), fwht(x.float()).to(half))
    assert torch.equal(srht(x, s), srht(x.float(), s).to(half))


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match=r"\bx\b.*finite"):
        fwht(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"x\.shape\[-1\]"):
        fwht(torch.ones(2, 6))
    with pytest.raises(ValueError, match=r"\bx\b"):
        fwht(torch.tensor(1.0))
    with pytest.raises(ValueError, match="signs"):
        srht(torch.ones(4), torch.ones(8))
    with pytest.raises(ValueError, match="signs"):
        srht(torch.ones(4), torch.tensor([1.0, -1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"x\.shape\[-1\]"):
        srht(torch.ones(6), torch.ones(6))
    with pytest.raises(ValueError, match="signs"):
        srht_inverse(torch.ones(4), torch.tensor([2.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"\bn\b"):
        hadamard_matrix(-1)
    with pytest.raises(ValueError, match=r"\bd\b"):
        random_signs(0, torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        random_signs(4, None)
