"""Fitting key codecs and measuring their quality."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dataclasses import replace

from impl.calibration.fit import fit_codec
from impl.calibration.quality import codec_quality
from impl.hadamard import srht_matrix
from impl.moments import gg_beta
from impl.residual import beta_eff
from impl.rotation import random_orthogonal
from impl.sign_quant import quantize_1bit, dequantize_1bit

EPS32 = torch.finfo(torch.float32).eps


def _anisotropic_keys(H, T, d, seed, mean=4.0):
    """Keys with a dominant DC mean and a few strong directions, like real attention keys."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(1, -1, d)
    z = torch.randn(H, T, d, generator=g) * scales
    Q = torch.stack([random_orthogonal(d, g) for _ in range(H)])
    m = mean * torch.randn(H, 1, d, generator=g)
    return z @ Q.transpose(-1, -2) + m


@pytest.mark.parametrize("rotation", ["identity", "srht", "learned", "learned_srht"])
def test_fitted_codec_is_valid(rotation):
    keys = _anisotropic_keys(2, 256, 16, 0)
    codec, fits = fit_codec(keys, rotation=rotation, center=True, rank=3, steps=20, seed=1)
    assert codec.heads == 2 and codec.dim == 16 and codec.rank == 3  # TransformCodec validated R, B
    if rotation in ("identity", "srht"):
        assert torch.allclose(codec.mean, keys.mean(1), atol=1e-5)
        assert fits[0].train_curve == []
    else:
        assert len(fits[0].train_curve) == 20


def test_fit_is_deterministic_under_a_seed():
    keys = _anisotropic_keys(1, 128, 16, 3)
    a, _ = fit_codec(keys, rotation="learned", steps=10, seed=5)
    b, _ = fit_codec(keys, rotation="learned", steps=10, seed=5)
    assert torch.equal(a.rotation, b.rotation) and torch.equal(a.basis, b.basis)


@pytest.mark.theorem("beta_eff_formula")
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(0, 16), center=st.booleans(), bits=st.integers(1, 3))
@settings(max_examples=15)
def test_decoded_beta_eff_obeys_the_composition_law(seed, r, center, bits):
    """β_eff measured by decoding through the cache's own code (encode → decode, float32 side values),
    `1 − Σ‖y − ŷ‖² / Σ‖y‖²`, against the law `1 − (1 − β)(1 − γ)` composed from the code's energy β and
    the basis' γ — two routes that share no sum."""
    keys = _anisotropic_keys(2, 200, 16, seed)
    codec, _ = fit_codec(keys, rotation="srht", center=center, rank=r, seed=seed, bits=bits)
    codec = replace(codec, side_dtype=torch.float32)
    k_hat = codec.decode(codec.encode(keys.unsqueeze(0)))[0].double()
    y = codec.transform(keys.double().unsqueeze(0))[0]
    y_hat = codec.transform(k_hat.unsqueeze(0))[0]
    for h, q in enumerate(codec_quality(codec, keys)):
        decoded = 1 - float(((y[h] - y_hat[h]) ** 2).sum() / (y[h] ** 2).sum())
        # float32 α, coefficients and decode: each ŷ coordinate errs by ≲ 8·d·eps·‖y‖, so the
        # squared error moves by ≲ 2·‖y − ŷ‖·δ + δ² ≤ 3·δ·‖y‖ summed over tokens
        bound = 3 * 8 * 16 * EPS32
        assert decoded == pytest.approx(beta_eff(q.beta_energy, q.gamma), abs=bound)
        assert max(q.beta_energy, q.gamma) <= q.beta_eff + 1e-12 <= 1 + 1e-12
        if r == 16:
            assert decoded == pytest.approx(1.0, abs=bound)  # a full-rank correction is lossless


@pytest.mark.theorem("svd_topk_maximizes_gammaR")
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(1, 8))
@settings(max_examples=15)
def test_svd_basis_captures_more_residual_energy_than_any_other_frame(seed, r):
    keys = _anisotropic_keys(1, 300, 16, seed)
    codec, _ = fit_codec(keys, rotation="identity", center=True, rank=r, seed=seed)
    g = torch.Generator().manual_seed(seed)
    other = replace(codec, basis=torch.linalg.qr(torch.randn(1, 16, r, generator=g)).Q)
    assert codec_quality(codec, keys)[0].gamma >= codec_quality(other, keys)[0].gamma - 1e-12


