"""Bit packing of sign codes and of b-bit level codes, and scores computed from the packed form."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import eps

from impl.cache.packing import (
    pack_bits,
    pack_codes,
    pack_signs,
    packed_code_width,
    packed_level_scores,
    packed_sign_scores,
    packed_width,
    unpack_bits,
    unpack_codes,
    unpack_signs,
)
from impl.multilevel import gaussian_lloyd_max
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


# ===================================================================================== b-bit codes
# SPEC §7: a b-bit code of dimension d is a little-endian bit stream — bit j of idxᵢ is stream
# bit i·b + j, stream bit 8c + j is bit j of byte c — ⌈d·b/8⌉ bytes, the padding zero. The
# reference below is Python's own integer ↔ little-endian bytes conversion, independent of torch.

INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


def reference_pack(idx: list[int], b: int) -> bytes:
    """Σᵢ idxᵢ·2^{i·b} as ⌈d·b/8⌉ little-endian bytes."""
    value = sum(v << (i * b) for i, v in enumerate(idx))
    return value.to_bytes((len(idx) * b + 7) // 8, "little")


@st.composite
def index_codes(draw, max_d: int = 70):
    b = draw(st.integers(1, 8))
    d = draw(st.integers(1, max_d))
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    hi = 2**b
    kind = draw(st.sampled_from(["uniform", "extremes", "zeros", "top"]))
    if kind == "uniform":
        idx = torch.randint(0, hi, (*lead, d), generator=g)
    elif kind == "extremes":
        idx = torch.randint(0, 2, (*lead, d), generator=g) * (hi - 1)
    elif kind == "zeros":
        idx = torch.zeros(*lead, d, dtype=torch.int64)
    else:
        idx = torch.full((*lead, d), hi - 1, dtype=torch.int64)
    dtype = draw(st.sampled_from([t for t in INT_DTYPES if torch.iinfo(t).max >= hi - 1]))
    return idx.to(dtype), b


@pytest.mark.exercises("packed_score_lut_identity")
@given(code=index_codes())
def test_pack_codes_round_trip_and_width(code, device):
    """unpack_codes(pack_codes(idx, b), b, d) = idx (int64) for every b ∈ 1..8, every d (also not a
    multiple of 8), any leading shape and integer dtype; the packed tensor is uint8 (..., ⌈d·b/8⌉)."""
    idx, b = code
    d = idx.shape[-1]
    p = pack_codes(idx.to(device), b)
    assert p.dtype == torch.uint8 and p.device.type == device.type
    assert p.shape == (*idx.shape[:-1], (d * b + 7) // 8) and p.shape[-1] == packed_code_width(d, b)
    out = unpack_codes(p, b, d)
    assert out.dtype == torch.int64 and torch.equal(out.cpu(), idx.to(torch.int64))


@pytest.mark.exercises("packed_score_lut_identity")
@given(code=index_codes())
def test_pack_codes_bit_layout_is_the_little_endian_integer(code):
    """Each packed row is the little-endian byte string of the integer Σᵢ idxᵢ·2^{i·b}: bit j of
    idxᵢ at stream bit i·b + j, stream bit 8c + j = bit j of byte c, the padding bits zero."""
    idx, b = code
    d = idx.shape[-1]
    p = pack_codes(idx, b).reshape(-1, packed_code_width(d, b))
    rows = idx.reshape(-1, d).to(torch.int64).tolist()
    for row, packed in zip(rows, p.tolist()):
        assert bytes(packed) == reference_pack(row, b)


def test_pack_codes_layout_by_hand():
    """b = 3, idx = (5, 1, 7): stream 101 100 111 (bit 0 first) = 0b111_001_101 = 461 =
    bytes (205, 1); b = 2, d = 5, idx = (1, 2, 3, 0, 3): 0b11_00_11_10_01 = 0x0339."""
    assert pack_codes(torch.tensor([5, 1, 7]), 3).tolist() == [205, 1]
    assert pack_codes(torch.tensor([1, 2, 3, 0, 3]), 2).tolist() == [0x39, 0x03]


@pytest.mark.exercises("packed_score_lut_identity")
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 100), rows=st.integers(1, 4))
def test_one_bit_codes_are_the_packed_sign_code(seed, d, rows):
    """b = 1 with idxᵢ = [xᵢ ≥ 0] stores exactly pack_signs(x) (SPEC §1: sgn 0 = +1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, d, generator=g)
    x = torch.where(torch.rand(rows, d, generator=g) < 0.2, torch.zeros_like(x), x)
    x[0, 0] = -0.0
    assert torch.equal(pack_codes((x >= 0).to(torch.int64), 1), pack_signs(x))
    assert packed_code_width(d, 1) == packed_width(d)


