"""The key store of one layer: the exact/coded policy, appends, logits read from the codes, the
per-query view of a prefill, memory, and bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.cache.codecs.transform import TransformCodec, default_levels
from impl.cache.store import KeyStore, full_precision_rows, recent_count
from impl.rotation import random_orthogonal

EPS32 = torch.finfo(torch.float32).eps


def _codec(H, d, r, seed, bits=1, mean_scale=1.0, coef_bits=16):
    g = torch.Generator().manual_seed(seed)
    R = torch.stack([random_orthogonal(d, g) for _ in range(H)])
    B = torch.linalg.qr(torch.randn(H, d, max(r, 1), generator=g)).Q[..., :r]
    m = torch.randn(H, d, generator=g) * mean_scale
    return TransformCodec(mean=m, rotation=R, basis=B, levels=default_levels(bits, H),
                          channel_scale=torch.ones(H, d), bits=bits, coef_bits=coef_bits)


policies = st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(1, 5))   # (n_protect, window, flush)


@given(n=st.integers(0, 200), window=st.integers(0, 20), flush=st.integers(1, 16))
def test_recent_count_is_what_flushing_in_blocks_leaves(n, window, flush):
    # simulate: append one token at a time; code the oldest `flush` while more than window + flush − 1 are exact
    exact = coded = 0
    for _ in range(n):
        exact += 1
        while exact >= window + flush:
            exact -= flush
            coded += flush
    assert recent_count(n, window, flush) == exact
    assert coded % flush == 0


@pytest.mark.exercises("cos_sign_quant_formula")
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(1, 4), policy=policies, T=st.integers(1, 24))
@settings(max_examples=25)
def test_token_by_token_append_equals_block_prefill(seed, bits, policy, T):
    n_protect, window, flush = policy
    codec = _codec(2, 16, 2, seed, bits=bits)
    keys = torch.randn(1, 2, T, 16, generator=torch.Generator().manual_seed(seed))
    block = KeyStore(codec, n_protect, window, flush)
    steps = KeyStore(codec, n_protect, window, flush)
    block.append(keys)
    for t in range(T):
        steps.append(keys[:, :, t:t + 1])
    assert len(block) == len(steps) == T
    assert block.coded_length == steps.coded_length
    assert block.coded_length == max(0, T - n_protect) - recent_count(max(0, T - n_protect), window, flush)
    assert torch.equal(block.dequantized_keys(), steps.dequantized_keys())
    if block.codes() is not None:
        for name in block.codes():
            assert torch.equal(block.codes()[name], steps.codes()[name])


@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(1, 3), policy=policies, T=st.integers(1, 30),
       G=st.sampled_from([1, 3]))
@settings(max_examples=25)
def test_prefill_causal_logits_equal_the_logits_of_a_token_by_token_decode(seed, bits, policy, T, G):
    """Query t of a prefill sees the store as it stood after token t was appended."""
    n_protect, window, flush = policy
    codec = _codec(2, 16, 1, seed, bits=bits)
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(1, 2, T, 16, generator=g)
    q = torch.randn(1, 2, G, T, 16, generator=g)
    prefill = KeyStore(codec, n_protect, window, flush, keep_call_keys=True)
    prefill.append(keys)
    got = prefill.causal_logits(q).double()
    decode = KeyStore(codec, n_protect, window, flush)
    for t in range(T):
        decode.append(keys[:, :, t:t + 1])
        step = decode.logits(q[:, :, :, t:t + 1]).double()                 # (1, 2, G, 1, t + 1)
        # both are float32 sums of d = 16 terms of size ≤ ‖q‖·‖k̂‖ (plus a rotation of q)
        bound = 8 * 16 * EPS32 * (q[:, :, :, t].norm(dim=-1) * decode.dequantized_keys().norm(dim=-1).amax(-1)
                                   [:, :, None]).double()[..., None, None]
        assert bool(((got[:, :, :, t:t + 1, : t + 1] - step).abs() <= bound + 1e-30).all()), t


@pytest.mark.theorem("front_token_protection")
@given(seed=st.integers(0, 2**31 - 1), n_protect=st.integers(1, 8))
@settings(max_examples=20)
def test_protected_tokens_are_bit_exact_and_scored_exactly(seed, n_protect):
    codec = _codec(2, 32, 4, seed)
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(1, 2, 12, 32, generator=g) * 5
    store = KeyStore(codec, n_protect)
    store.append(keys[:, :, :3])
    store.append(keys[:, :, 3:])
    n = min(n_protect, 12)
    assert torch.equal(store.protected_keys(), keys[:, :, :n])          # bit-exact
    q = torch.randn(1, 2, 1, 1, 32, generator=g)
    logits = store.logits(q, exact_offsets=True)[..., :n]
    exact = torch.einsum("bhgqd,bhtd->bhgqt", q, keys[:, :, :n])
    assert torch.equal(logits, exact)


@pytest.mark.exercises("softmax_shift")
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(0, 4), policy=policies,
       mean_scale=st.sampled_from([0.0, 1.0, 100.0]), bits=st.integers(1, 4))
@settings(max_examples=25)
def test_logits_from_codes_equal_logits_of_the_dequantized_keys_up_to_the_offset(seed, r, policy, mean_scale, bits):
    n_protect, window, flush = policy
    d, H, G = 32, 2, 3
    codec = _codec(H, d, r, seed, bits=bits, mean_scale=mean_scale)
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(2, H, 30, d, generator=g) + codec.mean[None, :, None, :]
    store = KeyStore(codec, n_protect, window, flush)
    store.append(keys)
    q = torch.randn(2, H, G, 4, d, generator=g)
    K = store.dequantized_keys().double()
    ref = torch.einsum("bhgqd,bhtd->bhgqt", q.double(), K)
    exact = store.logits(q, exact_offsets=True).double()
    # float32 d-term dot products of size ≤ ‖q‖·‖k̂‖, plus the rotation of q (another d-term sum)
    scale = q.double().norm(dim=-1, keepdim=True) * K.norm(dim=-1).amax(-1)[:, :, None, None, None]
    assert bool(((exact - ref).abs() <= 8 * d * EPS32 * scale).all())
    shifted = store.logits(q).double()
    offset = torch.einsum("bhgqd,hd->bhgq", q.double(), codec.mean.double()).unsqueeze(-1)
    assert bool(((shifted + offset - ref).abs() <= 8 * d * EPS32 * scale).all())


@given(r=st.integers(0, 8), policy=policies, T=st.integers(1, 40), bits=st.integers(1, 4),
       coef_bits=st.sampled_from([16, 8, 4]), exact16=st.booleans())
@settings(max_examples=30)
def test_memory_counts_every_stored_byte_and_equals_the_formula(r, policy, T, bits, coef_bits, exact16):
    n_protect, window, flush = policy
    d, H, B = 64, 3, 2
    store = KeyStore(_codec(H, d, r, 0, bits=bits, coef_bits=coef_bits), n_protect, window, flush,
                     exact_dtype=torch.float16 if exact16 else None)
    store.append(torch.randn(B, H, T, d))
    mem = store.memory()
    n_exact = min(n_protect, T) + store.recent_length
    n_coded = T - n_exact
    coef = 0 if r == 0 else (2 * r if coef_bits == 16 else -(-r * coef_bits // 8) + 2)
    per_coded = -(-d * bits // 8) + 2 + coef                       # packed indices + fp16 α + coefficients
    expected_bytes = B * H * (n_exact * d * (2 if exact16 else 4) + n_coded * per_coded)
    assert mem.nbytes_used == expected_bytes
    assert mem.bits_per_coordinate == pytest.approx(8 * expected_bytes / (B * H * T * d), rel=1e-12)
    assert store.expected_bits_per_coordinate() == pytest.approx(mem.bits_per_coordinate, rel=1e-12)
    assert mem.nbytes_allocated >= mem.nbytes_used


@given(seed=st.integers(0, 2**31 - 1), policy=policies, bits=st.integers(1, 4))
@settings(max_examples=15)
def test_no_buffer_holds_a_full_precision_copy_of_a_coded_key(seed, policy, bits):
    n_protect, window, flush = policy
    store = KeyStore(_codec(2, 16, 2, seed, bits=bits), n_protect, window, flush, keep_call_keys=True)
    keys = torch.randn(1, 2, 40, 16, generator=torch.Generator().manual_seed(seed + 1))  # not the codec's draws
    store.append(keys[:, :, :30])
    store.append(keys[:, :, 30:])
    P, C = store.protected_length, store.coded_length
    coded = keys[:, :, P:P + C].reshape(-1, 16)
    # while the last append's exact keys are held for causal_logits, the tokens it coded are there …
    held_during_call = full_precision_rows(store, coded)
    store.release_call_keys()
    assert full_precision_rows(store, coded) == 0                        # … and nowhere once released
    assert full_precision_rows(store, keys[:, :, :P].reshape(-1, 16)) == 2 * P   # the protected ones are
    assert held_during_call >= 0


def test_full_precision_rows_finds_a_planted_copy():
    store = KeyStore(_codec(2, 16, 0, 0), 0)
    keys = torch.randn(1, 2, 10, 16)
    store.append(keys)
    store.leak = keys[:, :, 3:5].half()                                 # a float16 copy counts
    assert full_precision_rows(store, keys.reshape(-1, 16)) == 4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.append(torch.randn(1, 3, 4, 16)), r"keys must have shape \(B, H=2, T, d=16\)"),
        (lambda s: s.append(torch.full((1, 2, 4, 16), float("inf"))), "keys must be finite"),
        (lambda s: s.logits(torch.randn(1, 2, 1, 1, 8)), r"q must have shape \(B, H=2, G, Q, d=16\)"),
        (lambda s: KeyStore(s.codec, n_protect=-1), "n_protect must be an integer ≥ 0"),
        (lambda s: KeyStore(s.codec, n_protect=True), "n_protect must be an integer ≥ 0"),
        (lambda s: KeyStore(s.codec, window=-2), "window must be an integer ≥ 0"),
        (lambda s: KeyStore(s.codec, flush_block=0), "flush_block must be an integer ≥ 1"),
        (lambda s: KeyStore(s.codec, exact_dtype=torch.int32), "exact_dtype must be None or a floating-point"),
        (lambda s: KeyStore("codec"), "codec must be a KeyCodec"),
        (lambda s: s.dequantized_keys(), "the store is empty"),
        (lambda s: s.causal_logits(torch.randn(1, 2, 1, 1, 16)), "q holds 1 query positions"),
        (lambda s: s.append(torch.full((1, 2, 4, 16), 1e5)), "overflows torch.float16"),
        (lambda s: KeyStore(s.codec, exact_dtype=torch.float16).append(torch.full((1, 2, 1, 16), 1e5)),
         "keys overflow the exact dtype torch.float16"),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    store = KeyStore(TransformCodec.identity(2, 16))
    with pytest.raises(ValueError, match=message):
        call(store)
