"""Properties of betaspec's b-bit key code (impl.cache.codecs.transform.TransformCodec), of its
calibration (impl.calibration.fit) and of the quality report (impl.calibration.quality) — SPEC §1,
§3, §5, §7.

References are recomputed in float64 from the codec's stored tensors and the stored codes (the
packed indices are decoded by Python's little-endian integer conversion, the nearest level by
brute force, singular vectors by numpy), never by the implementation's own functions.

Float error bounds, u = eps/2 of the working dtype (first-order analysis, written with eps so a
factor ≈ 2 is spare): with a = |R||q| (entrywise absolute values), the fused score
α⟪Rq ⊙ σ, ℓ[idx]⟫ + ⟪BᵀRq, ĉ⟫ + ⟪q, m⟫ in float32 errs by ≤ (2d + r + 4)·eps32·M,
M = |α|⟪σ|ℓ[idx]|, a⟫ + ⟪|ĉ|, |B|ᵀa⟫ + ⟪|q|, |m|⟫ (the rotation's d-term sums, the level score's
d-term sum, the r-term correction, three roundings); the decoded key Rᵀ(αv + Bĉ) + m errs by
≤ (d + r + 4)·eps32·((|R|ᵀe)ᵢ + |mᵢ|), e = |α|σ|ℓ[idx]| + |B||ĉ|. float16 rounds to nearest:
|fl16(a) − a| ≤ max(2⁻¹¹|a|, 2⁻²⁵) (2⁻²⁵ = half the smallest subnormal), and rounding is monotone,
so a value known to lie in [lo, hi] rounds into [fl16(lo), fl16(hi)].
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import eps, orthogonal_matrix, orthonormal_frame, scaled_examples, seeds

from impl.cache.codecs.base import CodecError
from impl.cache.codecs.transform import TransformCodec, default_levels, sign_levels
from impl.cache.packing import pack_signs
from impl.calibration.fit import (
    code_residuals,
    data_free_codecs,
    fit_codec,
    fit_residual_basis,
)
from impl.calibration.quality import codec_quality
from impl.multilevel import gaussian_lloyd_max

E32, E64 = eps(torch.float32), eps(torch.float64)
U16 = 2.0**-11
TINY16 = 2.0**-25
Z = 5.0


def fp16(x: float) -> float:
    return float(torch.tensor(x, dtype=torch.float64).to(torch.float16))


def fp16_between(value: float, lo: float, hi: float) -> bool:
    """`value` is what rounding some real in [lo, hi] to float16 can give (monotone rounding)."""
    a, b = sorted((fp16(lo), fp16(hi)))
    return a <= value <= b


def ref_unpack(packed: torch.Tensor, bits: int, d: int) -> torch.Tensor:
    """Indices from the packed little-endian stream via Python integers (int64, (..., d))."""
    rows = packed.reshape(-1, packed.shape[-1]).cpu().tolist()
    mask = (1 << bits) - 1
    out = []
    for row in rows:
        v = int.from_bytes(bytes(row), "little")
        out.append([(v >> (i * bits)) & mask for i in range(d)])
    return torch.tensor(out, dtype=torch.int64).reshape(*packed.shape[:-1], d)


# ===================================================================================== strategies


@st.composite
def codec_settings(draw, max_heads: int = 2, max_d: int = 20):
    """A TransformCodec with random orthogonal R, mean, orthonormal basis (r ≤ 4), symmetric levels
    (Gaussian Lloyd–Max or a random odd table, so ℓ[idx] has the sign of the coordinate),
    optional per-channel scales, and every bits / coef_bits / scale_rule."""
    H = draw(st.integers(1, max_heads))
    d = draw(st.integers(2, max_d))
    b = draw(st.integers(1, 4))
    r = draw(st.integers(0, min(d, 4)))
    seed = draw(seeds)
    g = torch.Generator().manual_seed(seed)
    R = torch.stack([orthogonal_matrix(d, seed + h) for h in range(H)]).float()
    mean = (torch.randn(H, d, generator=g, dtype=torch.float64) * 10.0 ** draw(st.floats(-2, 2))).float()
    B = torch.stack([orthonormal_frame(d, r, seed + 7 + h) for h in range(H)]).float()
    n = 2**b
    if draw(st.booleans()):
        levels = default_levels(b, H)
    else:
        half = torch.cumsum(torch.rand(H, n // 2, generator=g, dtype=torch.float64) + 0.05, -1)
        levels = torch.cat([-half.flip(-1), half], -1).float()
    sigma = torch.exp(torch.randn(H, d, generator=g) * 0.7) if draw(st.booleans()) else torch.ones(H, d)
    return TransformCodec(mean=mean, rotation=R, basis=B, levels=levels, channel_scale=sigma, bits=b,
                          scale_rule=draw(st.sampled_from(["ls", "unbiased"])),
                          coef_bits=draw(st.sampled_from([16, 8, 4])))


@st.composite
def keys_for(draw, codec: TransformCodec, max_T: int = 5, dtype=None):
    """Keys (B, H, T, d): Gaussian, ties (values in {−1, 0, 1}), one-hot or equal to the mean
    (y = 0), at magnitudes 10^[−5, 3] around the codec's mean."""
    Bn, T = draw(st.integers(1, 2)), draw(st.integers(1, max_T))
    dtype = dtype or draw(st.sampled_from([torch.float32, torch.float64]))
    g = torch.Generator().manual_seed(draw(seeds))
    H, d = codec.heads, codec.dim
    kind = draw(st.sampled_from(["gaussian", "ties", "onehot", "gaussian"]))
    z = torch.randn(Bn, H, T, d, generator=g, dtype=torch.float64)
    if kind == "ties":
        z = torch.randint(-1, 2, (Bn, H, T, d), generator=g).double()
    elif kind == "onehot":
        z = torch.nn.functional.one_hot(torch.randint(0, d, (Bn, H, T), generator=g), d).double() * 2.5
    z = z * 10.0 ** draw(st.floats(-5, 3))
    if draw(st.integers(0, 5)) == 0:
        z[0, 0, 0] = 0.0
    return (codec.mean.double()[None, :, None, :] + z).to(dtype)