@pytest.mark.theorem("centered_energy_accounting")
def test_centred_code_loses_one_minus_beta_of_the_residual_energy_share():
    """With the mean stored exactly, the energy the 1-bit code loses, as a share of the key energy,
    is (1 − β)·ρ — β the code's energy-weighted quality of the centred residuals, ρ their energy
    share (centered_energy_accounting, summed over tokens). The left side is computed from explicit
    1-bit quantisation of the centred keys (impl.sign_quant), the right side from codec_quality."""
    keys = _anisotropic_keys(1, 400, 16, 7, mean=10.0)
    codec, _ = fit_codec(keys, rotation="identity", center=True, rank=0)
    q = codec_quality(codec, keys)[0]
    k = keys[0].double()
    v = k - k.mean(0)
    code = quantize_1bit(v)
    lost = float(((v - dequantize_1bit(code.signs, code.scale)) ** 2).sum() / (k ** 2).sum())
    # codec_quality rounds α to float16: a relative perturbation ≤ 2⁻¹¹ of each scale moves the loss
    # by ≤ 2·2⁻¹¹·(stored energy share ≤ ρ)
    assert lost == pytest.approx((1 - q.beta_energy) * q.rho, abs=2 * 2**-11 * q.rho + 1e-12)
    assert q.rho < 0.5  # the mean carries most of the energy of these keys
    assert q.beta_c >= q.beta


def test_learned_rotation_beats_srht_on_anisotropic_keys():
    keys = _anisotropic_keys(1, 1024, 16, 11)
    srht, _ = fit_codec(keys, rotation="srht", center=True)
    learned, fits = fit_codec(keys, rotation="learned", center=True, steps=150, lr=0.05)
    assert codec_quality(learned, keys)[0].beta > codec_quality(srht, keys)[0].beta
    assert fits[0].train_curve[-1] > fits[0].train_curve[0]


@pytest.mark.exercises("srht_achieves_isotropic_floor")
def test_srht_codec_on_isotropic_keys_sits_at_the_floor():
    """iid Gaussian keys: after the SRHT each key is still iid Gaussian, so the mean per-vector β
    is E[cos²] of a Gaussian vector; for d = 256, E cos² = 2/π + O(1/d), and the average over T
    keys has standard deviation ≈ sd(cos²)/√T ≤ 0.05/√T (z = 5 for a 1e-6 false-alarm rate)."""
    d, T = 256, 4096
    keys = torch.randn(1, T, d, generator=torch.Generator().manual_seed(0))
    codec, _ = fit_codec(keys, rotation="srht", center=False)
    beta = codec_quality(codec, keys)[0].beta
    assert abs(beta - gg_beta(2)) <= 5 * 0.05 / math.sqrt(T) + 2.0 / d


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rotation="hadamard"), "rotation must be one of"),
        (dict(rank=17), r"rank must be an integer in \[0, d = 16\]"),
        (dict(heldout=torch.zeros(2, 5, 8)), r"heldout must have shape \(H=1, T', d=16\)"),
        (dict(heldout=torch.full((1, 5, 16), float("nan"))), "heldout must be finite"),
        (dict(lr=float("inf"), rotation="learned"), "lr must be a finite number > 0"),
        (dict(bits=5), r"bits must be an integer in \[1, 4\]"),
        (dict(levels="uniform"), "levels must be one of"),
        (dict(objective="l2"), "objective must be one of"),
        (dict(coef_bits=12), "coef_bits must be one of"),
        (dict(rank=True), r"rank must be an integer in \[0, d = 16\]"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_codec(torch.randn(1, 10, 16), **kwargs)


@pytest.mark.parametrize("d, message", [(24, "d must be a power of two"), (0, r"d must be an integer ≥ 1")])
def test_srht_matrix_rejects_bad_dimensions(d, message):
    with pytest.raises(ValueError, match=message):
        srht_matrix(d, torch.Generator())
