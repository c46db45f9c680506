"""Compiled kernels over packed codes (impl.cache.kernels): lookup tables, fused logits and one-step
decode attention, on every backend that is present — the torch reference, numba on CPU, Triton
(in its CPU interpreter here, compiled on a GPU) — against float64 computed from the decoded keys.

Error bounds (u = eps/2 the float32 unit roundoff, γ_k ≈ k·u for a sum of k terms):

* coded logit `s_t = α_t Σ_j T_j(β_j) + ⟪q_B, ĉ_t⟫`: the rotated query `R q ⊙ σ` errs by γ_{d+1}
  (|R||q|)ᵢσᵢ, a table entry (g products) by γ_g, the sum of n = ⌈d/g⌉ entries by γ_n, the scale by
  u; the rank term by γ_{2d} (two projections of q) + γ_r (the dot) + 2u (ĉ's dequantisation). So
  |ŝ_t − s_t| ≤ eps·[(d + g + n + 4)·A_t + (2d + r + 6)·C_t] with A_t = |α_t| Σᵢ (|R||q|)ᵢ σᵢ |ℓ[idx_{t,i}]|
  and C_t = Σ_k (|B|ᵀ|R||q|)_k |ĉ_{t,k}|; exact tokens: eps·(d + 2)·Σᵢ |qᵢ|(|kᵢ| + |mᵢ|).
* attention: after scaling (one rounding) and softcap (1-Lipschitz; ≤ 4 roundings of size ≤ |x| + c)
  a logit errs by Δ_t; softmax weights then err by a factor within e^{±2Δ}, and float32 sums of
  T terms with online rescaling add ≤ (2T + 16)·eps relative, so
  |ô − o| ≤ (e^{2 max Δ} − 1 + (2T + 16)·eps) · max_t ‖v_t‖_∞ per output row.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import torch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import orthogonal_matrix, orthonormal_frame, scaled_examples, seeds

from impl.cache.codecs.transform import TransformCodec, default_levels
from impl.cache.kernels import (
    attend_coded,
    backend,
    decode_attention,
    fused_decode_available,
    fused_logits,
    group_codes,
    group_layout,
    level_scores,
    lookup_tables,
    merge_softmax_blocks,
    sign_scores,
    softmax_block_state,
    softmax_output,
    table_scores,
    transform_scores,
    use_backend,
)
from impl.cache.kernels.lut import pattern_levels
from impl.cache.packing import pack_codes, pack_signs, packed_sign_scores, unpack_codes
from impl.cache.store import KeyStore

EPS32 = torch.finfo(torch.float32).eps
EPS64 = torch.finfo(torch.float64).eps
DIMS = (64, 128, 256, 20, 36)


def triton_interpreted() -> bool:
    """Whether the loaded Triton kernels run in Triton's CPU interpreter (False without triton)."""
    gpu = backend.gpu_kernels()
    return gpu is not None and gpu.INTERPRETED


def compiled_backends(device: torch.device) -> list[str]:
    """The compiled backends the property tests run on `device`: numba on CPU, Triton (compiled) on
    CUDA. Triton's CPU interpreter is too slow for many examples; `test_triton_kernels_in_the_interpreter`
    covers it on small fixed cases."""
    if device.type == "cpu":
        return ["numba"] if backend._load("numba") is not None else []
    return ["triton"] if backend.gpu_kernels() is not None and not triton_interpreted() else []


def all_backends(device: torch.device) -> list[str]:
    return ["torch"] + compiled_backends(device)


def cpu_kernel_backends() -> list[str]:
    """Every compiled backend that runs on CPU tensors here (Triton only in its interpreter)."""
    return compiled_backends(torch.device("cpu")) + (["triton"] if triton_interpreted() else [])


# -- random codecs and stores ---------------------------------------------------------------------
def random_codec(seed: int, H: int, d: int, bits: int, r: int, coef_bits: int, device) -> TransformCodec:
    g = torch.Generator().manual_seed(seed)
    rot = torch.stack([orthogonal_matrix(d, seed + 7 * h) for h in range(H)]).float()
    basis = torch.stack([orthonormal_frame(d, r, seed + 11 * h + 1) for h in range(H)]).float()
    levels = default_levels(bits, H) if seed % 2 else torch.sort(torch.randn(H, 2**bits, generator=g), -1).values
    cs = torch.ones(H, d) if seed % 3 == 0 else 0.5 + torch.rand(H, d, generator=g)
    codec = TransformCodec(mean=0.3 * torch.randn(H, d, generator=g), rotation=rot, basis=basis, levels=levels,
                           channel_scale=cs, bits=bits, coef_bits=coef_bits)
    return codec.to(device)


