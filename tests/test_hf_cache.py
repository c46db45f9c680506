"""transformers integration: the packed-attention path computes exactly the attention of the
dequantised keys, on a tiny randomly initialised Llama model (and on SmolLM2 when fetched)."""

import inspect
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from impl.cache.codecs import peer_codecs  # noqa: E402
from impl.cache.codecs.transform import TransformCodec, default_levels  # noqa: E402
from impl.cache.hf import ATTN_IMPLEMENTATION, QuantizedKeyCache, packed_attention  # noqa: E402
from impl.hadamard import srht_matrix  # noqa: E402

EPS32 = torch.finfo(torch.float32).eps


def _tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                   max_position_embeddings=512)
    return transformers.LlamaForCausalLM(cfg).eval()


def _cache_kw(model):
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _codecs(layers, heads, d, rank, seed=0, bits=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        R = torch.stack([srht_matrix(d, g) for _ in range(heads)])
        B = torch.linalg.qr(torch.randn(heads, d, max(rank, 1), generator=g)).Q[..., :rank]
        out.append(TransformCodec(mean=0.5 * torch.randn(heads, d, generator=g), rotation=R, basis=B,
                                  levels=default_levels(bits, heads), channel_scale=torch.ones(heads, d), bits=bits))
    return out


def _run(model, ids, cache, steps=3, attention_mask=None):
    kw = _cache_kw(model)
    with torch.no_grad():
        logits = [model(ids, attention_mask=attention_mask, use_cache=True, **{kw: cache}).logits]
        nxt = logits[0][:, -1:].argmax(-1)
        am = attention_mask
        for _ in range(steps):
            if am is not None:
                am = torch.cat([am, torch.ones_like(am[:, :1])], dim=1)
            logits.append(model(nxt, attention_mask=am, use_cache=True, **{kw: cache}).logits)
            nxt = logits[-1][:, -1:].argmax(-1)
    return logits


def _logit_bound(logits):
    # the two paths differ only in float32 rounding of the attention scores (d-term dot products,
    # a rotation of q, a mean shift), propagated through 2 layers of a network whose logits are O(1)
    return 256 * 16 * EPS32 * max(1.0, float(logits.abs().max()))


@pytest.mark.parametrize("rank, n_protect", [(0, 0), (3, 0), (0, 4), (3, 4)])
def test_packed_attention_equals_attention_over_dequantized_keys(rank, n_protect):
    model = _tiny_llama()
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    codecs = _codecs(2, 2, 16, rank)
    reference = _run(model, ids, QuantizedKeyCache(codecs, n_protect))       # sdpa over k̂ from update()
    packed_cache = QuantizedKeyCache(codecs, n_protect)
    with packed_cache.attached(model):
        packed = _run(model, ids, packed_cache)
    for a, b in zip(packed, reference):
        assert (a - b).abs().max() <= _logit_bound(b)
    assert model.config._attn_implementation != ATTN_IMPLEMENTATION     # restored on exit
    assert packed_cache.get_seq_length() == 43


def test_left_padding_is_masked_like_the_reference():
    model = _tiny_llama()
    ids = torch.randint(0, 256, (2, 30), generator=torch.Generator().manual_seed(2))
    am = torch.ones_like(ids)
    am[0, :7] = 0
    codecs = _codecs(2, 2, 16, 2)
    ref = _run(model, ids, QuantizedKeyCache(codecs), steps=2, attention_mask=am)
    cache = QuantizedKeyCache(codecs)
    with cache.attached(model):
        out = _run(model, ids, cache, steps=2, attention_mask=am)
    real = am.bool()
    assert (out[0] - ref[0])[real].abs().max() <= _logit_bound(ref[0])
    assert torch.isfinite(out[0]).all()


def test_generate_gives_the_same_tokens_on_both_paths():
    model = _tiny_llama(3)
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(3))
    codecs = _codecs(2, 2, 16, 2)
    kw = _cache_kw(model)
    a = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                       **{kw: QuantizedKeyCache(codecs)})
    cache = QuantizedKeyCache(codecs)
    with cache.attached(model):
        b = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False, **{kw: cache})
    assert torch.equal(a, b)


def test_cache_memory_has_no_hidden_copy():
    model = _tiny_llama()
    ids = torch.randint(0, 256, (1, 50))
    cache = QuantizedKeyCache(_codecs(2, 2, 16, 2), n_protect=4)
    with cache.attached(model):
        _run(model, ids, cache, steps=0)
    mem = cache.memory()
    d, r = 16, 2
    coded = 1 + 16 / d + r * 16 / d
    assert mem.bits_per_coordinate == pytest.approx((4 * 32 + 46 * coded) / 50)
    assert mem.coordinates == 2 * 1 * 2 * 50 * 16
    assert cache.expected_bits_per_coordinate() == pytest.approx(mem.bits_per_coordinate)


def test_attached_restores_the_model_after_an_error():
    model = _tiny_llama()
    before = model.config._attn_implementation
    cache = QuantizedKeyCache(_codecs(2, 2, 16, 0))
    with pytest.raises(RuntimeError, match="boom"):
        with cache.attached(model):
            raise RuntimeError("boom")
    assert model.config._attn_implementation == before
    assert all(layer.materialize_keys for layer in cache.layers)


def test_packed_attention_without_a_cache_says_how_to_attach():
    module = torch.nn.Module()
    module.layer_idx = 0
    with pytest.raises(RuntimeError, match="cache.attached"):
        packed_attention(module, torch.zeros(1, 2, 1, 16), torch.zeros(1, 2, 1, 16), torch.zeros(1, 2, 1, 16), None)


