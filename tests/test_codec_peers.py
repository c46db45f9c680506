"""The published peers behind the `KeyCodec` interface — KIVI, QJL, TurboQuant_mse/_prod — each
checked against what its paper states, with independent float64 references.

Tolerances. Float32 sums of `n` terms err by at most `γ_n Σ|terms|`, `γ_n ≈ n·eps/2` (Higham),
whatever the summation order. Scores and `q · decode` compute the same exact quantity along two
float32 paths; each path is a chain of at most `n_ops = 2d + m + 8` roundings/summed terms over the
same absolute values (`abs_magnitude`: the computation with every factor replaced by its absolute
value, in float64), so they differ by at most `n_ops · eps · abs_magnitude`. Statistical checks use
5 standard errors estimated from the sample (two-sided false-alarm rate ≈ 6·10⁻⁷ per check), over
fixed (derandomised in CI) seeds.

Measured values quoted in the docstrings come from the same constructions run over more seeds.
"""

from __future__ import annotations

import itertools
import json
import math

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.cache.codecs import CODECS, codec_from_parameters, peer_codecs
from impl.cache.codecs.base import CodecError
from impl.cache.codecs.kivi import KIVI_BITS, KiviCodec
from impl.cache.codecs.qjl import QJLCodec, orthogonal_sketch_bias
from impl.cache.codecs.turboquant import TurboQuantMSE, TurboQuantProd, outlier_channels_by_rms
from impl.cache.packing import unpack_codes
from impl.cache.store import KeyStore
from impl.multilevel import sphere_lloyd_max
from strategies import real_tensors, scaled_examples, seeds

EPS32 = torch.finfo(torch.float32).eps
U16 = 2.0**-11          # unit roundoff of float16 (normal range)
TINY16 = 2.0**-25       # half the smallest float16 subnormal: the absolute rounding error below it
H = 2
KINDS = ("kivi", "qjl", "qjl_gaussian", "turboquant_mse", "turboquant_prod", "turboquant_mse_split",
         "turboquant_prod_split")
TQ_DIMS = (3, 12, 16, 64)
SPLITS = ((16, 4), (64, 16))                      # (d, n_o): sub-dimensions 4/12, 16/48
SAFE_KINDS = ("gaussian", "lattice", "near_lattice", "sparse", "ties", "onehot", "mean_dominated")


# ------------------------------------------------------------------------------ helpers


def outlier_sets(d: int, n_o: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.sort(torch.randperm(d, generator=g)[:n_o]).values for _ in range(H)])


@st.composite
def codecs(draw, kind: str):
    """A codec of `kind` (see KINDS) with drawn settings, for H heads."""
    seed = draw(seeds)
    if kind == "kivi":
        d = draw(st.integers(1, 40))
        return KiviCodec.for_layer(H, d, bits=draw(st.sampled_from(KIVI_BITS)),
                                   group=draw(st.sampled_from([1, 2, 3, 4, 8, 32])))
    if kind.startswith("qjl"):
        d = draw(st.integers(1, 40))
        return QJLCodec.random(H, d, draw(st.integers(1, 3 * d)), seed,
                               sketch="gaussian" if kind == "qjl_gaussian" else "orthogonal")
    cls = TurboQuantMSE if kind.startswith("turboquant_mse") else TurboQuantProd
    bits = draw(st.integers(1, 4))
    if kind.endswith("_split"):
        d, n_o = draw(st.sampled_from(SPLITS))
        return cls.random(H, d, bits, seed, outlier_index=outlier_sets(d, n_o, seed),
                          outlier_bits=draw(st.integers(1, 4)))
    return cls.random(H, draw(st.sampled_from(TQ_DIMS)), bits, seed)