@given(code=index_codes(), seed=st.integers(0, 2**31 - 1))
def test_unpack_codes_never_reads_the_padding(code, seed):
    """Setting the padding bits of the last byte to ones does not change the decoded indices."""
    idx, b = code
    d = idx.shape[-1]
    p = pack_codes(idx, b)
    pad = 8 * p.shape[-1] - d * b
    if pad:
        p[..., -1] |= ((0xFF << (8 - pad)) & 0xFF)
    assert torch.equal(unpack_codes(p, b, d), idx.to(torch.int64))


def lut_scores(q: list[float], packed: list[int], levels: list[float], b: int) -> float:
    """Σ_j T_j(β_j) with per-group tables: a group is the g = 8/gcd(8, b) coordinates stored in
    the b·g/8 bytes β_j (read as one little-endian integer); T_j(β) = Σ_{i<g} q_{gj+i}·ℓ(field i
    of β), fields of b bits, the tail group zero-padded. float64, from the packed bytes only."""
    g = 8 // math.gcd(8, b)
    nbytes = b * g // 8
    mask = (1 << b) - 1
    d = len(q)
    total = 0.0
    table_cache: dict[tuple[int, int], float] = {}
    for j in range((d + g - 1) // g):
        beta = int.from_bytes(bytes(packed[j * nbytes:(j + 1) * nbytes]), "little")
        key = (j, beta)
        if key not in table_cache:  # T_j(β), built once per (group, pattern)
            table_cache[key] = sum(q[g * j + i] * levels[(beta >> (i * b)) & mask]
                                   for i in range(g) if g * j + i < d)
        total += table_cache[key]
    return total


@pytest.mark.theorem("packed_score_lut_identity")
@given(code=index_codes(max_d=40), seed=st.integers(0, 2**31 - 1), Q=st.integers(1, 3),
       qdtype=st.sampled_from([torch.float32, torch.float64]))
def test_packed_level_scores_equal_the_sum_of_per_group_tables(code, seed, Q, qdtype, device):
    """packed_score_lut_identity: Σ_j T_j(β_j), computed independently from the packed bytes with
    one table per group of coordinates, equals ⟪q, ℓ[idx]⟫ (float64, both sums of the same d
    products: |Δ| ≤ 2d·eps64·Σ|qᵢℓ(idxᵢ)|), and packed_level_scores equals them within
    (d + 2)·eps·Σ|qᵢℓ(idxᵢ)| in q's dtype (d-term sum plus the rounding of the levels)."""
    idx, b = code
    d = idx.shape[-1]
    idx = idx.reshape(-1, d).to(torch.int64)  # (T, d)
    g = torch.Generator().manual_seed(seed)
    levels = torch.sort(torch.randn(2**b, generator=g, dtype=torch.float64) * 3).values
    levels = levels + torch.arange(2**b, dtype=torch.float64) * 1e-3
    q = (torch.randn(Q, d, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-3, 4, (1,), generator=g).item())
    q = q.to(qdtype)
    packed = pack_codes(idx, b)
    got = packed_level_scores(q.to(device), packed.to(device), levels.to(device), b, d).cpu()
    assert got.shape == (Q, idx.shape[0]) and got.dtype == qdtype
    lv = levels.tolist()
    for qi in range(Q):
        qrow = q[qi].to(torch.float64).tolist()
        for t in range(idx.shape[0]):
            prods = [qrow[i] * lv[v] for i, v in enumerate(idx[t].tolist())]
            mag = math.fsum(abs(p) for p in prods)
            direct = math.fsum(prods)
            lut = lut_scores(qrow, packed[t].tolist(), lv, b)
            assert abs(lut - direct) <= 2 * d * eps(torch.float64) * mag
            assert abs(float(got[qi, t]) - direct) <= (d + 2) * eps(qdtype) * mag + 2 * d * eps(torch.float64) * mag


@pytest.mark.exercises("packed_score_lut_identity")
@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 4), d=st.integers(1, 40), T=st.integers(0, 30),
       chunk=st.integers(1, 40), H=st.integers(1, 3))
