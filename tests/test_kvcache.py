"""The bit-packed key store: coding, appending, logits from the packed form, memory."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.cache.store import KeyCodec, OneBitKeyStore, decode_keys, encode_keys
from impl.rotation import random_orthogonal
from impl.sign_quant import dequantize_1bit, quantize_1bit

EPS32 = torch.finfo(torch.float32).eps


def _codec(H, d, r, seed, mean_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    R = torch.stack([random_orthogonal(d, g) for _ in range(H)])
    B = torch.linalg.qr(torch.randn(H, d, max(r, 1), generator=g)).Q[..., :r]
    m = torch.randn(H, d, generator=g) * mean_scale
    return KeyCodec(mean=m, rotation=R, basis=B)


@pytest.mark.theorem("cos_sign_quant_formula")
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 40), T=st.integers(1, 12))
def test_identity_codec_stores_exactly_the_1bit_quantization(seed, d, T):
    """Plain 1-bit keys (no rotation, mean or correction, float32 scale): decode = quant1 k."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(1, 2, T, d, generator=g)
    codec = KeyCodec.identity(2, d)
    dec = decode_keys(codec, encode_keys(codec, keys, scale_dtype=torch.float32))
    code = quantize_1bit(keys)
    assert torch.allclose(dec, dequantize_1bit(code.signs, code.scale), rtol=0, atol=4 * EPS32 * keys.abs().max().item())


@given(seed=st.integers(0, 2**31 - 1), r=st.integers(0, 8))
@settings(max_examples=15)
def test_decode_is_rotation_back_of_scaled_signs_plus_correction(seed, r):
    d, H = 16, 2
    codec = _codec(H, d, r, seed)
    g = torch.Generator().manual_seed(seed + 1)
    keys = torch.randn(2, H, 7, d, generator=g) * 3
    enc = encode_keys(codec, keys, scale_dtype=torch.float32)
    # independent reconstruction, head by head, from impl.sign_quant
    for h in range(H):
        y = (keys[:, h] - codec.mean[h]) @ codec.rotation[h].T
        code = quantize_1bit(y)
        yq = dequantize_1bit(code.signs, code.scale)
        c = (y - yq) @ codec.basis[h]
        k_hat = (yq + c @ codec.basis[h].T) @ codec.rotation[h] + codec.mean[h]
        got = decode_keys(codec, enc)[:, h]
        assert torch.allclose(got, k_hat, atol=64 * d * EPS32 * keys.abs().max().item(), rtol=0)


@given(seed=st.integers(0, 2**31 - 1), n_protect=st.integers(0, 6), T=st.integers(1, 20))
@settings(max_examples=20)
def test_token_by_token_append_equals_block_prefill(seed, n_protect, T):
    codec = _codec(2, 16, 2, seed)
    keys = torch.randn(1, 2, T, 16, generator=torch.Generator().manual_seed(seed))
    block, steps = OneBitKeyStore(codec, n_protect), OneBitKeyStore(codec, n_protect)
    block.append(keys)
    for t in range(T):
        steps.append(keys[:, :, t:t + 1])
    assert len(block) == len(steps) == T
    assert torch.equal(block.dequantized_keys(), steps.dequantized_keys())
    if block.encoded() is not None:
        for a, b in zip(block.encoded().__dict__.values(), steps.encoded().__dict__.values()):
            assert torch.equal(a, b)


@pytest.mark.theorem("front_token_protection")
@given(seed=st.integers(0, 2**31 - 1), n_protect=st.integers(1, 8))
@settings(max_examples=20)
def test_protected_tokens_are_bit_exact_and_scored_exactly(seed, n_protect):
    codec = _codec(2, 32, 4, seed)
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(1, 2, 12, 32, generator=g) * 5
    store = OneBitKeyStore(codec, n_protect)
    store.append(keys[:, :, :3])
    store.append(keys[:, :, 3:])
    n = min(n_protect, 12)
    assert torch.equal(store.protected_keys(), keys[:, :, :n])          # bit-exact
    q = torch.randn(1, 2, 1, 1, 32, generator=g)
    logits = store.logits(q, exact_offsets=True)[..., :n]
    exact = torch.einsum("bhgqd,bhtd->bhgqt", q, keys[:, :, :n])
    assert torch.equal(logits, exact)


@pytest.mark.theorem("softmax_shift")
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(0, 4), n_protect=st.integers(0, 3),
       mean_scale=st.sampled_from([0.0, 1.0, 100.0]))