@st.composite
def key_tensors(draw, B: int, T: int, d: int, dtype=None):
    """Keys (B, H, T, d) of varied structure (zeros, ties, lattice points, one-hot, a dominant mean),
    rescaled to a magnitude 10^[-3, 2.5] that float16 side values hold."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64])) if dtype is None else dtype
    x = draw(real_tensors(dtype=torch.float64, d=d, batch_shapes=st.just((B * H * T,)), kinds=SAFE_KINDS,
                          row_scale=False)) if B * T else torch.zeros(0, d, dtype=torch.float64)
    top = float(x.abs().max()) if x.numel() else 0.0
    if top > 0:
        x = x / top * 10.0 ** draw(st.floats(-3, 2.5))
    return x.reshape(B, H, T, d).to(dtype)


def queries(seed: int, B: int, Q: int, d: int, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = 10.0 ** (4 * torch.rand(1, generator=g).item() - 2)
    return (torch.randn(B, H, Q, d, generator=g, dtype=torch.float64) * scale).float().to(device)


def abs_magnitude(codec, q: torch.Tensor, codes: dict) -> tuple[torch.Tensor, int]:
    """`(A, m)`: the codec's logit computation with every factor replaced by its absolute value
    (float64, (B, H, Q, T)), and the length m of its longest sketch (0 if none)."""
    qa = q.double().abs()
    if isinstance(codec, KiviCodec):
        c = unpack_codes(codes["codes"], codec.bits, codec.dim).double()
        G = codec.group
        s = codes["scale"].double().repeat_interleave(G, dim=2)
        z = codes["zero"].double().abs().repeat_interleave(G, dim=2)
        return qa @ (z + s * c).transpose(-1, -2), 0
    if isinstance(codec, QJLCodec):
        S = codec.sketch.double().abs()
        per_q = (qa @ S.transpose(-1, -2)).sum(-1, keepdim=True)          # Σ_i Σ_j |S_ij| |q_j|
        return per_q * math.sqrt(math.pi / 2) / codec.m * codes["norm"].double().unsqueeze(-2), codec.m
    total, m = 0.0, 0
    for prefix, channels, inst in codec.parts:
        qs = qa if channels is None else torch.gather(qa, -1, channels.to(q.device)[None, :, None, :].expand(
            q.shape[0], -1, q.shape[2], -1))
        if inst.mse_bits:
            lv = inst.levels.double().abs().to(q.device)[unpack_codes(codes[prefix + "codes"], inst.mse_bits, inst.dim)]
            rq = qs @ inst.rotation.double().abs().transpose(-1, -2)              # |Π| |q|
            total = total + (rq @ lv.transpose(-1, -2)) * codes[prefix + "norm"].double().unsqueeze(-2)
        if inst.sketch is not None:
            S = inst.sketch.double().abs()
            per_q = (qs @ S.transpose(-1, -2)).sum(-1, keepdim=True)
            rn = codes[prefix + "residual_norm"].double().unsqueeze(-2)
            total = total + per_q * math.sqrt(math.pi / 2) / inst.dim * rn
            m = max(m, inst.dim)
    return total, m


def field_bits_per_token(codec, codes: dict, tokens: int) -> float:
    """Bits per token and head of the returned fields: bytes of each field / (B·H·T) · 8."""
    B = next(iter(codes.values())).shape[0]
    total = sum(t.numel() * t.element_size() for t in codes.values())
    return 8.0 * total / (B * codec.heads * tokens)


def cat_codes(parts: list[dict]) -> dict:
    return {name: torch.cat([p[name] for p in parts], dim=2) for name in parts[0]}


# ------------------------------------------------------------------------------ every peer


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@settings(max_examples=scaled_examples(4))
def test_scores_plus_offset_equal_inner_product_with_decode(kind, data, device):
    """`scores(q, codes) + offset(q) = ⟪q, decode(codes)⟫` to within `n_ops·eps32·A` (module
    docstring: two float32 paths to the same exact sum over the same absolute values A)."""
    codec = data.draw(codecs(kind)).to(device)
    T = codec.token_block * data.draw(st.integers(0, 3))
    keys = data.draw(key_tensors(2, T, codec.dim)).to(device)
    q = queries(data.draw(seeds), 2, data.draw(st.integers(1, 3)), codec.dim, device)
    codes = codec.encode(keys)
    s = codec.scores(q, codes) + codec.offset(q).unsqueeze(-1)
    ref = q.double() @ codec.decode(codes).double().transpose(-1, -2)
    assert s.shape == (2, H, q.shape[2], T) and s.dtype == torch.float32
    A, m = abs_magnitude(codec, q, codes)
    tol = (2 * codec.dim + m + 8) * EPS32 * A + 1e-37
    assert bool(((s.double() - ref).abs() <= tol).all())


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@settings(max_examples=scaled_examples(4))
def test_codes_shapes_dtypes_and_bits_equal_token_bits(kind, data, device):
    """Every field runs over tokens (or groups of `token_block`) along dim 2, codes are uint8 and side
    values float16, decode is float32 (B, H, T, d), and the bytes returned per token equal
    `token_bits()` — for KIVI at T a multiple of G."""
    codec = data.draw(codecs(kind)).to(device)
    T = codec.token_block * data.draw(st.integers(1, 3))
    keys = data.draw(key_tensors(2, T, codec.dim)).to(device)
    codes = codec.encode(keys)
    assert set(codes) == set(codec.code_fields())
    for name, per in codec.code_fields().items():
        t = codes[name]
        assert t.shape[:3] == (2, H, T // per) and t.device.type == device.type
        assert t.dtype == (torch.uint8 if name.endswith(("codes", "signs")) else torch.float16)
    assert math.isclose(field_bits_per_token(codec, codes, T), codec.token_bits(), rel_tol=1e-12)
    dec = codec.decode(codes)
    assert dec.shape == keys.shape and dec.dtype == torch.float32


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@settings(max_examples=scaled_examples(4))
def test_encode_of_a_block_equals_encode_block_by_block(kind, data):
    """A token's code does not depend on what it was encoded with: coding T tokens at once equals
    coding them in pieces (multiples of `token_block`; for KIVI, group by group) and concatenating."""
    codec = data.draw(codecs(kind))
    n = data.draw(st.integers(1, 5))
    T = codec.token_block * n
    keys = data.draw(key_tensors(1, T, codec.dim))
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    bounds = [0] + [c * codec.token_block for c in cuts] + [T]
    whole = codec.encode(keys)
    pieces = cat_codes([codec.encode(keys[:, :, a:b]) for a, b in itertools.pairwise(bounds)])
    assert all(torch.equal(whole[k], pieces[k]) for k in whole)


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@settings(max_examples=scaled_examples(8))
def test_settings_and_parameters_rebuild_the_same_code(kind, data):
    """`from_parameters(settings(), parameters())` (through JSON and the registry) codes identically."""
    codec = data.draw(codecs(kind))
    keys = data.draw(key_tensors(1, codec.token_block * 2, codec.dim))
    settings_json = json.loads(json.dumps(codec.settings()))
    again = codec_from_parameters(codec.kind, settings_json, {k: v.clone() for k, v in codec.parameters().items()})
    assert type(again) is type(codec) and CODECS[codec.kind] is type(codec)
    a, b = codec.encode(keys), again.encode(keys)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(codec.decode(a), again.decode(b))
    assert again.token_bits() == codec.token_bits() and again.label() == codec.label()


def _split(n_o: int) -> dict:
    return dict(outlier_index=torch.arange(n_o)[None], outlier_bits=3)


@pytest.mark.parametrize(
    "make, d, bits",
    [
        (lambda d: KiviCodec.for_layer(1, d, bits=2, group=32), 128, 3.0 * 128),   # KIVI-2: 2 + 32/32
        (lambda d: KiviCodec.for_layer(1, d, bits=2, group=32), 64, 3.0 * 64),
        (lambda d: KiviCodec.for_layer(1, d, bits=4, group=32), 128, 5.0 * 128),   # KIVI-4: 4 + 32/32
        (lambda d: KiviCodec.for_layer(1, d, bits=4, group=32), 64, 5.0 * 64),
        (lambda d: QJLCodec.random(1, d, 2 * d), 128, 256 + 16),                   # 2.125 / coordinate
        (lambda d: QJLCodec.random(1, d, 4 * d), 128, 512 + 16),                   # the first layers
        (lambda d: QJLCodec.random(1, d, 2 * d), 64, 128 + 16),                    # 2.25
        *[(lambda d, b=b: TurboQuantMSE.random(1, d, b), d, b * d + 16) for d in (64, 128) for b in (1, 2, 3, 4)],
        *[(lambda d, b=b: TurboQuantProd.random(1, d, b), d, b * d + (32 if b > 1 else 16))
          for d in (64, 128) for b in (1, 2, 3, 4)],
        # the split: two instances, each with its own norm(s)
        (lambda d: TurboQuantMSE.random(1, d, 2, **_split(32)), 128, 32 * 3 + 96 * 2 + 32),
        (lambda d: TurboQuantMSE.random(1, d, 2, **_split(64)), 128, 64 * 3 + 64 * 2 + 32),
        (lambda d: TurboQuantProd.random(1, d, 2, **_split(32)), 128, 32 * 3 + 96 * 2 + 64),
        (lambda d: TurboQuantMSE.random(1, d, 2, **_split(16)), 64, 16 * 3 + 48 * 2 + 32),
    ],
)
def test_token_bits_at_the_published_settings(make, d, bits):
    """KIVI-2/-4 at G = 32: 3 and 5 bits per coordinate; QJL m = 2d: 2 + 16/d; TurboQuant_mse
    b + 16/d, _prod b + 32/d (b + 16/d at b = 1); the splits count both instances' norms."""
    assert make(d).token_bits() == bits