# ===================================================================================== references


def reference_from_codes(codec: TransformCodec, codes: dict) -> dict:
    """float64 quantities from the stored codes: idx, α, ĉ, v = σ ⊙ ℓ[idx], k̂ = Rᵀ(αv + Bĉ) + m."""
    H, d, r = codec.heads, codec.dim, codec.rank
    idx = ref_unpack(codes["codes"], codec.bits, d)                               # (B, H, T, d)
    lv = codec.levels.double().cpu()
    sigma = codec.channel_scale.double().cpu()
    v = torch.stack([lv[h][idx[:, h]] for h in range(H)], 1) * sigma[None, :, None, :]
    alpha = codes["scale"].double().cpu()
    if r == 0:
        c_hat = torch.zeros(*alpha.shape, 0, dtype=torch.float64)
    elif codec.coef_bits == 16:
        c_hat = codes["coeffs"].double().cpu()
    else:
        half = 2 ** (codec.coef_bits - 1) - 1
        q = ref_unpack(codes["coeffs"], codec.coef_bits, r)
        c_hat = codes["coef_scale"].double().cpu().unsqueeze(-1) * (q - half).double()
    R, B, m = codec.rotation.double().cpu(), codec.basis.double().cpu(), codec.mean.double().cpu()
    y_hat = alpha.unsqueeze(-1) * v + c_hat @ B.transpose(-1, -2)
    k_hat = y_hat @ R + m[None, :, None, :]
    e = alpha.abs().unsqueeze(-1) * v.abs() + c_hat.abs() @ B.abs().transpose(-1, -2)
    k_mag = e @ R.abs() + m.abs()[None, :, None, :]
    return {"idx": idx, "alpha": alpha, "c_hat": c_hat, "v": v, "k_hat": k_hat, "k_mag": k_mag}


def ref_code(codec: TransformCodec, keys: torch.Tensor) -> dict:
    """Encode in float64 from the definition: y = R(k − m), u = y/σ, x = u·√d/‖u‖, brute-force
    nearest level (ties up), v = σ ⊙ ℓ[idx]; per coordinate, the rounding scale of y
    (|R||k − m|) and whether x is within rounding of a threshold (either level is then right)."""
    k = keys.double().cpu()
    R, m = codec.rotation.double().cpu(), codec.mean.double().cpu()
    sigma = codec.channel_scale.double().cpu()[None, :, None, :]
    km = k - m[None, :, None, :]
    y = km @ R.transpose(-1, -2)
    y_mag = km.abs() @ R.abs().transpose(-1, -2)
    u = y / sigma
    d = codec.dim
    nrm = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    x = torch.where(nrm > 0, u * math.sqrt(d) / torch.where(nrm > 0, nrm, torch.ones_like(nrm)), 0.0)
    lv = codec.levels.double().cpu()[None, :, None, None, :]                      # (1, H, 1, 1, n)
    dist = (x[..., None] - lv).abs()
    n = lv.shape[-1]
    idx = torch.where(dist == dist.min(-1, keepdim=True).values, torch.arange(n), -1).amax(-1)
    t = (lv[..., 1:] + lv[..., :-1]) / 2
    x_err = 8 * (d + 4) * E64 * (y_mag / sigma / torch.where(nrm > 0, nrm / math.sqrt(d), 1.0) + x.abs())
    near = ((x[..., None] - t).abs() <= x_err[..., None] + 8 * E64 * t.abs()).any(-1)
    v = torch.stack([codec.levels.double().cpu()[h][idx[:, h]] for h in range(codec.heads)], 1) * sigma
    return {"y": y, "y_mag": y_mag, "idx": idx, "near": near, "v": v}


def fused_bounds(codec: TransformCodec, q: torch.Tensor, ref: dict) -> dict:
    """float64 right-hand side of fused_logit_identity and the float32 bounds of the module doc."""
    R, B, m = codec.rotation.double().cpu(), codec.basis.double().cpu(), codec.mean.double().cpu()
    q64 = q.double().cpu()
    d, r = codec.dim, codec.rank
    rq = q64 @ R.transpose(-1, -2)
    a = q64.abs() @ R.abs().transpose(-1, -2)
    alpha, c_hat, v = ref["alpha"], ref["c_hat"], ref["v"]
    rhs = (alpha.unsqueeze(-2) * (rq @ v.transpose(-1, -2))
           + (rq @ B) @ c_hat.transpose(-1, -2)
           + (q64 * m[None, :, None, :]).sum(-1, keepdim=True))
    lhs = q64 @ ref["k_hat"].transpose(-1, -2)
    M = (alpha.abs().unsqueeze(-2) * (a @ v.abs().transpose(-1, -2))
         + (a @ B.abs()) @ c_hat.abs().transpose(-1, -2)
         + (q64.abs() * m.abs()[None, :, None, :]).sum(-1, keepdim=True))
    mag_lhs = q64.abs() @ ref["k_mag"].transpose(-1, -2)
    return {"rhs": rhs, "lhs": lhs, "score_tol": (2 * d + r + 4) * E32 * M,
            "decode_tol": (d + r + 4) * E32 * ref["k_mag"], "mag_lhs": mag_lhs,
            "identity_tol": 8 * (d + r + 4) * E64 * (M + mag_lhs)}