@pytest.mark.parametrize("call, message", [
    (lambda: QuantizedKeyCache([]), "one KeyCodec per decoder layer"),
    (lambda: QuantizedKeyCache(["x"]), "codecs must be KeyCodec instances"),
    (lambda: QuantizedKeyCache(_codecs(2, 2, 16, 0), n_protect=True), "n_protect must be an integer"),
    (lambda: QuantizedKeyCache(_codecs(2, 2, 16, 0), window=-1), "window must be an integer"),
    (lambda: QuantizedKeyCache(_codecs(2, 2, 16, 0), exact_dtype=torch.int8), "exact_dtype must be None or a floating"),
])
def test_bad_cache_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


PEERS = [("kivi", {"bits": 2, "group": 4}), ("turboquant_mse", {"bits": 2}), ("turboquant_prod", {"bits": 2}),
         ("qjl", {"m": 32})]


def _prefill_and_stepwise(model, ids, make_cache):
    """Logits of a packed-attention prefill, and of the same tokens fed one at a time through the
    model's own attention (each step's single query sees the store exactly as it stands)."""
    kw = _cache_kw(model)
    cache = make_cache()
    with cache.attached(model), torch.no_grad():
        prefill = model(ids, use_cache=True, **{kw: cache}).logits
    step_cache = make_cache()
    steps = []
    with torch.no_grad():
        for t in range(ids.shape[1]):
            steps.append(model(ids[:, t:t + 1], use_cache=True, **{kw: step_cache}).logits)
    return prefill, torch.cat(steps, dim=1), cache


@pytest.mark.parametrize("kind, settings", PEERS)
def test_every_peer_codec_plugs_into_the_cache_and_prefill_equals_decode(kind, settings):
    model = _tiny_llama()
    ids = torch.randint(0, 256, (1, 24), generator=torch.Generator().manual_seed(5))
    codecs = peer_codecs(kind, 2, 2, 16, seed=1, **settings)
    flush = settings.get("group")
    prefill, decode, cache = _prefill_and_stepwise(model, ids, lambda: QuantizedKeyCache(codecs, flush_block=flush))
    assert (prefill - decode).abs().max() <= _logit_bound(decode)
    assert cache.memory().bits_per_coordinate == pytest.approx(cache.expected_bits_per_coordinate())


@pytest.mark.parametrize("n_protect, window, flush, bits", [(1, 4, 1, 2), (0, 0, 8, 1), (2, 3, 4, 3)])
def test_packed_prefill_equals_a_token_by_token_decode_with_recent_windows(n_protect, window, flush, bits):
    """With exact recent tokens, a prefill through the packed attention gives each position the
    logits a token-by-token decode gives it."""
    model = _tiny_llama(6)
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(6))
    codecs = _codecs(2, 2, 16, 1, bits=bits)
    prefill, decode, _ = _prefill_and_stepwise(
        model, ids, lambda: QuantizedKeyCache(codecs, n_protect=n_protect, window=window, flush_block=flush))
    assert (prefill - decode).abs().max() <= _logit_bound(decode)


class _ReplayLayer(transformers.cache_utils.DynamicLayer):
    """Hands attention the given (already dequantised) keys instead of the ones that arrive, so a
    second run attends over exactly the keys another run stored."""

    def __init__(self, keys):
        super().__init__()
        self.recorded = keys

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.values = torch.cat([self.values, value_states], dim=-2)
        self.keys = self.recorded[:, :, : self.values.shape[-2]].to(key_states.dtype)
        return self.keys, self.values


@pytest.mark.slow
def test_smollm2_packed_logits_equal_explicitly_dequantized_keys():
    """The real model, a few hundred tokens of held-out text, the cache with a 2-bit SRHT codec and
    no correction or protection: the packed path computes exactly the quantized attention.

    Two runs that each quantize what arrives cannot be compared this way: a float-level difference
    upstream flips the sign bit of a coordinate near zero, a jump of 2α, and over 30 layers the runs
    drift apart by more than rounding. So the reference replays the packed run's own stored codes,
    dequantised explicitly (k̂ = Rᵀ α ℓ[idx]), through the model's standard sdpa attention."""
    from betaspec.data.load import load_model
    from betaspec.data.locations import asset_present
    from betaspec.data.models import text_windows
    from impl.calibration.fit import data_free_codecs

    if not (asset_present("smollm2") and asset_present("text")):
        pytest.skip("SmolLM2 or the text is not fetched (run `betaspec fetch-assets`)")
    model, tok = load_model("smollm2", progress=False)
    ids = text_windows("smollm2", tok, "heldout", 1, 300, progress=False)
    codecs = data_free_codecs("srht", 30, 3, 64, seed=0, bits=2)
    cache = QuantizedKeyCache(codecs)
    with cache.attached(model):
        packed = _run(model, ids, cache, steps=4)
    assert model.config._attn_implementation == "sdpa"
    replay = transformers.cache_utils.Cache(
        layers=[_ReplayLayer(layer.store.dequantized_keys()) for layer in cache.layers])
    reference = _run(model, ids, replay, steps=4)
    # the same keys; only the order of float32 operations differs (packed bits × scale vs a dense
    # q·k̂ᵀ, d = 64 terms), which can grow through the 30 layers: bound by L·d·eps of the largest logit
    for a, b in zip(packed, reference):
        assert (a - b).abs().max() <= 30 * 64 * EPS32 * float(b.abs().max())
    assert cache.memory().bits_per_coordinate == pytest.approx(2 + 16 / 64)
