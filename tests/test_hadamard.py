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
from impl.moments import ISOTROPIC_COS, sphere_expected_cos
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


@pytest.mark.theorem("hadamard_mul_transpose")
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


@pytest.mark.theorem("hadamard_mul_transpose")
@pytest.mark.parametrize("d", [256, 1024, 2048])
def test_fwht_large_batches_use_the_same_transform(d):
    """Batches beyond one cache chunk (a full chunk plus a 3-row remainder) agree with the dense
    reference too."""
    x = torch.randn(_CHUNK_ELEMS // d + 3, d, generator=torch.Generator().manual_seed(d))
    n = d.bit_length() - 1
    ref = x.to(torch.float64) @ sylvester_closed_form(n) * 2.0 ** (-n / 2)
    y = fwht(x)
    assert bool(((y.to(torch.float64) - ref).abs() <= elementwise_tol(x, x.dtype, 2.0 ** (-n / 2))).all())


@pytest.mark.theorem("srht_isometry")
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


@pytest.mark.theorem("srht_achieves_isotropic_floor")
@pytest.mark.parametrize("d", [16, 64, 256, 1024])
def test_srht_of_gaussian_keys_sits_at_the_isotropic_floor(d):
    """SRHT is orthogonal, so it maps iid 𝒩(0, 1) keys to iid 𝒩(0, 1) keys: their mean cosSign is
    the exact finite-d value E cosSign = √d·Γ(d/2)/(√π·Γ((d+1)/2)) → √(2/π) (sample mean of N
    rows within z = 5 standard errors), and that value is within (2√¾ − 1)/(2d) of the floor."""
    g = torch.Generator().manual_seed(100 + d)
    N = 2**20 // d
    G = torch.randn(N, d, generator=g, dtype=torch.float64)
    s = random_signs(d, g, dtype=torch.float64)
    c = cos_sign(srht(G, s))
    se = float(c.std()) / math.sqrt(N)
    assert abs(float(c.mean()) - sphere_expected_cos(d)) <= Z * se
    assert 0 < sphere_expected_cos(d) - ISOTROPIC_COS <= ISOTROPIC_COS * (2 * math.sqrt(0.75) - 1) / (2 * d)


@pytest.mark.theorem("srht_achieves_isotropic_floor")
def test_cos_sign_of_one_long_srht_gaussian_vector_converges():
    """(a) Kᵢ iid 𝒩(0,1) ⇒ cosSign (K₀…K_{n−1}) → √(2/π): after an SRHT of length 2¹⁸, 2²⁰,
    within the delta-method tolerance z·std/√n + 2|bias|/n (moments √(2/π), 1, 2√(2/π), 3)."""
    g = torch.Generator().manual_seed(5)
    m1, m2, m3, m4 = math.sqrt(2 / math.pi), 1.0, 2 * math.sqrt(2 / math.pi), 3.0
    grad = (1.0, -m1 / 2)
    var = grad[0] ** 2 * (m2 - m1**2) + 2 * grad[0] * grad[1] * (m3 - m1 * m2) + grad[1] ** 2 * (m4 - m2**2)
    bias = abs(-(m3 - m1 * m2) / 2 + 3 * m1 / 8 * (m4 - m2**2))
    for n in (18, 20):
        x = torch.randn(2**n, generator=g, dtype=torch.float64)
        y = srht(x, random_signs(2**n, g, dtype=torch.float64))
        tol = Z * math.sqrt(var / 2**n) + 2 * bias / 2**n
        assert abs(float(cos_sign(y)) - ISOTROPIC_COS) <= tol


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