# ===================================================================================== SPEC §1


@pytest.mark.exercises("ls_scale_minimizes")
@settings(max_examples=scaled_examples(2))
@given(H=st.integers(1, 3), d=st.integers(1, 70), T=st.integers(1, 6), seed=seeds,
       dtype=st.sampled_from([torch.float32, torch.float64]), mag=st.floats(-4, 3))
def test_one_bit_identity_codec_is_the_spec_sign_code(H, d, T, seed, dtype, mag):
    """b = 1, levels ±1, R = I, m = 0, no correction: idx = [k ≥ 0] (stored as pack_signs k),
    α = fl16(l1(k)/d) (float64 reference via fsum; the codec's float64 sum may differ by d·eps64
    relative, so α lies in the float16 rounding of that interval), and k̂ = α·signVec k exactly."""
    codec = TransformCodec.identity(H, d, bits=1)
    assert torch.equal(codec.levels, sign_levels(H))
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(2, H, T, d, generator=g, dtype=torch.float64) * 10.0**mag
    k = torch.where(torch.rand(2, H, T, d, generator=g) < 0.1, torch.zeros_like(k), k).to(dtype)
    codes = codec.encode(k)
    assert set(codes) == {"codes", "scale"} and codes["scale"].dtype == torch.float16
    assert torch.equal(codes["codes"], pack_signs(k))
    assert torch.equal(ref_unpack(codes["codes"], 1, d), (k >= 0).to(torch.int64))
    for row, a in zip(k.reshape(-1, d).tolist(), codes["scale"].reshape(-1).tolist()):
        l1 = math.fsum(abs(v) for v in row) / d
        assert fp16_between(a, l1 * (1 - 2 * d * E64), l1 * (1 + 2 * d * E64)), (a, l1)
    s = torch.where(k >= 0, 1.0, -1.0)
    assert torch.equal(codec.decode(codes), (codes["scale"].float().unsqueeze(-1) * s.float()))


# ===================================================================================== fused logits


def check_fused_logits(codec: TransformCodec, keys: torch.Tensor, q: torch.Tensor, device) -> None:
    """The fused-logit checks of the module doc for one codec, keys and queries (see below)."""
    cd = codec.to(device)
    codes = cd.encode(keys.to(device))
    ref = reference_from_codes(codec, codes)
    fb = fused_bounds(codec, q, ref)
    assert bool(((fb["lhs"] - fb["rhs"]).abs() <= fb["identity_tol"]).all())
    s = (cd.scores(q.to(device), codes) + cd.offset(q.to(device)).unsqueeze(-1)).cpu().double()
    assert s.shape == fb["rhs"].shape
    assert bool(((s - fb["rhs"]).abs() <= fb["score_tol"]).all()), float((s - fb["rhs"]).abs().max())
    k_hat = cd.decode(codes).cpu()
    assert k_hat.dtype == torch.float32 and k_hat.shape == keys.shape
    assert bool(((k_hat.double() - ref["k_hat"]).abs() <= fb["decode_tol"]).all())
    via_decode = (q @ k_hat.transpose(-1, -2)).double()
    qdec_tol = ((codec.dim + 1) * E32 * (q.double().abs() @ k_hat.double().abs().transpose(-1, -2))
                + q.double().abs() @ fb["decode_tol"].transpose(-1, -2))
    assert bool(((via_decode - s).abs() <= fb["score_tol"] + qdec_tol).all())


@pytest.mark.theorem("fused_logit_identity")
@settings(max_examples=scaled_examples(3))
@given(data=st.data())
def test_scores_plus_offset_equal_the_logit_against_the_decoded_key(data, device):
    """Random codecs (any b, r, coef_bits, scale rule, channel scale) and keys: from the stored
    codes, in float64, ⟪q, Rᵀ(αv + Bĉ) + m⟫ = α⟪Rq, v⟫ + ⟪BᵀRq, ĉ⟫ + ⟪q, m⟫ (both sides recomputed
    independently); codec.scores + offset equals it within the float32 bound of the module doc,
    codec.decode equals k̂ within its bound, and so q·decode(codes)ᵀ equals scores + offset within
    their sum."""
    codec = data.draw(codec_settings())
    keys = data.draw(keys_for(codec))
    q = (torch.randn(keys.shape[0], codec.heads, data.draw(st.integers(1, 3)), codec.dim,
                     generator=torch.Generator().manual_seed(data.draw(seeds)))
         * 10.0 ** data.draw(st.floats(-2, 2)))
    check_fused_logits(codec, keys, q, device)