def test_packed_level_scores_per_head_tables_and_chunks(seed, b, d, T, chunk, H):
    """Leading dimensions (B, H): levels (H, 2^b) give head h its own table; for any chunk_tokens
    (the matmul's rounding may differ per chunk size, so not bit for bit) the result equals the
    float64 dense product ⟪q, ℓ_h[idx]⟫ within (d + 2)·eps32·Σ|qᵢℓ(idxᵢ)|; half queries are
    computed in float32; T = 0 gives (…, Q, 0)."""
    g = torch.Generator().manual_seed(seed)
    Bn, Q = 2, 3
    idx = torch.randint(0, 2**b, (Bn, H, T, d), generator=g)
    levels = torch.sort(torch.randn(H, 2**b, generator=g), dim=-1).values + torch.arange(2**b) * 1e-3
    q = torch.randn(Bn, H, Q, d, generator=g)
    packed = pack_codes(idx, b)
    vals = torch.take_along_dim(levels.double()[None, :, None, :], idx, dim=-1)     # ℓ_h[idx] (B, H, T, d)
    ref = q.double() @ vals.transpose(-1, -2)
    mag = q.double().abs() @ vals.abs().transpose(-1, -2)
    for c in (chunk, max(T, 1)):
        got = packed_level_scores(q, packed, levels, b, d, chunk_tokens=c)
        assert got.shape == (Bn, H, Q, T) and got.dtype == torch.float32
        assert bool(((got.double() - ref).abs() <= (d + 2) * eps(torch.float32) * mag).all())
    one = gaussian_lloyd_max(b).levels  # one table (2^b,) for all heads
    got1 = packed_level_scores(q.half(), packed, one, b, d)
    assert got1.dtype == torch.float32
    mag1 = q.half().double().abs() @ one[idx].abs().transpose(-1, -2)
    ref1 = q.half().double() @ one[idx].transpose(-1, -2)
    assert bool(((got1.double() - ref1).abs() <= (d + 2) * eps(torch.float32) * mag1).all())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: pack_codes(torch.tensor([0, 4]), 2), r"idx must lie in \[0, 2\^bits = 4\)"),
        (lambda: pack_codes(torch.tensor([-1, 0]), 2), r"idx must lie in \[0, 2\^bits = 4\)"),
        (lambda: pack_codes(torch.tensor([0.0, 1.0]), 2), "idx must be an integer tensor"),
        (lambda: pack_codes(torch.tensor([True, False]), 1), "idx must be an integer tensor"),
        (lambda: pack_codes(torch.tensor(3), 2), "idx must have at least one dimension"),
        (lambda: pack_codes(torch.tensor([0, 1]), 0), "bits"),
        (lambda: pack_codes(torch.tensor([0, 1]), 9), "bits"),
        (lambda: unpack_codes(torch.zeros(2, 3, dtype=torch.uint8), 2, 8), r"packed must have last dimension ⌈d·b/8⌉ = 2"),
        (lambda: unpack_codes(torch.zeros(2, 2, dtype=torch.int32), 2, 8), "packed must be a uint8 tensor"),
        (lambda: packed_code_width(0, 2), "d must be a positive dimension"),
        (lambda: packed_level_scores(torch.zeros(1, 8), torch.zeros(2, 2, dtype=torch.uint8),
                                     torch.tensor([0.0, 0.0, 1.0, 2.0]), 2, 8), "levels must be strictly increasing"),
        (lambda: packed_level_scores(torch.zeros(1, 8), torch.zeros(2, 2, dtype=torch.uint8),
                                     torch.tensor([0.0, 1.0, 2.0]), 2, 8), "levels must hold 2\\^bits = 4 values"),
        (lambda: packed_level_scores(torch.zeros(1, 7), torch.zeros(2, 2, dtype=torch.uint8),
                                     torch.tensor([0.0, 1.0, 2.0, 3.0]), 2, 8), "q must have last dimension d = 8"),
        (lambda: packed_level_scores(torch.zeros(1, 8), torch.zeros(2, 3, dtype=torch.uint8),
                                     torch.tensor([0.0, 1.0, 2.0, 3.0]), 2, 8), r"packed must have last dimension ⌈d·b/8⌉ = 2"),
        (lambda: packed_level_scores(torch.zeros(1, 8), torch.zeros(2, 2, dtype=torch.uint8),
                                     torch.tensor([0.0, 1.0, 2.0, 3.0]), 2, 8, chunk_tokens=0), "chunk_tokens must be ≥ 1"),
    ],
)
def test_bad_code_input_raises_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