@st.composite
def stores(draw, dims=DIMS, max_tokens=150, groups=(1, 2, 4, 8)):
    """A filled `KeyStore` (protected, coded and recent tokens), its keys and a query per head."""
    seed = draw(seeds)
    d = draw(st.sampled_from(dims))
    bits = draw(st.integers(1, 4))
    H = draw(st.integers(1, 2))
    B = draw(st.integers(1, 2))
    G = draw(st.sampled_from(groups))
    r = draw(st.sampled_from([0, max(1, d // 8), 3]))
    coef_bits = draw(st.sampled_from([16, 8, 4]))
    T = draw(st.integers(1, max_tokens))
    n_protect = draw(st.sampled_from([0, 1, 3]))
    window = draw(st.sampled_from([0, 2, 5]))
    flush = draw(st.sampled_from([1, 3]))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, T - 1)), max_size=2, unique=True)))
    return {"seed": seed, "d": d, "bits": bits, "H": H, "B": B, "G": G, "r": r, "coef_bits": coef_bits, "T": T,
            "n_protect": n_protect, "window": window, "flush": flush, "cuts": [c for c in cuts if c < T]}


def build_store(spec: dict, device) -> tuple[KeyStore, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(spec["seed"])
    codec = random_codec(spec["seed"], spec["H"], spec["d"], spec["bits"], spec["r"], spec["coef_bits"], device)
    if spec.get("zero_mean"):   # no offset ⟪q, m⟫: a softcapped step may take the compiled kernels
        codec = replace(codec, mean=torch.zeros_like(codec.mean))
    keys = (torch.randn(spec["B"], spec["H"], spec["T"], spec["d"], generator=g) * 2 + 0.5).to(device)
    store = KeyStore(codec, n_protect=spec["n_protect"], window=spec["window"], flush_block=spec["flush"])
    prev = 0
    for cut in spec["cuts"] + [spec["T"]]:
        store.append(keys[:, :, prev:cut])
        prev = cut
    q = (torch.randn(spec["B"], spec["H"], spec["G"], 1, spec["d"], generator=g) * 3).to(device)
    return store, keys, q


# -- the float64 oracle ---------------------------------------------------------------------------
def coefficients64(codec: TransformCodec, codes) -> torch.Tensor:
    if codec.coef_bits == 16:
        return codes["coeffs"].double()
    half = 2 ** (codec.coef_bits - 1) - 1
    i = unpack_codes(codes["coeffs"], codec.coef_bits, codec.rank).double()
    return codes["coef_scale"].double().unsqueeze(-1) * (i - half)


def coded_logits64(codec: TransformCodec, codes, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`⟪q, k̂_t⟫ − ⟪q, m⟫ = ⟪q, Rᵀ(α v + B ĉ)⟫` in float64 from the decoded key (fused_logit_identity's
    left side) and the bound of the module docstring; q (B, H, N, d) → (B, H, N, T) each."""
    d = codec.dim
    R = codec.rotation.double()
    idx = unpack_codes(codes["codes"], codec.bits, d)
    lv = codec.levels.double()[None, :, None, :].expand(*idx.shape[:-1], -1)
    ell = torch.take_along_dim(lv, idx, dim=-1)                                       # ℓ[idx] (B, H, T, d)
    sigma = codec.channel_scale.double()[None, :, None, :]
    alpha = codes["scale"].double()
    y = alpha.unsqueeze(-1) * sigma * ell
    q64 = q.double()
    rq_abs = torch.einsum("hij,bhnj->bhni", R.abs(), q64.abs())
    A = alpha.abs().unsqueeze(-2) * ((rq_abs * sigma) @ ell.abs().transpose(-1, -2))
    C = torch.zeros_like(A)
    r = codec.rank
    if r:
        c = coefficients64(codec, codes)
        Bm = codec.basis.double()
        y = y + torch.einsum("bhtr,hdr->bhtd", c, Bm)
        C = torch.einsum("bhni,hir->bhnr", rq_abs, Bm.abs()) @ c.abs().transpose(-1, -2)
    k = torch.einsum("hji,bhtj->bhti", R, y)                                          # Rᵀ y
    lay = group_layout(d, codec.bits)
    bound = EPS32 * ((d + lay.group + lay.groups + 4) * A + (2 * d + r + 6) * C) + 1e-30
    return q64 @ k.transpose(-1, -2), bound


def store_logits64(store: KeyStore, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every token's `⟪q, k̂_t⟫ − ⟪q, m⟫` (exact keys for protected and recent tokens) and its bound;
    q (B, H, N, d)."""
    codec = store.codec
    q64 = q.double()
    m = codec.mean.double()[None, :, None, :]

    def exact(keys):
        k = keys.double()
        return (q64 @ (k - m).transpose(-1, -2),
                EPS32 * (codec.dim + 2) * (q64.abs() @ (k.abs() + m.abs()).transpose(-1, -2)))

    parts = []
    if store.protected_length:
        parts.append(exact(store.protected_keys()))
    if store.coded_length:
        parts.append(coded_logits64(codec, store.codes(), q))
    if store.recent_length:
        parts.append(exact(store.recent_keys()))
    return torch.cat([p[0] for p in parts], -1), torch.cat([p[1] for p in parts], -1)


# -- packed_score_lut_identity --------------------------------------------------------------------
@pytest.mark.theorem("packed_score_lut_identity")
@given(seed=seeds, bits=st.integers(1, 4), d=st.sampled_from(DIMS + (1, 3, 5, 13)), T=st.integers(1, 40),
       N=st.integers(1, 5))
def test_table_lookups_sum_to_the_level_inner_product(seed, bits, d, T, N):
    """Σ_j T_j(β_{t,j}) over the group patterns read from the packed bytes equals ⟪q, ℓ[idx_t]⟫ computed
    independently in float64 from the indices (float64 tables: sums of ≤ d terms, bound d·eps64·Σ|qℓ|)."""
    g = torch.Generator().manual_seed(seed)
    H = 2
    idx = torch.randint(0, 2**bits, (H, T, d), generator=g)
    levels = torch.sort(torch.randn(H, 2**bits, generator=g, dtype=torch.float64), -1).values
    q = torch.randn(H, N, d, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-3, 4, (1,), generator=g).item()
    packed = pack_codes(idx, bits)
    tables = lookup_tables(q, levels, bits, d)
    lay = group_layout(d, bits)
    assert tables.shape == (H, N, lay.groups, 2 ** lay.pattern_bits)
    got = table_scores(tables, packed, bits, d)                                     # (H, N, T)
    ell = torch.take_along_dim(levels[:, None, :].expand(H, T, -1), idx, dim=-1)   # (H, T, d)
    ref = q @ ell.transpose(-1, -2)
    bound = 2 * d * EPS64 * (q.abs() @ ell.abs().transpose(-1, -2))
    assert bool(((got - ref).abs() <= bound).all())


@given(seed=seeds, bits=st.integers(1, 4), d=st.integers(1, 70), T=st.integers(0, 9))
def test_group_patterns_are_the_indices_of_the_group(seed, bits, d, T):
    """β_{t,j} read at bit offset g·b·j (two bytes joined for b = 3) = Σ_i idx_{g·j+i} 2^{i·b}."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 2**bits, (3, T, d), generator=g)
    lay = group_layout(d, bits)
    pad = lay.groups * lay.group - d
    grouped = torch.nn.functional.pad(idx, (0, pad)).reshape(3, T, lay.groups, lay.group)
    want = (grouped << (torch.arange(lay.group) * bits)).sum(-1)
    assert torch.equal(group_codes(pack_codes(idx, bits), bits, d), want)


@given(seed=seeds, bits=st.integers(1, 4), d=st.sampled_from(DIMS + (7,)), N=st.integers(1, 9))
def test_compiled_tables_equal_the_torch_tables(seed, bits, d, N):
    """The numba table builder (one addition per entry) against `lookup_tables` (float32 sums of g
    products: each within g·eps·Σ|qᵢℓᵢ| of the exact table); padding queries give zero tables."""
    cpu = backend._load("numba")
    if cpu is None:
        pytest.skip("numba is not installed")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, N, d, generator=g)
    levels = torch.sort(torch.randn(2, 2**bits, generator=g), -1).values
    got = cpu.build_tables(q, levels, bits, d)                                      # (L, n, K, N_pad)
    ref = lookup_tables(q.double(), levels.double(), bits, d).permute(0, 2, 3, 1)   # (L, n, K, N)
    lay = group_layout(d, bits)
    qg = torch.nn.functional.pad(q.double().abs(), (0, lay.groups * lay.group - d)).reshape(2, N, lay.groups, lay.group)
    mag = (qg @ pattern_levels(levels.double(), bits).abs().transpose(-1, -2).unsqueeze(-3)).permute(0, 2, 3, 1)
    assert bool(((got[..., :N].double() - ref).abs() <= 2 * lay.group * EPS32 * mag + 1e-30).all())
    assert bool((got[..., N:] == 0).all())


# -- fused_logit_identity -------------------------------------------------------------------------
@pytest.mark.theorem("fused_logit_identity")
@settings(max_examples=scaled_examples(2))
@given(spec=stores(max_tokens=120))
def test_fused_logits_equal_the_logits_of_the_decoded_keys(device, spec):
    """`fused_logits(R q ⊙ σ, idx, ℓ, α, Bᵀ R q, ĉ)` = `⟪q, Rᵀ(α v + B ĉ) + m⟫ − ⟪q, m⟫` computed in float64
    from the decoded key, on every backend, within the float32 bound of the module docstring."""
    spec.update(n_protect=0, window=0, flush=1)                                     # every token coded
    store, _, q = build_store(spec, device)
    codec, codes = store.codec, store.codes()
    qf = q[:, :, :, 0]                                                                # (B, H, G, d)
    rq = codec.rotate(qf)
    q_rot = rq * codec.channel_scale[None, :, None, :]
    kw = {}
    if codec.rank:
        kw = {"q_basis": torch.einsum("bhnd,hdr->bhnr", rq, codec.basis), "coeffs": codes["coeffs"],
              "coef_bits": codec.coef_bits, "coef_scale": codes.get("coef_scale")}
    ref, bound = coded_logits64(codec, codes, qf)
    for name in all_backends(device):
        with use_backend(name):
            got = fused_logits(q_rot, codes["codes"], codec.levels, codec.bits, codec.dim, codes["scale"], **kw)
            via_codec = transform_scores(codec, qf, codes)
        assert got.dtype == torch.float32 and got.shape == ref.shape
        assert bool(((got.double() - ref).abs() <= bound).all()), name
        assert bool(((via_codec.double() - ref).abs() <= bound).all()), name


@settings(max_examples=scaled_examples(2))
@given(spec=stores())
def test_store_logits_from_the_kernels_equal_float64_logits(device, spec):
    """`KeyStore.logits` (protected exact + coded through `level_scores` + recent exact) on every
    backend equals float64 logits of the decoded keys."""
    store, _, q = build_store(spec, device)
    ref, bound = store_logits64(store, q[:, :, :, 0])
    for name in all_backends(device):
        with use_backend(name):
            got = store.logits(q)[:, :, :, 0]
        assert bool(((got.double() - ref).abs() <= bound).all()), name


@given(seed=seeds, d=st.sampled_from(DIMS), T=st.integers(0, 130), Q=st.integers(1, 5))
def test_sign_scores_equal_the_packed_sign_reference(device, seed, d, T, Q):
    """The 1-bit kernel with levels (−1, +1) is `packed_sign_scores` (bound: 2·d·eps·‖q‖₁)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(2, T, d, generator=g).to(device)
    q = torch.randn(2, Q, d, generator=g).to(device)
    ref = packed_sign_scores(q.double(), pack_signs(k), d)
    bound = 2 * d * EPS32 * q.double().abs().sum(-1, keepdim=True)
    for name in all_backends(device):
        with use_backend(name):
            got = sign_scores(q, pack_signs(k), d)
        assert got.shape == (2, Q, T) and bool(((got.double() - ref).abs() <= bound).all()), name


def test_strided_and_broadcast_buffers_are_read_in_place():
    """Codes with a token stride (a growable buffer's view, every other token) and a scale broadcast
    with stride 0 give the reference result (numba reads strides; nothing needs to be contiguous)."""
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 8, (2, 3, 90, 36), generator=g)
    packed = pack_codes(idx, 3)[:, :, ::2]
    assert not packed.is_contiguous()
    levels = torch.sort(torch.randn(3, 8, generator=g), -1).values
    q = torch.randn(2, 3, 4, 36, generator=g)
    scale = torch.full((), 0.5).expand(2, 3, 45)
    with use_backend("torch"):
        ref = fused_logits(q.double(), packed, levels, 3, 36, scale)
    for name in cpu_kernel_backends():
        with use_backend(name):
            got = fused_logits(q, packed, levels, 3, 36, scale)
        # each score is a sum of 36 float32 products ℓ·q, then × α: (d + 2) roundings of Σ|q_i ℓ_i| |α|
        lv = torch.take_along_dim(levels[None, :, None, :].expand(2, 3, 45, 8), idx[:, :, ::2], -1)
        bound = 38 * EPS32 * (q.double().abs() @ lv.double().abs().transpose(-1, -2)) * 0.5
        assert bool(((got.double() - ref).abs() <= bound).all()), name


# -- online_softmax_merge and decode attention ----------------------------------------------------
@pytest.mark.theorem("online_softmax_merge")
@given(seed=seeds, T=st.integers(1, 60), dv=st.integers(1, 9), data=st.data())
def test_merged_block_states_give_one_shot_softmax_attention(seed, T, dv, data):
    """Summaries (μ, Z, N) of disjoint blocks, merged in any order by `merge_softmax_blocks`, give
    `N / Z` = softmax(x)·v computed in one shot (float64: agreement to 8·T·eps64·max|v|); a fully
    masked block (μ = −∞) changes nothing, and a fully masked row gives 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, T, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-2, 3, (1,), generator=g).item()
    x = torch.where(torch.rand(3, T, generator=g) < data.draw(st.floats(0, 0.5)), float("-inf"), x)
    x[2] = float("-inf")
    v = torch.randn(3, T, dv, generator=g, dtype=torch.float64)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, T), max_size=5)) + [T]))
    blocks, lo = [], 0
    for c in cuts:
        blocks.append(softmax_block_state(x[:, lo:c], v[:, lo:c]))
        lo = c
    order = data.draw(st.permutations(range(len(blocks))))
    state = blocks[order[0]]
    for i in order[1:]:
        state = merge_softmax_blocks(state, blocks[i]) if i % 2 else merge_softmax_blocks(blocks[i], state)
    empty = softmax_block_state(torch.full((3, 2), float("-inf"), dtype=torch.float64), torch.ones(3, 2, dv, dtype=torch.float64))
    state = merge_softmax_blocks(state, empty)
    got = softmax_output(state)
    finite = torch.isfinite(x).any(-1)
    mx = torch.where(finite, x.amax(-1), torch.zeros(3, dtype=torch.float64))
    p = torch.exp(x - mx[:, None])
    p = torch.where(finite[:, None], p / p.sum(-1, keepdim=True), torch.zeros_like(p))
    ref = (p.unsqueeze(-2) @ v).squeeze(-2)
    assert bool(((got - ref).abs() <= 8 * T * EPS64 * v.abs().amax((-1, -2))[:, None] + 1e-300).all())
    assert bool((got[2] == 0).all())


def decode_masks(kind: str, keep_rows: torch.Tensor, H: int, G: int):
    """(the mask handed to decode_attention, the same as kept entries for logits (B, H, G, T)) from
    rows `keep_rows` (B, 1 or H·G, T): "none"; "bool" — key padding (B, T); "additive" — transformers'
    float mask (B, 1, 1, T) with finfo.min; "head" — one boolean row per query head (B, H·G, 1, T)."""
    B, _, T = keep_rows.shape
    if kind == "none":
        return None, None
    if kind == "bool":
        return keep_rows[:, 0], keep_rows[:, :1, None, :]
    if kind == "additive":
        return torch.where(keep_rows, 0.0, torch.finfo(torch.float32).min)[:, :, None, :], keep_rows[:, :, None, :]
    return keep_rows[:, :, None, :], keep_rows.reshape(B, H, G, T)


def decode_reference64(store, q, values, scaling, keep, softcap):
    """Float64 decode attention from the decoded keys with the bound of the module docstring."""
    s, sb = store_logits64(store, q[:, :, :, 0])                                    # (B, H, G, T)
    if softcap is not None:
        # a softcap is not shift-invariant: the logits keep ⟪q, m⟫ (its float32 sum: d + 2 roundings)
        q64, m64 = q[:, :, :, 0].double(), store.codec.mean.double()[None, :, None, :]
        s = s + (q64 * m64).sum(-1, keepdim=True)
        sb = sb + EPS32 * (store.codec.dim + 2) * (q64.abs() * m64.abs()).sum(-1, keepdim=True)
    x = s * scaling
    bound = abs(scaling) * sb + 2 * EPS32 * x.abs()
    if softcap is not None:
        bound = bound + 4 * EPS32 * (x.abs() + softcap)
        x = torch.tanh(x / softcap) * softcap
    if keep is not None:
        x = x.masked_fill(~keep, float("-inf"))
    finite = torch.isfinite(x).any(-1, keepdim=True)
    mx = torch.where(finite, x.amax(-1, keepdim=True), torch.zeros_like(x[..., :1]))
    p = torch.exp(x - mx)
    p = torch.where(finite, p / p.sum(-1, keepdim=True), torch.zeros_like(p))
    out = (p.unsqueeze(-2) @ values.double().unsqueeze(2)).squeeze(-2)             # (B, H, G, dv)
    delta = torch.where(torch.isfinite(x), bound, torch.zeros_like(bound)).amax(-1, keepdim=True)
    T = x.shape[-1]
    tol = (torch.expm1(2 * delta) + (2 * T + 16) * EPS32) * values.double().abs().amax((-1, -2))[:, :, None, None]
    return out, tol


@settings(max_examples=scaled_examples(2))
@given(spec=stores(), dv=st.sampled_from([16, 20, 64]), mask_kind=st.sampled_from(["none", "bool", "additive", "head"]),
       softcap=st.sampled_from([None, 3.0, 30.0]), data=st.data())
def test_decode_attention_equals_float64_softmax_attention(device, spec, dv, mask_kind, softcap, data):
    """One decode step from the codes (online softmax over blocks) equals softmax attention computed in
    float64 from the decoded keys, on every backend: GQA groups 1–8, protected, coded and recent
    tokens, rank-r terms, a key-padding / additive / per-head mask (rows may be fully masked), softcap
    (with a zero mean the compiled kernels cap the logits; with a non-zero mean the step keeps the
    offset ⟪q, m⟫ and takes the unfused path)."""
    spec = {**spec, "zero_mean": data.draw(st.booleans())}
    store, _, q = build_store(spec, device)
    B, H, G, T = spec["B"], spec["H"], spec["G"], len(store)
    g = torch.Generator().manual_seed(spec["seed"] + 1)
    values = torch.randn(B, H, T, dv, generator=g).to(device)
    scaling = data.draw(st.sampled_from([spec["d"] ** -0.5, 1.0]))
    keep_rows = torch.rand(B, H * G if mask_kind == "head" else 1, T, generator=g) < data.draw(st.floats(0.3, 1.0))
    if data.draw(st.booleans()):
        keep_rows[0] = False                                                          # a fully masked row
    keep_rows = keep_rows.to(device)
    mask, keep = decode_masks(mask_kind, keep_rows, H, G)
    ref, tol = decode_reference64(store, q, values, scaling, keep, softcap)
    for name in all_backends(device):
        with use_backend(name):
            got = decode_attention(store, q, values, scaling, mask=mask, softcap=softcap)
        assert got.shape == (B, H, G, 1, dv) and got.dtype == values.dtype
        assert bool(((got[:, :, :, 0].double() - ref).abs() <= tol).all()), name


def test_attend_coded_refuses_a_softcap_with_an_offset():
    """The compiled kernels drop ⟪q, m⟫, which a softcap (not shift-invariant) cannot: attend_coded
    refuses the case by name, and decode_attention gives the float64 answer through the unfused path."""
    spec = {"seed": 3, "d": 64, "bits": 2, "H": 2, "B": 1, "G": 2, "r": 0, "coef_bits": 16, "T": 40, "n_protect": 0,
            "window": 0, "flush": 1, "cuts": []}
    store, _, q = build_store(spec, "cpu")
    assert bool((store.codec.mean != 0).any())
    values = torch.randn(1, 2, len(store), 16)
    if cpu_kernel_backends():
        with pytest.raises(ValueError, match="softcap"):
            attend_coded(store.codec, q, values, 0.125, store.codes(), softcap=5.0)
    want, tol = decode_reference64(store, q, values, 0.125, None, 5.0)
    got = decode_attention(store, q, values, 0.125, softcap=5.0)
    assert bool(((got[:, :, :, 0].double() - want).abs() <= tol).all())


@pytest.mark.parametrize("vdtype", [torch.float16, torch.bfloat16])
def test_decode_attention_reads_half_precision_values(vdtype):
    """Values in the model's half dtype are widened exactly inside the kernel (output in that dtype)."""
    spec = {"seed": 5, "d": 64, "bits": 2, "H": 2, "B": 1, "G": 4, "r": 8, "coef_bits": 16, "T": 140, "n_protect": 2,
            "window": 3, "flush": 1, "cuts": []}
    store, _, q = build_store(spec, "cpu")
    values = torch.randn(1, 2, len(store), 32).to(vdtype)
    with use_backend("torch"):
        ref = decode_attention(store, q, values.float(), 0.125)
    for name in cpu_kernel_backends():
        with use_backend(name):
            got = decode_attention(store, q, values, 0.125)
        assert got.dtype == vdtype
        assert torch.allclose(got.float(), ref, rtol=0, atol=2 * torch.finfo(vdtype).eps * float(values.abs().max()))


TRITON_CASES = [  # (d, bits, G, r, coef_bits, n_protect, window, mask_kind, softcap)
    (20, 1, 1, 0, 16, 0, 0, "none", None),
    (36, 3, 4, 3, 8, 2, 3, "bool", None),
    (64, 2, 8, 8, 4, 1, 0, "additive", 5.0),
    (64, 4, 2, 8, 16, 0, 5, "head", None),
    (33, 3, 1, 0, 16, 3, 2, "bool", 30.0),
]


@pytest.mark.parametrize("case", TRITON_CASES)
def test_triton_kernels_in_the_interpreter(case):
    """The Triton kernels (run by Triton's CPU interpreter, TRITON_INTERPRET=1) give the float64
    logits and decode attention within the same bounds as the other backends; small shapes."""
    if not triton_interpreted():
        pytest.skip("triton is not installed, or it runs compiled (a GPU is present: the CUDA tests cover it)")
    d, bits, G, r, coef_bits, n_protect, window, mask_kind, softcap = case
    spec = {"seed": d + bits, "d": d, "bits": bits, "H": 2, "B": 1, "G": G, "r": r, "coef_bits": coef_bits, "T": 75,
            "n_protect": n_protect, "window": window, "flush": 1 + (d % 2), "cuts": [30],
            "zero_mean": softcap is not None}      # a softcap with an offset would take the unfused path
    store, _, q = build_store(spec, "cpu")
    T = len(store)
    ref, bound = store_logits64(store, q[:, :, :, 0])
    with use_backend("triton"):
        got = store.logits(q)[:, :, :, 0]
    assert bool(((got.double() - ref).abs() <= bound).all())
    g = torch.Generator().manual_seed(d)
    values = torch.randn(1, 2, T, 24, generator=g)
    keep_rows = torch.rand(1, 2 * G if mask_kind == "head" else 1, T, generator=g) < 0.7
    mask, keep = decode_masks(mask_kind, keep_rows, 2, G)
    want, tol = decode_reference64(store, q, values, d ** -0.5, keep, softcap)
    with use_backend("triton"):
        out = decode_attention(store, q, values, d ** -0.5, mask=mask, softcap=softcap)
    assert bool(((out[:, :, :, 0].double() - want).abs() <= tol).all())


def test_stored_half_precision_bits_widen_exactly():
    """Every float16 and bfloat16 bit pattern — normal, subnormal, ±0, ±inf — is widened to float32
    exactly by the kernels' reader of stored fields (numba has no 16-bit float); NaN stays NaN."""
    cpu = backend._load("numba")
    if cpu is None:
        pytest.skip("numba is not installed")
    patterns = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    for dtype in (torch.float16, torch.bfloat16):
        x = patterns.view(dtype)
        got, ref = cpu.widen(x), x.float()
        nan = torch.isnan(ref)
        assert torch.equal(got[~nan].view(torch.int32), ref[~nan].view(torch.int32)), dtype
        assert bool(torch.isnan(got[nan]).all()), dtype


# -- dispatch, fallback and bad input -------------------------------------------------------------
def test_missing_numba_falls_back_with_one_warning(monkeypatch):
    """Without numba, CPU calls take the torch reference after ONE warning per process that says how
    to install the kernels."""
    monkeypatch.setitem(backend._modules, "numba", None)
    monkeypatch.setattr(backend, "_warned", False)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 4, (2, 9, 20), generator=g)
    q = torch.randn(2, 3, 20, generator=g)
    levels = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = level_scores(q, pack_codes(idx, 2), levels, 2, 20)
        b = level_scores(q, pack_codes(idx, 2), levels, 2, 20)
    msgs = [str(w.message) for w in caught if "numba" in str(w.message)]
    assert len(msgs) == 1 and "pip install betaspec[kernels]" in msgs[0]
    assert backend.backend_for("cpu") == "torch" and b.shape == a.shape