def _kivi(**kw):
    return KiviCodec.for_layer(2, 8, **kw)


def _full(value: float, T: int = 1) -> torch.Tensor:
    return torch.full((1, 2, T, 8), value)


def _tq_split(index: list[list[int]], **kw):
    return TurboQuantMSE.random(2, 8, 2, outlier_index=torch.tensor(index), **kw)


_MSE8 = TurboQuantMSE.random(2, 8, 2)
_QJL_SETTINGS = {"heads": 2, "dim": 8, "m": 4, "sketch_kind": "gaussian", "side_dtype": "float16"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: _kivi(bits=5), r"bits must be one of \(1, 2, 3, 4, 8\), got 5"),
        (lambda: _kivi(bits=0), r"bits must be one of"),
        (lambda: _kivi(group=0), r"group must be an integer ≥ 1, got 0"),
        (lambda: _kivi(group=-3), r"group must be an integer ≥ 1"),
        (lambda: QJLCodec.random(2, 8, 0), r"m must be an integer ≥ 1, got 0"),
        (lambda: QJLCodec.random(2, 8, 4, sketch="srht"), r"sketch must be one of"),
        (lambda: TurboQuantMSE.random(2, 8, 5), r"bits must be an integer in \[1, 4\], got 5"),
        (lambda: TurboQuantProd.random(2, 8, 0), r"bits must be an integer ≥ 1, got 0"),
        (lambda: _tq_split([[0, 0, 1], [1, 2, 3]], outlier_bits=3),
         r"outlier_index must hold 3 distinct channels in \[0, 8\) per head"),
        (lambda: _tq_split([[0, 1, 9], [1, 2, 3]], outlier_bits=3), r"outlier_index must hold 3 distinct channels"),
        (lambda: _tq_split([[0, 1, 2], [1, 2, 3]]), r"outlier_bits is required with outlier_index"),
        (lambda: _tq_split([[0, 1, 2], [1, 2, 3]], outlier_bits=5), r"outlier_bits must be an integer in \[1, 4\]"),
        (lambda: _tq_split([[0, 1], [1, 2]], outlier_bits=2),
         r"outlier_index: the outlier instance has 2 channels; its sphere codebook needs at least 3"),
        (lambda: _kivi().encode(torch.zeros(1, 3, 32, 8)), r"keys must have shape \(B, H=2, T, d=8\)"),
        (lambda: _kivi().encode(torch.zeros(1, 2, 31, 8)), r"keys must hold a multiple of group = 32"),
        (lambda: QJLCodec.random(2, 8, 4).encode(torch.zeros(1, 2, 3, 9)), r"keys must have shape"),
        (lambda: TurboQuantProd.random(2, 8, 2).encode(_full(float("nan"))), r"keys must be finite"),
        (lambda: _kivi(group=1).encode(_full(float("inf"))), r"keys must be finite"),
        (lambda: _kivi(group=1).encode(_full(1e5)), r"keys: the zero point .* overflows torch.float16"),
        (lambda: _kivi(bits=1, group=2).encode(torch.tensor([-6e4, 6e4]).reshape(1, 1, 2, 1).expand(1, 2, 2, 8)),
         r"keys: the scale .* overflows torch.float16"),
        (lambda: QJLCodec.random(2, 8, 4).encode(_full(3e4)), r"keys: the key norm ‖k‖ overflows"),
        (lambda: _MSE8.encode(_full(3e4)), r"keys: the key norm ‖k‖ overflows"),
        (lambda: TurboQuantProd.random(2, 8, 1).encode(_full(3e4)), r"keys: the residual norm"),
        (lambda: QJLCodec.random(2, 8, 4).scores(torch.zeros(1, 2, 1, 7), {}), r"q must have shape \(B, H=2, Q, d=8\)"),
        (lambda: QJLCodec.from_parameters(_QJL_SETTINGS, {}), r"tensor 'sketch' is missing"),
        (lambda: TurboQuantMSE.from_parameters({**_MSE8.settings(), "bits": 9}, _MSE8.parameters()),
         r"bits must be an integer in \[1, 4\]"),
        (lambda: TurboQuantMSE.from_parameters(_MSE8.settings(), {"rotation": torch.randn(2, 8, 8)}),
         r"rotation must be orthogonal"),
        (lambda: TurboQuantMSE.from_parameters(_MSE8.settings(), {**_MSE8.parameters(), "sketch": torch.eye(8)}),
         r"unexpected tensor\(s\) \['sketch'\]"),
        (lambda: KiviCodec.from_parameters(_kivi().settings(), {"x": torch.zeros(1)}), r"KIVI has no tensors"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------ KIVI


@pytest.mark.theorem("uniform_quant_half_step")
@given(data=st.data(), bits=st.sampled_from(KIVI_BITS), G=st.sampled_from([1, 2, 5, 32]))
@settings(max_examples=scaled_examples(1))
def test_kivi_round_trip_errs_by_at_most_half_a_step(data, bits, G):
    """|k − k̂| ≤ s/2 per entry, `s = (max − min)/(2^b − 1)` of the entry's (group, channel), computed
    here in float64 from the keys; plus what float16 storage of `z` and `s` adds. With `z' = fl16(z)`,
    `s' = fl16(s)`, `|z' − z| ≤ δz = u|z| + τ`, `|s' − s| ≤ δs = u s + τ` (u = 2⁻¹¹, τ = 2⁻²⁵):
    inside the grid the error is ≤ s'/2 ≤ (s + δs)/2; below it ≤ δz; above it
    ≤ (2^b − 1)δs + δz (the grid's top `z' + (2^b−1)s'` is that close to the max); decoding in
    float32 adds ≤ eps32·|k̂|. So the error exceeds the half step s/2 by at most
    (2^b − 1)(u s + τ) + u|z| + τ + eps32·|k̂| — float16 units of the group's range, not steps."""
    d = data.draw(st.integers(1, 20))
    codec = KiviCodec.for_layer(H, d, bits=bits, group=G)
    n_groups = data.draw(st.integers(1, 3))
    keys = data.draw(key_tensors(2, G * n_groups, d, dtype=torch.float64))
    k_hat = codec.decode(codec.encode(keys)).double().numpy()
    x = keys.numpy().reshape(2, H, n_groups, G, d)
    lo, hi = x.min(axis=3, keepdims=True), x.max(axis=3, keepdims=True)
    top = 2.0**bits - 1
    s = (hi - lo) / top
    dz, ds = U16 * np.abs(lo) + TINY16, U16 * s + TINY16
    bound = np.maximum((s + ds) / 2, top * ds + dz) + EPS32 * (np.abs(lo) + dz + top * (s + ds))
    err = np.abs(x - k_hat.reshape(x.shape))
    assert bool((err <= bound).all())


@given(data=st.data(), bits=st.sampled_from(KIVI_BITS), G=st.sampled_from([1, 4, 32]))
@settings(max_examples=scaled_examples(2))
def test_kivi_constant_groups_decode_exactly(data, bits, G):
    """A (group, channel) whose G values are equal has step 0: code 0, decoded to z exactly (the
    values are float16 numbers here, so z is stored exactly)."""
    d = data.draw(st.integers(1, 16))
    g = torch.Generator().manual_seed(data.draw(seeds))
    n = data.draw(st.integers(1, 3))
    keys = torch.randn(1, H, n * G, d, generator=g, dtype=torch.float64)
    const = torch.rand(1, H, n, 1, d, generator=g) < 0.5
    vals = (torch.randn(1, H, n, 1, d, generator=g) * 10).half().double()
    keys = torch.where(const, vals, keys.reshape(1, H, n, G, d)).reshape(1, H, n * G, d)
    codec = KiviCodec.for_layer(H, d, bits=bits, group=G)
    codes = codec.encode(keys)
    c = unpack_codes(codes["codes"], bits, d).reshape(1, H, n, G, d)
    mask = const.expand(1, H, n, G, d)
    assert bool((c[mask] == 0).all())
    dec = codec.decode(codes).double().reshape(1, H, n, G, d)
    assert torch.equal(dec[mask], keys.reshape(1, H, n, G, d)[mask])


@given(seed=seeds, r=st.integers(1, 3), steps=st.lists(st.integers(1, 40), min_size=1, max_size=6))
@settings(max_examples=scaled_examples(4))
def test_kivi_residual_is_a_keystore_policy(seed, r, steps):
    """KIVI's residual = `KeyStore(codec, window=0, flush_block=R)`: tokens are coded R at a time
    (R a multiple of G), 0…R−1 stay exact, and the stored codes are the codes of those tokens."""
    G = 4
    R = G * r
    codec = KiviCodec.for_layer(H, 8, bits=2, group=G)
    keys = torch.randn(1, H, sum(steps), 8, generator=torch.Generator().manual_seed(seed))
    store = KeyStore(codec, window=0, flush_block=R)
    at = 0
    for n in steps:
        store.append(keys[:, :, at:at + n])
        at += n
        assert store.coded_length == at - at % R and store.recent_length == at % R
    if store.coded_length:
        ref = codec.encode(keys[:, :, :store.coded_length])
        assert all(torch.equal(store.codes()[k], ref[k]) for k in ref)


# ------------------------------------------------------------------------------ QJL


def _one_pair(seed: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A key and a correlated query (float64, (d,))."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(d, generator=g, dtype=torch.float64) * 3
    q = 0.6 * k / k.norm() * 2 + torch.randn(d, generator=g, dtype=torch.float64) * 0.5
    return k, q


def _estimates(codec, k: torch.Tensor, q: torch.Tensor) -> np.ndarray:
    """The codec's logit of q against k, once per head (each head an independent draw)."""
    N, d = codec.heads, codec.dim
    keys = k.float().expand(1, N, 1, d).contiguous()
    qs = q.float().expand(1, N, 1, d).contiguous()
    return codec.scores(qs, codec.encode(keys))[0, :, 0, 0].double().numpy()


def _five_se(x: np.ndarray) -> float:
    return 5 * float(x.std(ddof=1)) / math.sqrt(x.size)


@pytest.mark.theorem("qjl_unbiased")
@pytest.mark.parametrize("m", [16, 64, 256])
@given(seed=seeds)
@settings(max_examples=2)
def test_qjl_estimator_is_unbiased_with_variance_over_m(m, seed):
    """Gaussian sketch (Def. 3.1), N = 2000 independent sketches: the mean of
    `√(π/2)/m ‖k‖ ⟪S q, sign(S k)⟫` is within 5 standard errors of `ρ ⟪q, k⟫`, `ρ = fl16(‖k‖)/‖k‖`
    (the stored norm), and its variance within 5 standard errors (from the sample 4th moment) of
    `ρ² ((π/2) ‖q‖² ‖k‖² − ⟪q, k⟫²) / m`: the estimator is unbiased and its variance falls as 1/m.
    Measured (d = 24, 4 seeds): variance / theory in [0.95, 1.03] for m = 16, 64, 256; the mean
    within 2.4 standard errors."""
    d, N = 24, 2000
    k, q = _one_pair(seed, d)
    codec = QJLCodec.random(N, d, m, seed, sketch="gaussian")
    est = _estimates(codec, k, q)
    kn = float(k.norm())
    rho = float(np.float16(kn)) / kn
    ip, qn2 = float(q @ k), float(q @ q)
    assert abs(est.mean() - rho * ip) <= _five_se(est)
    var = est.var(ddof=1)
    theory = rho**2 * ((math.pi / 2) * qn2 * kn**2 - ip**2) / m
    se_var = math.sqrt(float(((est - est.mean()) ** 4).mean() - var**2) / N)
    assert abs(var - theory) <= 5 * se_var


@given(seed=seeds)
@settings(max_examples=2)
def test_qjl_orthogonal_sketch_rows_and_mean(seed):
    """The orthogonalised sketch of the paper's experiments: every block of d rows satisfies
    `S_b S_bᵀ = d I`, and the estimator's mean is `√d / E‖g‖ · ρ ⟪q, k⟫` (g ~ 𝒩(0, I_d); the factor
    from mpmath's Γ: 1.0317 at d = 8) within 5 standard errors — biased by that factor."""
    d, m, N = 8, 16, 300
    codec = QJLCodec.random(N, d, m, seed)
    S = codec.sketch.double()
    for b in range(0, m, d):
        blk = S[:, b:b + d]
        assert torch.allclose(blk @ blk.transpose(-1, -2), d * torch.eye(d, dtype=torch.float64), atol=64 * d * EPS32)
    with mp.workdps(30):
        factor = float(mp.sqrt(d) * mp.gamma(mp.mpf(d) / 2) / (mp.sqrt(2) * mp.gamma(mp.mpf(d + 1) / 2)))
    assert math.isclose(orthogonal_sketch_bias(d), factor, rel_tol=1e-12)
    k, q = _one_pair(seed, d)
    est = _estimates(codec, k, q)
    kn = float(k.norm())
    rho = float(np.float16(kn)) / kn
    assert abs(est.mean() - factor * rho * float(q @ k)) <= _five_se(est)


# ------------------------------------------------------------------------------ TurboQuant


def _cell_mass_and_mean(a, b, d):
    """P(a < X ≤ b) and E[X; a < X ≤ b] for one coordinate X of a uniform point of S^{d−1}, in mpmath:
    (1 + X)/2 ~ Beta((d−1)/2, (d−1)/2), and ∫ x (1 − x²)^α dx = −(1 − x²)^{α+1} / (2(α+1))."""
    al = mp.mpf(d - 3) / 2
    Z = mp.beta(mp.mpf(1) / 2, al + 1)
    P = mp.betainc(al + 1, al + 1, (1 + a) / 2, (1 + b) / 2, regularized=True)
    M1 = ((1 - a * a) ** (al + 1) - (1 - b * b) ** (al + 1)) / (2 * (al + 1)) / Z
    return P, M1


@pytest.mark.parametrize("d", [16, 32, 64, 96, 128])
@pytest.mark.parametrize("b", [1, 2, 3, 4])
def test_sphere_codebook_satisfies_the_lloyd_max_conditions(b, d):
    """`sphere_lloyd_max(b, d)`, checked by closed forms (regularised incomplete Beta, mpmath):
    thresholds are the midpoints of the levels; each level is the conditional mean of its cell to
    within h = 2/2¹⁸ (the table is a Riemann sum on that grid, so each cell edge is resolved to one
    grid step; measured ≤ 0.5 h); and its distortion 1/d − Σ (2 c_i M1_i − c_i² P_i) agrees to 10⁻⁶
    relative (measured ≤ 5·10⁻⁸)."""
    L = sphere_lloyd_max(b, d)
    assert torch.equal(L.thresholds, (L.levels[1:] + L.levels[:-1]) / 2)
    h = 2.0 / 2**18
    with mp.workdps(30):
        c = [mp.mpf(float(x)) for x in L.levels]
        edges = [mp.mpf(-1)] + [(c[i] + c[i + 1]) / 2 for i in range(len(c) - 1)] + [mp.mpf(1)]
        D = mp.mpf(1) / d
        for i, ci in enumerate(c):
            P, M1 = _cell_mass_and_mean(edges[i], edges[i + 1], d)
            assert abs(float(M1 / P - ci)) <= h
            D += -2 * ci * M1 + ci * ci * P
        assert math.isclose(L.distortion, float(D), rel_tol=1e-6)


@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("b", [1, 2, 3, 4])
def test_turboquant_mse_distortion_equals_the_codebook_distortion(b, d):
    """On N = 4096 random unit keys (2 heads, each its own rotation), the mean squared error per
    coordinate `‖k − k̂‖²/d` is within 5 standard errors of `sphere_lloyd_max(b, d).distortion`
    (Thm. 1's refined values, d-specific). Measured d·D (empirical over 8192 keys / codebook),
    d = 128: b=1 0.3611/0.3609, b=2 0.1162/0.1160, b=3 0.0340/0.0340, b=4 0.00935/0.00931;
    d = 64: 0.3580/0.3584, 0.1150/0.1145, 0.0336/0.0334, 0.00913/0.00913."""
    heads, n = 2, 2048
    codec = TurboQuantMSE.random(heads, d, b, seed=100 * b + d)
    g = torch.Generator().manual_seed(7 * b + d)
    k = torch.randn(1, heads, n, d, generator=g, dtype=torch.float64)
    k = k / k.norm(dim=-1, keepdim=True)
    err = ((k - codec.decode(codec.encode(k)).double()) ** 2).sum(-1).flatten().numpy() / d
    D = sphere_lloyd_max(b, d).distortion
    assert abs(err.mean() - D) <= _five_se(err), (err.mean() * d, D * d)


@pytest.mark.parametrize("b", [1, 2, 3])
@given(seed=seeds)
@settings(max_examples=2)
def test_turboquant_prod_is_unbiased_over_the_sketch(b, seed):
    """TurboQuant_prod with one fixed rotation Π and N = 4000 independent i.i.d. 𝒩(0, 1) sketches S
    (one per head): the mean of the logit is within 5 standard errors of ⟪q, k⟫, plus the bias of
    storing ‖r‖ in float16: `|(fl16‖r‖/‖r‖ − 1) ⟪q, r⟫| ≤ u ‖q‖ ‖r‖` (u = 2⁻¹¹; ‖r‖ ≤ the stored
    value·(1 + u)). Measured over 20 seeds (b = 1, 2): (mean − ⟪q, k⟫)/SE spread like 𝒩(0, 1), all
    within ±2.4."""
    d, N = 32, 4000
    g = torch.Generator().manual_seed(seed)
    k, q = _one_pair(seed, d)
    rot = TurboQuantMSE.random(1, d, 1, seed).rotation.expand(N, d, d).contiguous() if b > 1 else None
    codec = TurboQuantProd(bits=b, rotation=rot, sketch=torch.randn(N, d, d, generator=g))
    est = _estimates(codec, k, q)
    r_max = float(codec.encode(k.float().expand(1, N, 1, d).contiguous())["residual_norm"].double().max()) * (1 + U16)
    assert abs(est.mean() - float(q @ k)) <= _five_se(est) + U16 * float(q.norm()) * r_max


@pytest.mark.parametrize("split", [None, (64, 16)])
@given(data=st.data(), b=st.integers(2, 4))
@settings(max_examples=scaled_examples(8))
def test_turboquant_prod_starts_with_the_b_minus_1_bit_mse_code(split, data, b):
    """The MSE part of a b-bit TurboQuant_prod is the (b−1)-bit TurboQuant_mse with the same
    rotations (so its distortion is the codebook's, as checked above)."""
    seed = data.draw(seeds)
    if split is None:
        d = data.draw(st.sampled_from([12, 64]))
        prod = TurboQuantProd.random(H, d, b, seed)
    else:
        d, n_o = split
        prod = TurboQuantProd.random(H, d, b, seed, outlier_index=outlier_sets(d, n_o, seed),
                                     outlier_bits=data.draw(st.integers(2, 4)))
    keys = data.draw(key_tensors(1, 5, d))
    mse = prod.mse_stage()
    assert isinstance(mse, TurboQuantMSE) and mse.bits == b - 1
    a, m = prod.encode(keys), mse.encode(keys)
    assert set(m) <= set(a) and all(torch.equal(a[k], m[k]) for k in m)


@pytest.mark.parametrize("cls", [TurboQuantMSE, TurboQuantProd])
@given(data=st.data())
@settings(max_examples=scaled_examples(8))
def test_outlier_split_is_two_independent_instances(cls, data):
    """With an outlier split, the outlier channels of each head are coded exactly as an unsplit codec
    with the outlier rotation (and sketch) codes them alone, and the other channels (the complement,
    computed here with numpy) as one with the regular rotation; decode puts each back in place."""
    d, n_o = data.draw(st.sampled_from(SPLITS))
    seed = data.draw(seeds)
    oi = outlier_sets(d, n_o, seed)
    codec = cls.random(H, d, data.draw(st.integers(1, 4)), seed, outlier_index=oi,
                       outlier_bits=data.draw(st.integers(1, 4)))
    keys = data.draw(key_tensors(1, 4, d))
    codes, dec = codec.encode(keys), codec.decode(codec.encode(keys))
    for h in range(H):
        regular = torch.from_numpy(np.setdiff1d(np.arange(d), oi[h].numpy()))
        for prefix, chans, bits, rot, sk in (
                ("outlier_", oi[h], codec.outlier_bits, codec.outlier_rotation, codec.outlier_sketch),
                ("", regular, codec.bits, codec.rotation, codec.sketch)):
            single = cls(bits=bits, rotation=None if rot is None else rot[h:h + 1],
                         sketch=None if sk is None else sk[h:h + 1])
            ref = single.encode(keys[:, h:h + 1][..., chans])
            assert all(torch.equal(codes[prefix + k][:, h:h + 1], v) for k, v in ref.items())
            assert torch.equal(dec[:, h:h + 1][..., chans], single.decode(ref))


@given(seed=seeds, n=st.integers(1, 15))
@settings(max_examples=scaled_examples(4))
def test_outlier_channels_by_rms_are_the_largest_rms_channels(seed, n):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(2, H, 9, 16, generator=g) * torch.rand(H, 1, 16, generator=g) * 5
    got = outlier_channels_by_rms(keys, n)
    rms = np.sqrt((keys.double().numpy() ** 2).mean(axis=(0, 2)))
    for h in range(H):
        assert set(got[h].tolist()) == set(np.argsort(-rms[h])[:n].tolist())
        assert got[h].tolist() == sorted(got[h].tolist())


# ------------------------------------------------------------------------------ peer_codecs


def test_peer_codecs_build_one_codec_per_layer_with_distinct_seeds():
    """Layer l of seed s is drawn from seed 1000·s + l: layers differ, a rebuild is identical; QJL's
    published schedule (m = 2d, and 4d in the first layers) and the calibrated outlier split."""
    qjl = peer_codecs("qjl", 4, 2, 32, seed=3, initial_layers=2, initial_m=128)
    assert [c.m for c in qjl] == [128, 128, 64, 64] and all(c.sketch_kind == "orthogonal" for c in qjl)
    assert not torch.equal(qjl[2].sketch, qjl[3].sketch)
    again = peer_codecs("qjl", 4, 2, 32, seed=3, initial_layers=2, initial_m=128)
    assert all(torch.equal(a.sketch, b.sketch) for a, b in zip(qjl, again))
    assert torch.equal(qjl[2].sketch, QJLCodec.random(2, 32, 64, 3002).sketch)
    other = peer_codecs("qjl", 1, 2, 32, seed=4)[0]
    assert not torch.equal(other.sketch, peer_codecs("qjl", 1, 2, 32, seed=3)[0].sketch)
    tq = peer_codecs("turboquant_prod", 3, 2, 32, bits=3)
    assert len(tq) == 3 and not torch.equal(tq[0].rotation, tq[1].rotation)
    assert not torch.equal(tq[0].sketch, tq[1].sketch)
    kivi = peer_codecs("kivi", 2, 2, 64, bits=4)
    assert [c.label() for c in kivi] == ["kivi b=4 G=32"] * 2
    cal = [torch.randn(1, 2, 40, 64) * torch.linspace(0.1, 3, 64) for _ in range(2)]
    split = peer_codecs("turboquant_mse", 2, 2, 64, bits=2, outlier_channels=16, outlier_bits=3, calibration_keys=cal)
    assert torch.equal(split[1].outlier_index, outlier_channels_by_rms(cal[1], 16))
    assert split[0].token_bits() == 16 * 3 + 48 * 2 + 32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="polarquant"), r"kind must be one of the peer codecs"),
        (dict(kind="kivi", bits=5), r"bits must be one of"),
        (dict(kind="kivi", group=0), r"group must be an integer ≥ 1"),
        (dict(kind="kivi", m=4), r"unknown setting\(s\) \['m'\]"),
        (dict(kind="qjl", m=0), r"m must be an integer ≥ 1, got 0"),
        (dict(kind="qjl", sketch="x"), r"sketch must be one of"),
        (dict(kind="turboquant_mse"), r"needs the setting 'bits'"),
        (dict(kind="turboquant_mse", bits=5), r"bits must be an integer in \[1, 4\]"),
        (dict(kind="turboquant_prod", bits=2, outlier_channels=4, outlier_bits=3), r"needs calibration_keys"),
        (dict(kind="turboquant_prod", bits=2, outlier_channels=-1), r"outlier_channels must be an integer ≥ 0"),
        (dict(kind="kivi", layers=0), r"layers must be an integer ≥ 1"),
    ],
)
def test_peer_codecs_reject_bad_settings(kwargs, message):
    kw = {"layers": 2, "heads": 2, "dim": 16, **kwargs}
    with pytest.raises(CodecError, match=message):
        peer_codecs(**kw)