@pytest.mark.theorem("fused_logit_identity")
@pytest.mark.parametrize("b", [1, 2, 3, 4])
def test_fused_logits_for_every_setting(b, device):
    """The same checks on the whole grid r ∈ {0, 3} × coef_bits ∈ {16, 8, 4} × scale_rule ∈
    {ls, unbiased} × channel scale off/on, for b bits (one fixed codec and key set each)."""
    H, d, T = 2, 12, 3
    seed = 1000 + b
    g = torch.Generator().manual_seed(seed)
    R = torch.stack([orthogonal_matrix(d, seed + h) for h in range(H)]).float()
    mean = torch.randn(H, d, generator=g)
    keys = mean[None, :, None, :] + torch.randn(2, H, T, d, generator=g) * 3
    q = torch.randn(2, H, 2, d, generator=g)
    sigmas = (torch.ones(H, d), torch.exp(torch.randn(H, d, generator=g) * 0.7))
    for r in (0, 3):
        B = torch.stack([orthonormal_frame(d, r, seed + 7 + h) for h in range(H)]).float()
        for coef_bits in (16, 8, 4):
            for rule in ("ls", "unbiased"):
                for sigma in sigmas:
                    codec = TransformCodec(mean=mean, rotation=R, basis=B, levels=default_levels(b, H),
                                           channel_scale=sigma, bits=b, scale_rule=rule, coef_bits=coef_bits)
                    check_fused_logits(codec, keys, q, device)


# ===================================================================================== the encoder


@pytest.mark.exercises("ls_scale_minimizes")
@settings(max_examples=scaled_examples(2))
@given(data=st.data())
def test_encode_matches_a_float64_recomputation_of_the_code(data):
    """idx is the brute-force nearest level of x = u/(‖u‖/√d), u = R(k − m)/σ (either neighbour
    within rounding of a threshold); α is the float16 rounding of ⟪y,v⟫/‖v‖² (ls) or ‖y‖²/⟪y,v⟫
    (unbiased) up to the float64 rounding of y; float16 coefficients are the rounding of
    c = Bᵀ(y − α̂v) with the stored α̂; integer ones are within half a step of c (the step itself
    being the float16 rounding of max|c|/(2^{q−1} − 1))."""
    codec = data.draw(codec_settings())
    keys = data.draw(keys_for(codec))
    codes = codec.encode(keys)
    got = reference_from_codes(codec, codes)
    ref = ref_code(codec, keys)
    d, r = codec.dim, codec.rank
    ok_idx = (got["idx"] == ref["idx"]) | ref["near"]
    assert bool(ok_idx.all())
    clean = ~ref["near"].any(-1)                                                 # rows without ties
    y, v, y_mag = ref["y"], ref["v"], ref["y_mag"]
    yv, vv, yy = (y * v).sum(-1), (v * v).sum(-1), (y * y).sum(-1)
    dyv = 4 * (d + 2) * E64 * ((y_mag * v.abs()).sum(-1) + (y * v).abs().sum(-1))  # |Δ⟪y,v⟫|
    dyy = 4 * (d + 2) * E64 * (2 * (y_mag * y.abs()).sum(-1) + yy)                  # |Δ‖y‖²|
    for i in zip(*torch.nonzero(clean, as_tuple=True)):
        a = float(got["alpha"][i])
        if codec.scale_rule == "ls":
            lo, hi = float((yv[i] - dyv[i]) / vv[i]), float((yv[i] + dyv[i]) / vv[i])
            lo, hi = lo - 4 * E64 * abs(lo), hi + 4 * E64 * abs(hi)
        elif float(yv[i]) == 0:
            lo = hi = 0.0
        else:
            lo, hi = sorted((float((yy[i] - dyy[i]) / (yv[i] + dyv[i])), float((yy[i] + dyy[i]) / (yv[i] - dyv[i]))))
            lo, hi = lo - 4 * E64 * abs(lo), hi + 4 * E64 * abs(hi)
        assert fp16_between(a, lo, hi), (a, lo, hi)
        if not r:
            continue
        h = i[1]
        Bm = codec.basis.double()[h]
        c = (y[i] - got["alpha"][i] * v[i]) @ Bm
        dc = 4 * (d + 2) * E64 * ((y_mag[i] + y[i].abs() + got["alpha"][i].abs() * v[i].abs()) @ Bm.abs())
        c_hat = got["c_hat"][i]
        if codec.coef_bits == 16:
            assert all(fp16_between(float(ch), float(cc - e), float(cc + e)) for ch, cc, e in zip(c_hat, c, dc))
        else:
            half = 2 ** (codec.coef_bits - 1) - 1
            step = float(codes["coef_scale"][i])
            cmax, dmax = float(c.abs().max()), float(dc.max())
            assert fp16_between(step, (cmax - dmax) / half, (cmax + dmax) / half)
            step_exact = (cmax + dmax) / half
            bound = step / 2 + half * max(U16 * step_exact, TINY16) + dc
            assert bool(((c - c_hat).abs() <= bound).all()), float((c - c_hat).abs().max())


@settings(max_examples=scaled_examples(4))
@given(data=st.data())
def test_a_tokens_code_does_not_depend_on_the_tokens_encoded_with_it(data):
    """Encoding a block of tokens gives, field by field and bit for bit, the codes of encoding
    each token (and each batch row) on its own: prefill and decode store the same bits."""
    codec = data.draw(codec_settings())
    keys = data.draw(keys_for(codec, max_T=6))
    block = codec.encode(keys)
    one_by_one = [codec.encode(keys[:, :, t:t + 1]) for t in range(keys.shape[2])]
    rows = [codec.encode(keys[i:i + 1]) for i in range(keys.shape[0])]
    assert set(block) == set(codec.code_fields())
    for name, value in block.items():
        assert torch.equal(value, torch.cat([c[name] for c in one_by_one], dim=2)), name
        assert torch.equal(value, torch.cat([c[name] for c in rows], dim=0)), name


