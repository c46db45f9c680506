"""Fitting key codecs and measuring their quality."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.cache.store import KeyCodec
from impl.calibration.fit import codec_quality, fit_codec, srht_rotation
from impl.moments import ISOTROPIC_FLOOR
from impl.residual import beta_eff
from impl.rotation import random_orthogonal


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
    assert codec.heads == 2 and codec.dim == 16 and codec.rank == 3  # KeyCodec validated R, B
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
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(0, 16), center=st.booleans())
@settings(max_examples=15)
def test_measured_beta_eff_equals_the_composition_law(seed, r, center):
    keys = _anisotropic_keys(2, 200, 16, seed)
    codec, _ = fit_codec(keys, rotation="srht", center=center, rank=r, seed=seed)
    for q in codec_quality(codec, keys):
        # β_eff is measured from ‖e − BBᵀe‖² directly; the law composes β and γ (float64 sums)
        assert q.beta_eff == pytest.approx(beta_eff(q.beta_energy, q.gamma), abs=1e-12)
        assert max(q.beta_energy, q.gamma) <= q.beta_eff + 1e-12 <= 1 + 1e-12
        if r == 16:
            assert q.beta_eff == pytest.approx(1.0, abs=1e-9)  # full-rank correction is lossless


@pytest.mark.theorem("svd_topk_maximizes_gammaR")
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(1, 8))
@settings(max_examples=15)
def test_svd_basis_captures_more_residual_energy_than_any_other_frame(seed, r):
    keys = _anisotropic_keys(1, 300, 16, seed)
    codec, _ = fit_codec(keys, rotation="identity", center=True, rank=r, seed=seed)
    g = torch.Generator().manual_seed(seed)
    other = KeyCodec(codec.mean, codec.rotation, torch.linalg.qr(torch.randn(1, 16, r, generator=g)).Q)
    assert codec_quality(codec, keys)[0].gamma >= codec_quality(other, keys)[0].gamma - 1e-12


@pytest.mark.theorem("centered_energy_accounting")
def test_centring_quantities_are_consistent():
    keys = _anisotropic_keys(1, 400, 16, 7, mean=10.0)
    codec, _ = fit_codec(keys, rotation="identity", center=True, rank=0)
    q = codec_quality(codec, keys)[0]
    y = keys[0].double() - codec.mean[0].double()
    assert q.rho == pytest.approx(float((y ** 2).sum() / (keys[0].double() ** 2).sum()), rel=1e-12)
    assert q.beta_c == pytest.approx(1 - q.rho * (1 - q.beta), abs=1e-12)
    assert q.rho < 0.5  # the mean carries most of the energy of these keys
    assert q.beta_c >= q.beta


def test_learned_rotation_beats_srht_on_anisotropic_keys():
    keys = _anisotropic_keys(1, 1024, 16, 11)
    srht, _ = fit_codec(keys, rotation="srht", center=True)
    learned, fits = fit_codec(keys, rotation="learned", center=True, steps=150, lr=0.05)
    assert codec_quality(learned, keys)[0].beta > codec_quality(srht, keys)[0].beta
    assert fits[0].train_curve[-1] > fits[0].train_curve[0]


@pytest.mark.theorem("srht_achieves_isotropic_floor")
def test_srht_codec_on_isotropic_keys_sits_at_the_floor():
    """iid Gaussian keys: after the SRHT each key is still iid Gaussian, so the mean per-vector β
    is E[cos²] of a Gaussian vector; for d = 256, E cos² = 2/π + O(1/d), and the average over T
    keys has standard deviation ≈ sd(cos²)/√T ≤ 0.05/√T (z = 5 for a 1e-6 false-alarm rate)."""
    d, T = 256, 4096
    keys = torch.randn(1, T, d, generator=torch.Generator().manual_seed(0))
    codec, _ = fit_codec(keys, rotation="srht", center=False)
    beta = codec_quality(codec, keys)[0].beta
    assert abs(beta - ISOTROPIC_FLOOR) <= 5 * 0.05 / math.sqrt(T) + 2.0 / d


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rotation="hadamard"), "rotation must be one of"),
        (dict(rank=17), r"rank must be an integer in \[0, d = 16\]"),
        (dict(heldout=torch.zeros(2, 5, 8)), r"heldout must have shape \(H=1, T', d=16\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_codec(torch.randn(1, 10, 16), **kwargs)


def test_srht_rotation_needs_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        srht_rotation(24, torch.Generator())