@settings(max_examples=25)
def test_packed_logits_equal_dequantized_logits_up_to_the_mean_shift(seed, r, n_protect, mean_scale):
    d, H, G = 32, 2, 3
    codec = _codec(H, d, r, seed, mean_scale)
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(2, H, 30, d, generator=g) + codec.mean[None, :, None, :]
    store = OneBitKeyStore(codec, n_protect)
    store.append(keys)
    q = torch.randn(2, H, G, 4, d, generator=g)
    K = store.dequantized_keys().double()
    ref = torch.einsum("bhgqd,bhtd->bhgqt", q.double(), K)
    exact = store.logits(q, exact_offsets=True).double()
    # float32 evaluation of d-term dot products of size ≤ ‖q‖·‖k̂‖, plus the rotation of q
    # (another d-term sum): a few d·eps relative to ‖q‖·max‖k̂‖
    scale = q.double().norm(dim=-1, keepdim=True) * K.norm(dim=-1).amax(-1)[:, :, None, None, None]
    assert bool(((exact - ref).abs() <= 8 * d * EPS32 * scale).all())
    shifted = store.logits(q).double()
    offset = torch.einsum("bhgqd,hd->bhgq", q.double(), codec.mean.double()).unsqueeze(-1)
    assert bool(((shifted + offset - ref).abs() <= 8 * d * EPS32 * scale).all())
    # softmax cannot tell them apart (softmax_shift): softmax is ½-Lipschitz from ‖·‖_∞ to ‖·‖_∞
    # (its Jacobian's rows have ∞-norm 2pᵢ(1 − pᵢ) ≤ ½), so the probabilities differ by at most
    # half the logit error bound above
    row_bound = (8 * d * EPS32 * scale).amax(-1, keepdim=True)
    diff = (torch.softmax(shifted, -1) - torch.softmax(ref, -1)).abs()
    assert bool((diff <= 0.5 * row_bound + 1e-15).all())


@given(r=st.integers(0, 8), n_protect=st.integers(0, 5), T=st.integers(1, 40))
@settings(max_examples=20)
def test_memory_is_exactly_one_bit_plus_scale_plus_coefficients(r, n_protect, T):
    d, H, B = 64, 3, 2
    store = OneBitKeyStore(_codec(H, d, r, 0), n_protect)
    store.append(torch.randn(B, H, T, d))
    mem = store.memory()
    n_exact = min(n_protect, T)
    n_coded = T - n_exact
    expected_bytes = B * H * (n_exact * d * 4 + n_coded * (d // 8 + 2 + 2 * r))
    assert mem.nbytes_used == expected_bytes
    coded_bits = 1 + 16 / d + r * 16 / d
    assert mem.bits_per_coordinate == pytest.approx((n_exact * 32 + n_coded * coded_bits) / T, rel=1e-12)
    assert store.expected_bits_per_coordinate() == pytest.approx(mem.bits_per_coordinate, rel=1e-12)
    assert mem.nbytes_allocated >= mem.nbytes_used


def test_no_hidden_full_precision_copy_of_coded_keys():
    store = OneBitKeyStore(_codec(2, 64, 0, 0), n_protect=0)
    store.append(torch.randn(1, 2, 100, 64))
    held = [v for v in vars(store).values() if hasattr(v, "data") and torch.is_tensor(getattr(v, "data"))]
    assert all(t.data.dtype in (torch.uint8, torch.float16) for t in held)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.append(torch.randn(1, 3, 4, 16)), r"keys must have shape \(B, H=2, T, d=16\)"),
        (lambda s: s.append(torch.full((1, 2, 4, 16), float("inf"))), "keys must be finite"),
        (lambda s: s.logits(torch.randn(1, 2, 1, 1, 8)), r"q must have shape \(B, H=2, G, Q, d=16\)"),
        (lambda s: OneBitKeyStore(s.codec, n_protect=-1), "n_protect must be an integer ≥ 0"),
        (lambda s: KeyCodec(torch.zeros(2, 16), torch.ones(2, 16, 16), torch.zeros(2, 16, 0)), "rotation must be orthogonal"),
        (lambda s: s.dequantized_keys(), "the store is empty"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    store = OneBitKeyStore(KeyCodec.identity(2, 16))
    with pytest.raises(ValueError, match=message):
        call(store)