@settings(max_examples=scaled_examples(4))
@given(codec=codec_settings(), side=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]))
def test_token_bits_count_every_stored_bit(codec, side):
    """token_bits() is the bits per token of the returned codes (every field, its dtype width)
    and the closed form 8⌈d·b/8⌉ + s (+ 16r, or 8⌈r·q/8⌉ + s, when r > 0), s the side width."""
    codec = replace(codec, side_dtype=side)
    codes = codec.encode(codec.mean[None, :, None, :].expand(1, codec.heads, 3, codec.dim) + 0.5)
    per_token = sum(v[0, 0, 0].numel() * v.element_size() * 8 for v in codes.values())
    assert codec.token_bits() == per_token
    s = torch.finfo(side).bits
    d, b, r, cb = codec.dim, codec.bits, codec.rank, codec.coef_bits
    closed = 8 * math.ceil(d * b / 8) + s + (0 if r == 0 else (s * r if cb == 16 else 8 * math.ceil(r * cb / 8) + s))
    assert codec.token_bits() == closed
    assert codec.bits_per_coordinate() == closed / d


@settings(max_examples=scaled_examples(4))
@given(codec=codec_settings())
def test_settings_and_parameters_rebuild_the_same_codec(codec):
    """from_parameters(settings(), parameters()) rebuilds a codec with equal settings and tensors
    that encodes bit for bit alike; a missing tensor or a bad setting raises CodecError naming it."""
    rebuilt = TransformCodec.from_parameters(codec.settings(), codec.parameters())
    assert rebuilt.settings() == codec.settings()
    for name, t in codec.parameters().items():
        assert torch.equal(rebuilt.parameters()[name], t), name
    k = codec.mean[None, :, None, :] + torch.randn(1, codec.heads, 4, codec.dim, generator=torch.Generator().manual_seed(1))
    a, b = codec.encode(k), rebuilt.encode(k)
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    tensors = dict(codec.parameters())
    del tensors["levels"]
    with pytest.raises(CodecError, match="tensor 'levels' is missing"):
        TransformCodec.from_parameters(codec.settings(), tensors)
    with pytest.raises(CodecError, match="'bits'"):
        TransformCodec.from_parameters({**codec.settings(), "bits": 5}, codec.parameters())
    with pytest.raises(CodecError, match="tensor 'basis' has shape"):
        TransformCodec.from_parameters({**codec.settings(), "rank": codec.rank + 1}, codec.parameters())


def test_default_levels_are_signs_then_gaussian_lloyd_max():
    assert torch.equal(default_levels(1, 3), torch.tensor([[-1.0, 1.0]] * 3))
    for b in (2, 3, 4):
        lv = default_levels(b, 2, dtype=torch.float64)
        assert lv.shape == (2, 2**b) and torch.equal(lv[0], gaussian_lloyd_max(b).levels) and torch.equal(lv[1], lv[0])
    for bad in (0, 5):
        with pytest.raises(ValueError, match="bits"):
            default_levels(bad, 1)


def _good(H=1, d=4, b=2, r=1):
    return {"mean": torch.zeros(H, d), "rotation": torch.eye(d).expand(H, d, d).clone(),
            "basis": torch.eye(d)[:, :r].expand(H, d, r).clone(), "levels": default_levels(b, H),
            "channel_scale": torch.ones(H, d), "bits": b}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rotation": torch.eye(4).expand(1, 4, 4) * 1.01}, "rotation must be orthogonal"),
        ({"rotation": torch.eye(3).expand(1, 3, 3)}, r"rotation must have shape \(H, d, d\)"),
        ({"basis": torch.ones(1, 4, 1)}, "basis must have orthonormal columns"),
        ({"basis": torch.zeros(1, 3, 1)}, r"basis must have shape \(H, d, r\)"),
        ({"levels": torch.tensor([[0.0, 0.0, 1.0, 2.0]])}, "levels must be strictly increasing"),
        ({"levels": torch.tensor([[-1.0, 1.0]])}, r"levels must have shape \(H, 2\^bits\)"),
        ({"channel_scale": torch.zeros(1, 4)}, "channel_scale must be positive"),
        ({"mean": torch.zeros(4)}, r"mean must have at least 2"),
        ({"mean": torch.full((1, 4), float("nan"))}, "mean must be finite"),
        ({"bits": 0}, "bits"),
        ({"bits": 5, "levels": torch.arange(32.0)[None]}, "bits"),
        ({"coef_bits": 12}, "coef_bits must be one of"),
        ({"coef_bits": True}, "coef_bits must be one of"),
        ({"scale_rule": "median"}, "scale_rule must be one of"),
        ({"side_dtype": "int8"}, "side_dtype must be one of"),
    ],
)
def test_bad_codec_construction_raises_value_error_naming_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        TransformCodec(**{**_good(), **change})