def test_float64_queries_keep_the_float64_reference():
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 2, (1, 2, 5, 16), generator=g)
    q = torch.randn(1, 2, 3, 16, generator=g, dtype=torch.float64)
    out = level_scores(q, pack_codes(idx, 1), torch.tensor([-1.0, 1.0]), 1, 16)
    assert out.dtype == torch.float64


def _bad_store():
    spec = {"seed": 2, "d": 16, "bits": 1, "H": 2, "B": 1, "G": 2, "r": 0, "coef_bits": 16, "T": 70, "n_protect": 0,
            "window": 0, "flush": 1, "cuts": []}
    return build_store(spec, "cpu")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fused_logits(torch.randn(2, 3, 16), torch.zeros(2, 5, 2, dtype=torch.int32), torch.tensor([-1.0, 1.0]),
                              1, 16, torch.ones(2, 5)), "packed must be a uint8 tensor"),
        (lambda: fused_logits(torch.randn(2, 3, 16), torch.zeros(2, 5, 3, dtype=torch.uint8), torch.tensor([-1.0, 1.0]),
                              1, 16, torch.ones(2, 5)), r"packed must have shape \(\.\.\., T, ⌈d·b/8⌉ = 2\)"),
        (lambda: fused_logits(torch.randn(2, 3, 15), torch.zeros(2, 5, 2, dtype=torch.uint8), torch.tensor([-1.0, 1.0]),
                              1, 16, torch.ones(2, 5)), "q_rot must have last dimension d = 16"),
        (lambda: fused_logits(torch.randn(2, 3, 16), torch.zeros(2, 5, 2, dtype=torch.uint8), torch.tensor([-1.0, 1.0]),
                              1, 16, torch.ones(2, 4)), r"scale must have shape \(2, 5\)"),
        (lambda: fused_logits(torch.randn(2, 3, 16), torch.zeros(2, 5, 2, dtype=torch.uint8), torch.tensor([-1.0, 1.0]),
                              1, 16, torch.ones(2, 5, dtype=torch.int32)), "scale must be a float16, bfloat16 or float32"),
        (lambda: fused_logits(torch.randn(2, 3, 16), torch.zeros(2, 5, 2, dtype=torch.uint8), torch.tensor([-1.0, 1.0]),
                              1, 16, torch.ones(2, 5), torch.randn(2, 3, 4), torch.zeros(2, 5, 4, dtype=torch.uint8),
                              coef_bits=8), "coef_scale must be a float16"),
        (lambda: fused_logits(torch.randn(2, 3, 16), torch.zeros(2, 5, 2, dtype=torch.uint8), torch.tensor([-1.0, 1.0]),
                              1, 16, torch.ones(2, 5), torch.randn(2, 3, 4)), "q_basis and coeffs must be given together"),
        (lambda: fused_logits(torch.randn(2, 3, 16), torch.zeros(2, 5, 2, dtype=torch.uint8), torch.tensor([1.0, -1.0]),
                              1, 16, torch.ones(2, 5)), "levels must be strictly increasing"),
        (lambda: fused_logits(torch.randn(2, 3, 16), torch.zeros(2, 5, 2, dtype=torch.uint8), torch.tensor([-1.0, 1.0]),
                              5, 16, torch.ones(2, 5)), r"bits must be an integer in \[1, 4\]"),
        (lambda: decode_attention(_bad_store()[0], torch.randn(1, 2, 2, 1, 15), torch.randn(1, 2, 70, 8), 1.0),
         r"query must have shape \(B, H = 2, G, 1, d = 16\)"),
        (lambda: decode_attention(_bad_store()[0], torch.randn(1, 2, 2, 3, 16), torch.randn(1, 2, 70, 8), 1.0),
         "one decode step"),
        (lambda: decode_attention(_bad_store()[0], torch.randn(1, 2, 2, 1, 16), torch.randn(1, 2, 69, 8), 1.0),
         r"values must have shape \(B = 1, H = 2, T = 70, dv\)"),
        (lambda: decode_attention(_bad_store()[0], torch.randn(1, 2, 2, 1, 16), torch.randn(1, 2, 70, 8), 1.0,
                                  mask=torch.ones(1, 3, 70, dtype=torch.bool)), r"mask must have shape \(B = 1 or 1, Hm = 1 or 4"),
        (lambda: decode_attention(_bad_store()[0], torch.randn(1, 2, 2, 1, 16), torch.randn(1, 2, 70, 8), 1.0,
                                  mask=torch.ones(1, 1, 2, 70, dtype=torch.bool)), "mask must hold one query row"),
        (lambda: decode_attention(_bad_store()[0], torch.randn(1, 2, 2, 1, 16), torch.randn(1, 2, 70, 8), 1.0,
                                  mask=torch.ones(1, 70, dtype=torch.int64)), "mask must be boolean or floating-point"),
        (lambda: decode_attention(_bad_store()[0], torch.randn(1, 2, 2, 1, 16), torch.randn(1, 2, 70, 8), 1.0,
                                  softcap=-1.0), "softcap must be None or a positive number"),
        (lambda: decode_attention(_bad_store()[0], torch.randn(1, 2, 2, 1, 16), torch.randn(1, 2, 70, 8), math.nan),
         "scaling must be a finite number"),
        (lambda: decode_attention("store", torch.randn(1, 2, 2, 1, 16), torch.randn(1, 2, 70, 8), 1.0),
         "store must be a KeyStore"),
        (lambda: use_backend("cuda").__enter__(), "backend must be one of"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- the transformers attention path --------------------------------------------------------------
def test_packed_attention_decode_steps_use_the_fused_kernel(monkeypatch):
    """With numba present, `packed_attention` takes `decode_attention` for one-query steps (and only
    then), and generation logits agree with the unfused torch path (float32 rounding only)."""
    transformers = pytest.importorskip("transformers")
    cpu = backend._load("numba")
    if cpu is None:
        pytest.skip("numba is not installed")
    from betaspec.data.models import cache_kwarg
    from impl.cache.hf import QuantizedKeyCache
    from impl.calibration.fit import data_free_codecs

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                   max_position_embeddings=512)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 256, (2, 70))
    am = torch.ones(2, 70, dtype=torch.long)
    am[1, :6] = 0                                                                   # left padding
    calls = []
    real = cpu.decode_state
    monkeypatch.setattr(cpu, "decode_state", lambda *a, **k: calls.append(1) or real(*a, **k))

    def generate(name):
        codecs = [replace(c, basis=torch.linalg.qr(torch.randn(2, 16, 2)).Q) for c in data_free_codecs("srht", 2, 2, 16, bits=2)]
        cache = QuantizedKeyCache(codecs, n_protect=2, window=4)
        kw, out, a = cache_kwarg(model), [], am
        with use_backend(name), torch.no_grad(), cache.attached(model):
            logits = model(ids, attention_mask=a, use_cache=True, **{kw: cache}).logits
            nxt = logits[:, -1:].argmax(-1)
            for _ in range(4):
                a = torch.cat([a, torch.ones_like(a[:, :1])], 1)
                step = model(nxt, attention_mask=a, use_cache=True, **{kw: cache}).logits
                out.append(step)
                nxt = step[:, -1:].argmax(-1)
        return torch.cat(out, 1)

    torch.manual_seed(1)
    fused = generate("numba")
    assert len(calls) == 4 * 2                                                      # 4 steps × 2 layers
    torch.manual_seed(1)
    ref = generate("torch")
    assert len(calls) == 8
    assert torch.allclose(fused, ref, rtol=0, atol=1e-4 * max(1.0, float(ref.abs().max())))


def test_fused_decode_is_offered_for_transform_codecs_on_cpu_only():
    store, _, q = _bad_store()
    expected = backend._load("numba") is not None
    assert fused_decode_available(store, q) is expected
    with use_backend("torch"):
        assert fused_decode_available(store, q) is False
