"""Bit packing of sign codes, and scores computed from the packed form."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from impl.cache.packing import (
    pack_bits,
    pack_signs,
    packed_sign_scores,
    packed_width,
    unpack_bits,
    unpack_signs,
)
from impl.sign_quant import sign_vec


@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 300), rows=st.integers(1, 6),
       zeros=st.floats(0.0, 0.5))
def test_pack_round_trip_and_zero_maps_to_plus_one(seed, d, rows, zeros):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, d, generator=g)
    x = torch.where(torch.rand(rows, d, generator=g) < zeros, torch.zeros_like(x), x)
    p = pack_signs(x)
    assert p.dtype == torch.uint8 and p.shape == (rows, packed_width(d))
    assert torch.equal(unpack_signs(p, d), sign_vec(x))  # sgn 0 = +1, as in SPEC §1
    bits = torch.rand(rows, d, generator=g) < 0.5
    assert torch.equal(unpack_bits(pack_bits(bits), d), bits)


def test_bit_order_is_little_endian_within_a_byte():
    bits = torch.zeros(1, 10, dtype=torch.bool)
    bits[0, 0] = bits[0, 9] = True
    assert pack_bits(bits).tolist() == [[1, 2]]


@pytest.mark.parametrize("method", ["unpack", "lut"])
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 130), T=st.integers(0, 40), Q=st.integers(1, 4),
       chunk=st.integers(1, 50))
def test_packed_scores_equal_dense_sign_scores(method, seed, d, T, Q, chunk):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(2, T, d, generator=g)
    q = torch.randn(2, Q, d, generator=g) * 10.0 ** torch.randint(-3, 4, (1,), generator=g).item()
    got = packed_sign_scores(q, pack_signs(k), d, method=method, chunk_tokens=chunk)
    ref = (q.double() @ sign_vec(k).double().transpose(-1, -2))
    assert got.shape == (2, Q, T)
    # a float32 sum of d terms ±qᵢ: |error| ≤ d·eps·‖q‖₁ (Higham's bound γ_d ≈ d·u for recursive
    # summation, doubled for the LUT path's 2⟪q, b⟫ − Σq rewrite)
    bound = 2 * d * torch.finfo(torch.float32).eps * q.double().abs().sum(-1, keepdim=True)
    assert bool(((got.double() - ref).abs() <= bound).all())


def test_half_queries_are_computed_in_float32():
    k = torch.randn(5, 16)
    q = torch.randn(2, 16).half()
    out = packed_sign_scores(q, pack_signs(k), 16)
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: pack_bits(torch.zeros(3, 4)), "bits must be a bool tensor"),
        (lambda: pack_signs(torch.tensor([1.0, float("nan")])), "x must be finite"),
        (lambda: pack_signs(torch.tensor([1, 2])), "x must be a floating-point tensor"),
        (lambda: unpack_bits(torch.zeros(2, 3, dtype=torch.uint8), 8), r"packed must have last dimension ⌈d/8⌉ = 1"),
        (lambda: packed_sign_scores(torch.zeros(1, 7), torch.zeros(2, 1, dtype=torch.uint8), 8), "q must have last dimension d = 8"),
        (lambda: packed_sign_scores(torch.zeros(1, 8), torch.zeros(2, 1, dtype=torch.uint8), 8, method="x"), "method must be"),
        (lambda: packed_width(0), "d must be a positive dimension"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