def test_bad_keys_and_queries_raise_value_error():
    codec = TransformCodec(**_good())
    with pytest.raises(ValueError, match="keys must be finite"):
        codec.encode(torch.full((1, 1, 2, 4), float("nan")))
    with pytest.raises(ValueError, match=r"keys must have shape \(B, H=1, T, d=4\)"):
        codec.encode(torch.zeros(1, 1, 2, 5))
    with pytest.raises(ValueError, match=r"keys must have at least 4 dimension"):
        codec.encode(torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"q must have shape \(B, H=1, Q, d=4\)"):
        codec.scores(torch.zeros(1, 1, 1, 3), codec.encode(torch.ones(1, 1, 2, 4)))


@pytest.mark.parametrize("coef_bits", [16, 8])
def test_keys_whose_side_values_overflow_float16_are_rejected(coef_bits):
    """α ≈ rms of the key: keys of size 1e5 overflow float16 (max 65504) — ValueError naming the
    overflow; the same keys with float32 side values encode."""
    codec = replace(TransformCodec(**_good()), coef_bits=coef_bits)
    k = torch.tensor([[[[1e5, -2e5, 3e5, 1e5]]]])
    with pytest.raises(ValueError, match="overflow"):
        codec.encode(k)
    wide = replace(codec, side_dtype=torch.float32)
    assert bool(torch.isfinite(wide.decode(wide.encode(k))).all())


# ===================================================================================== calibration


def anisotropic_keys(H: int, T: int, d: int, seed: int, mean: float = 4.0) -> torch.Tensor:
    """Keys with a DC mean and channel energies spread over two decades in a random basis."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(H, T, d, generator=g, dtype=torch.float64) * torch.logspace(1, -1, d, dtype=torch.float64)
    Q = torch.stack([orthogonal_matrix(d, seed + 31 + h) for h in range(H)])
    m = mean * torch.randn(H, 1, d, generator=g, dtype=torch.float64)
    return (z @ Q.transpose(-1, -2) + m).float()


def per_key_cos2(codec: TransformCodec, keys: torch.Tensor) -> torch.Tensor:
    """cos²(y_t, v_t) per key (H, T), float64 brute force (ref_code)."""
    ref = ref_code(codec, keys.unsqueeze(0))
    y, v = ref["y"][0], ref["v"][0]
    return (y * v).sum(-1) ** 2 / ((y * y).sum(-1) * (v * v).sum(-1))


def test_learned_rotation_improves_the_held_out_b_bit_code():
    """bits = 2, objective = "distortion": the learned rotation starts at the identity and Adam
    ascends the mean 2-bit cosine on the train keys; on keys whose energy is spread over two
    decades in a random basis the identity frame is far from the best, and with T = 1024 train
    keys for d(d−1)/2 = 120 rotation parameters the gain (15 Adam steps) carries over to held-out keys from the
    same distribution. Paired one-sided z-test (z = 5) of the held-out per-key cos² (float64
    brute force) against the identity codec's; codec_quality's β and the recorded held-out
    curve agree with the recomputation."""
    d = 16
    keys = anisotropic_keys(1, 1024 + 2048, d, 3)
    train, held = keys[:, :1024], keys[:, 1024:]
    learned, fits = fit_codec(train, rotation="learned", bits=2, objective="distortion", steps=15, lr=0.05,
                              heldout=held, seed=0)
    ident, _ = fit_codec(train, rotation="identity", bits=2)
    c_l, c_i = per_key_cos2(learned, held)[0], per_key_cos2(ident, held)[0]
    diff = c_l - c_i
    T = diff.numel()
    assert float(diff.mean()) > Z * float(diff.std()) / math.sqrt(T), (float(diff.mean()), float(diff.std()))
    assert codec_quality(learned, held)[0].beta == pytest.approx(float(c_l.mean()), abs=64 * E64)
    assert codec_quality(ident, held)[0].beta == pytest.approx(float(c_i.mean()), abs=64 * E64)
    curve = fits[0].heldout_curve
    assert len(curve) == 15
    # step 0 is the identity frame; the curve is kept in float32: a mean of T values of cos² ≤ 1
    # errs by ≤ (T + 4d)·eps32
    assert abs(curve[0] - float(c_i.mean())) <= (T + 4 * d) * E32


def _normalised_train_coordinates(codec: TransformCodec, keys: torch.Tensor, h: int) -> torch.Tensor:
    """x = u/(‖u‖/√d), u = y/σ, y = (k − m)Rᵀ as fit_codec forms it (float32 train keys), in float64."""
    y = (keys[h].float() - codec.mean[h]) @ codec.rotation[h].T
    u = y.double() / codec.channel_scale[h].double()
    nrm = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    return torch.where(nrm > 0, u * math.sqrt(codec.dim) / torch.where(nrm > 0, nrm, 1.0), 0.0).reshape(-1)


@pytest.mark.exercises("lloyd_max_conditions")
@pytest.mark.parametrize("channel_scale", [False, True])
def test_fitted_levels_satisfy_the_lloyd_conditions_on_the_heads_coordinates(channel_scale):
    """levels = "fitted": per head, the 2^b levels are increasing and each is the mean of its cell
    of the head's normalised train coordinates (fsum per cell; slack: float64 means, the float32
    storage of the levels, and points within float32 rounding of a threshold); heads differ."""
    H, d, b = 2, 16, 3
    keys = anisotropic_keys(H, 512, d, 5)
    codec, _ = fit_codec(keys, rotation="srht", bits=b, levels="fitted", channel_scale=channel_scale, seed=2)
    assert codec.levels.shape == (H, 2**b) and not torch.equal(codec.levels[0], codec.levels[1])
    for h in range(H):
        x = _normalised_train_coordinates(codec, keys, h).numpy()
        lv = codec.levels[h].double().numpy()
        assert np.all(np.diff(lv) > 0)
        t = (lv[1:] + lv[:-1]) / 2
        cell = np.searchsorted(t, x, side="right")
        edge = np.abs(x[:, None] - t[None, :]).min(-1) <= 4 * E32 * (np.abs(x) + np.abs(t).max())
        for i in range(2**b):
            members = x[cell == i]
            assert members.size > 0
            mean = math.fsum(members) / members.size
            slack = ((members.size + 2) * E64 * np.abs(members).mean() + E32 * abs(lv[i])
                     + (np.abs(x[edge]).sum() + edge.sum() * abs(lv[i])) / members.size)
            assert abs(mean - lv[i]) <= slack, (h, i, mean, lv[i])


def test_channel_scale_is_the_geometric_mean_one_channel_rms():
    """channel_scale = True: σ > 0 with geometric mean 1, equal to rmsᵢ/exp(mean log rms) of the
    train y = R(k − m) recomputed in float64 (slack: the float32 y of the fit, ≤ (d + 2)·eps32 of
    the per-channel rms of |R||k − m| relative to rmsᵢ, the geometric mean of those, and the
    float32 rounding of σ); without it σ = 1."""
    H, d = 2, 16
    keys = anisotropic_keys(H, 400, d, 9)
    codec, _ = fit_codec(keys, rotation="srht", bits=2, channel_scale=True, seed=4)
    sig = codec.channel_scale.double()
    assert bool((sig > 0).all())
    assert bool((sig.log().mean(-1).abs() <= 2 * E32).all())
    for h in range(H):
        R, m = codec.rotation[h].double(), codec.mean[h].double()
        km = keys[h].double() - m
        y, y_mag = km @ R.T, km.abs() @ R.abs().T
        rms = torch.sqrt((y**2).mean(0))
        rel = (d + 2) * E32 * torch.sqrt((y_mag**2).mean(0)) / rms
        ref = rms / torch.exp(torch.log(rms).mean())
        assert bool(((sig[h] - ref).abs() <= ref * (2 * rel + rel.mean() * 2 + 2 * E32)).all())
    plain, _ = fit_codec(keys, rotation="srht", bits=2, seed=4)
    assert torch.equal(plain.channel_scale, torch.ones(H, d))


def ref_residuals(codec: TransformCodec, keys: torch.Tensor) -> torch.Tensor:
    """e = y − α̂v (H, T, d) in float64, α̂ the float16 rounding of the code's scale."""
    ref = ref_code(codec, keys.unsqueeze(0))
    y, v = ref["y"][0], ref["v"][0]
    if codec.scale_rule == "ls":
        a = (y * v).sum(-1) / (v * v).sum(-1)
    else:
        yv = (y * v).sum(-1)
        a = torch.where(yv != 0, (y * y).sum(-1) / torch.where(yv != 0, yv, 1.0), 0.0)
    a = a.to(torch.float16).double()
    return y - a.unsqueeze(-1) * v


@pytest.mark.exercises("svd_topk_maximizes_gammaR")
@pytest.mark.parametrize("scale_rule", ["ls", "unbiased"])
def test_residual_basis_spans_the_top_singular_vectors_of_the_code_residuals(scale_rule):
    """fit_residual_basis = the top-r right singular vectors of e_t = y_t − α̂_t v_t (numpy SVD of
    an independent float64 recomputation of e): the projectors BBᵀ agree within 4√(dr)·eps32 (the
    float32 basis) + 16·max(n, d)·d·eps64·‖E‖²_F/(σ_r² − σ_{r+1}²) (Davis–Kahan for the float64
    SVDs); code_residuals equals the recomputed e."""
    H, d, n = 2, 16, 300
    keys = anisotropic_keys(H, n, d, 13)
    codec, _ = fit_codec(keys, rotation="srht", bits=2, scale_rule=scale_rule, seed=1)
    e = ref_residuals(codec, keys)
    got_e = code_residuals(codec, keys)
    assert bool(((got_e - e).abs() <= 64 * d * E64 * (e.abs() + 1e-300 + got_e.abs()).amax(-1, keepdim=True)).all())
    for r in (1, 3, 8):
        B = fit_residual_basis(codec, keys, r)
        assert B.shape == (H, d, r) and B.dtype == torch.float32
        for h in range(H):
            _, s, vt = np.linalg.svd(e[h].numpy(), full_matrices=False)
            P_ref = vt[:r].T @ vt[:r]
            Bh = B[h].double().numpy()
            gap = s[r - 1] ** 2 - s[r] ** 2
            tol = 4 * math.sqrt(d * r) * E32 + 16 * max(n, d) * d * E64 * float((s**2).sum()) / gap
            assert np.linalg.norm(Bh @ Bh.T - P_ref) <= tol
    assert fit_residual_basis(codec, keys, 0).shape == (H, d, 0)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, d = 16\]"):
        fit_residual_basis(codec, keys, 17)


@pytest.mark.exercises("beta_eff_formula")
@pytest.mark.parametrize("rank", [0, 2, 16])
def test_codec_quality_equals_an_independent_recomputation(rank):
    """β (mean cos²), β_energy = 1 − Σ‖e‖²/Σ‖y‖², γ = Σ‖BBᵀe‖²/Σ‖e‖², β_eff = 1 − Σ‖e − BBᵀe‖²/Σ‖y‖²,
    ρ = Σ‖y‖²/Σ‖k‖² and β_c = 1 − ρ(1 − β) recomputed in float64 (sums of T·d terms: relative
    ≤ 4·T·d·eps64); the measured β_eff obeys the law 1 − (1 − β_energy)(1 − γ) on the reported
    numbers (the factors are ratios of the same sums: ≤ 16·eps64), max(β_energy, γ) ≤ β_eff ≤ 1,
    and a full-rank correction is lossless (β_eff = 1)."""
    H, d, T = 2, 16, 256
    keys = anisotropic_keys(H, T, d, 21)
    codec, _ = fit_codec(keys, rotation="identity", bits=2, rank=rank)
    quality = codec_quality(codec, keys)
    ref = ref_code(codec, keys.unsqueeze(0))
    y, v = ref["y"][0], ref["v"][0]
    e = ref_residuals(codec, keys)
    B = codec.basis.double()
    ep = e - (e @ B) @ B.transpose(-1, -2)
    tol = 4 * T * d * E64
    for h, q in enumerate(quality):
        Y, E, Ep, K = (float((t[h] ** 2).sum()) for t in (y, e, ep, keys.double()))
        cos2 = ((y[h] * v[h]).sum(-1) ** 2 / ((y[h] ** 2).sum(-1) * (v[h] ** 2).sum(-1)))
        assert q.tokens == T
        assert q.beta == pytest.approx(float(cos2.mean()), abs=tol)
        assert q.beta_energy == pytest.approx(1 - E / Y, abs=tol)
        assert q.gamma == pytest.approx(1 - Ep / E, abs=tol + 64 * d * E32 * (rank > 0))
        assert q.beta_eff == pytest.approx(1 - Ep / Y, abs=tol + 64 * d * E32 * (rank > 0))
        assert q.rho == pytest.approx(Y / K, rel=tol)
        assert q.beta_c == pytest.approx(1 - q.rho * (1 - q.beta), abs=16 * E64)
        assert q.beta_eff == pytest.approx(1 - (1 - q.beta_energy) * (1 - q.gamma), abs=16 * E64)
        assert max(q.beta_energy, q.gamma) <= q.beta_eff + 16 * E64 <= 1 + 32 * E64
        if rank == d:
            assert q.beta_eff == pytest.approx(1.0, abs=64 * d * E32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 17}, r"rank must be an integer in \[0, d = 16\]"),
        ({"rank": -1}, r"rank must be an integer in \[0, d = 16\]"),
        ({"bits": 5}, "bits"),
        ({"bits": 0}, "bits"),
        ({"levels": "x"}, "levels must be one of"),
        ({"objective": "x"}, "objective must be one of"),
        ({"coef_bits": 12}, "coef_bits must be one of"),
        ({"scale_rule": "x"}, "scale_rule must be one of"),
        ({"rotation": "hadamard"}, "rotation must be one of"),
        ({"lr": float("inf"), "steps": 1}, "lr must be a finite number"),
        ({"heldout": torch.full((1, 5, 16), float("nan"))}, "heldout must be finite"),
        ({"heldout": torch.zeros(1, 5, 8)}, r"heldout must have shape \(H=1, T', d=16\)"),
    ],
)
def test_fit_codec_bad_arguments_raise_value_error_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_codec(torch.randn(1, 10, 16), **kwargs)


def test_fit_codec_rejects_non_finite_or_misshapen_keys():
    with pytest.raises(ValueError, match="keys must be finite"):
        fit_codec(torch.full((1, 10, 16), float("inf")), rotation="identity")
    with pytest.raises(ValueError, match=r"keys must have shape \(H, T ≥ 1, d\)"):
        fit_codec(torch.zeros(1, 1, 10, 16), rotation="identity")


def test_data_free_codecs_are_identity_or_seeded_srht():
    """identity: R = I, m = 0, no basis, default levels; srht: per head an orthogonal matrix with
    entries ±2^{−n/2} (n = log₂ d), different per head and layer, the same under the same seed."""
    ident = data_free_codecs("identity", 2, 3, 8, bits=2)
    assert len(ident) == 2 and torch.equal(ident[0].rotation, torch.eye(8).expand(3, 8, 8))
    assert torch.equal(ident[0].levels, default_levels(2, 3)) and ident[0].rank == 0
    a = data_free_codecs("srht", 2, 3, 16, seed=5)
    b = data_free_codecs("srht", 2, 3, 16, seed=5)
    R = a[0].rotation.double()
    assert bool((R.abs() == 0.25).all())
    assert float((R.transpose(-1, -2) @ R - torch.eye(16, dtype=torch.float64)).abs().max()) <= 16 * E64
    assert not torch.equal(a[0].rotation[0], a[0].rotation[1]) and not torch.equal(a[0].rotation, a[1].rotation)
    assert all(torch.equal(x.rotation, y.rotation) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="rotation 'identity' or 'srht'"):
        data_free_codecs("learned", 1, 1, 16)
    with pytest.raises(ValueError, match="layers"):
        data_free_codecs("identity", 0, 1, 16)
