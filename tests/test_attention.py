"""Properties of impl.attention: gauge invariance (SPEC §3), the softmax shift, and front-token
protection (SPEC §6, empirical).

Bounds, u = eps/2 of the tested dtype:
* ⟪q, k⟫ in floating point: |Δ| ≤ γ_d‖q‖‖k‖; rotating first adds ≤ 2·d^{3/2}u‖q‖‖k‖ (R q and
  R k each have ‖Δ‖ ≤ d^{3/2}u‖·‖) plus ‖RᵀR − I‖·‖q‖‖k‖;
* softmax: rounding xᵢ + c moves each logit by ≤ u(|xᵢ| + |c|), which moves each probability
  by a factor ≤ exp(2u(max|x| + |c|)); exp/sum/divide add ≤ (n + 4)u relatively.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    FLOATS,
    dims,
    eps,
    orthogonal_matrix,
    real_tensors,
    scaled_examples,
    seeds,
)

from impl.attention import (
    attention_logits,
    attention_output_error,
    fold_rotation,
    masked_softmax,
    protected_quantized_attention,
    protected_quantized_keys,
    stable_softmax,
)
from impl.sign_quant import dequantize_1bit, quantize_1bit


def gauge_tol(d: int, dtype: torch.dtype, defect: float) -> float:
    return (2 * d**1.5 + 2 * d + 4) * eps(dtype) + defect


@st.composite
def qkv(draw, max_d: int = 24, max_n: int = 12):
    dtype = draw(st.sampled_from(FLOATS))
    d = draw(dims(1, max_d))
    n_q, n_k = draw(st.integers(1, max_n)), draw(st.integers(1, max_n))
    batch = draw(st.sampled_from([(), (2,), (2, 3)]))
    g = torch.Generator().manual_seed(draw(seeds))
    q = torch.randn(*batch, n_q, d, generator=g, dtype=torch.float64)
    k = torch.randn(*batch, n_k, d, generator=g, dtype=torch.float64)
    if draw(st.booleans()):  # a shared key mean, as in real pre-RoPE keys
        k = k + 4 * torch.randn(d, generator=g, dtype=torch.float64)
    v = torch.randn(*batch, n_k, draw(st.integers(1, 6)), generator=g, dtype=torch.float64)
    mag = 10.0 ** draw(st.floats(-2, 1))
    return (q * mag).to(dtype), (k * mag).to(dtype), v.to(dtype)


# ----------------------------------------------------------------------------- gauge invariance


@pytest.mark.theorem("attention_score_gauge_invariance")
@given(q=real_tensors(max_d=32, batch_shapes=st.sampled_from([(3,), (2, 4)])), seed=seeds, n_k=st.integers(1, 6))
def test_rotation_leaves_logits_unchanged(q, seed, n_k, device):
    """RᵀR = 1 ⇒ ⟪R q, R k⟫ = ⟪q, k⟫, so attention_logits(q Rᵀ, k Rᵀ) = attention_logits(q, k)."""
    d = q.shape[-1]
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(*q.shape[:-2], n_k, d, generator=g, dtype=torch.float64).to(q.dtype) * q.to(
        torch.float64
    ).abs().max().clamp_min(1).to(q.dtype)
    R = orthogonal_matrix(d, seed, q.dtype)
    defect = float(
        torch.linalg.matrix_norm(R.to(torch.float64).T @ R.to(torch.float64) - torch.eye(d, dtype=torch.float64))
    )
    a = attention_logits(q.to(device), k.to(device), scale=1.0).cpu().to(torch.float64)
    b = attention_logits((q @ R.T).to(device), (k @ R.T).to(device), scale=1.0).cpu().to(torch.float64)
    nq = q.to(torch.float64).norm(dim=-1, keepdim=True)
    nk = k.to(torch.float64).norm(dim=-1).unsqueeze(-2)
    assert bool(((a - b).abs() <= gauge_tol(d, q.dtype, defect) * nq * nk + 1e-300).all())
    # and both are ⟪q, k⟫ itself, computed in float64 from the unrotated inputs
    ref = q.to(torch.float64) @ k.to(torch.float64).transpose(-1, -2)
    assert bool(((b - ref).abs() <= gauge_tol(d, q.dtype, defect) * nq * nk + 1e-300).all())
    assert bool(((a - ref).abs() <= (d + 2) * eps(q.dtype) * nq * nk + 1e-300).all())


@pytest.mark.theorem("attention_score_gauge_invariance")
@given(d=dims(1, 32), d_model=st.integers(1, 48), n=st.integers(1, 8), seed=seeds, dtype=st.sampled_from(FLOATS))
def test_fold_rotation_is_free(d, d_model, n, seed, dtype, device):
    """Folding R into W_q and W_k (R W_q, R W_k) leaves every logit ⟪W_q x, W_k y⟫ unchanged."""
    g = torch.Generator().manual_seed(seed)
    Wq = torch.randn(d, d_model, generator=g, dtype=torch.float64).to(dtype)
    Wk = torch.randn(d, d_model, generator=g, dtype=torch.float64).to(dtype)
    X = torch.randn(n, d_model, generator=g, dtype=torch.float64).to(dtype)
    R = orthogonal_matrix(d, seed + 1, dtype)
    folded = fold_rotation(Wq.to(device), Wk.to(device), R.to(device))
    assert folded.W_q.dtype == dtype and folded.W_q.shape == (d, d_model)
    q, k = X @ Wq.T, X @ Wk.T
    q2, k2 = X @ folded.W_q.cpu().T, X @ folded.W_k.cpu().T
    a = attention_logits(q, k, scale=1.0).to(torch.float64)
    b = attention_logits(q2, k2, scale=1.0).to(torch.float64)
    # With S = ‖|W||x|‖ (≥ ‖W x‖): q = W x has ‖Δ‖ ≤ d_model·u·S; R W adds γ_d|R||W| per entry,
    # i.e. ‖Δ‖ ≤ d^{3/2}·u·S after multiplying by x (‖|R|‖₂ ≤ √d); q2 = (RW)x adds d_model·u·S.
    # Each logit ⟪q, k⟫ is computed to γ_d·‖q‖‖k‖. So |a − b| ≤ ((4d_model + 2d^{3/2} + 2d)·eps
    # + ‖RᵀR − I‖)·S_q·S_k.
    X64 = X.to(torch.float64)
    S_q = (X64.abs() @ Wq.to(torch.float64).abs().T).norm(dim=-1)
    S_k = (X64.abs() @ Wk.to(torch.float64).abs().T).norm(dim=-1)
    defect = float(
        torch.linalg.matrix_norm(R.to(torch.float64).T @ R.to(torch.float64) - torch.eye(d, dtype=torch.float64))
    )
    tol = ((4 * d_model + 2 * d**1.5 + 2 * d) * eps(dtype) + defect) * torch.outer(S_q, S_k)
    assert bool(((a - b).abs() <= tol + 1e-300).all())


def test_fold_rotation_rejects_non_orthogonal_r():
    W = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"\bR\b.*orthogonal"):
        fold_rotation(W, W, 1.01 * torch.eye(4))
    with pytest.raises(ValueError, match="W_q"):
        fold_rotation(W, W, torch.eye(3))  # d of R and of W_q disagree
    with pytest.raises(ValueError, match=r"\bR\b"):
        fold_rotation(W, W, torch.randn(4, 4))
    with pytest.raises(ValueError, match="W_k"):
        fold_rotation(W, torch.randn(5, 6), torch.eye(4))


@pytest.mark.theorem("attention_score_gauge_invariance")
@given(data=qkv(), causal=st.booleans(), seed=seeds)
def test_centering_and_rotation_are_free_in_exact_attention(data, causal, seed, device):
    """(a)+(b) together: subtracting the key mean and rotating q and k leaves the attention
    output unchanged — protected_quantized_attention with every key protected is exact attention."""
    q, k, v = data
    d, n_k = q.shape[-1], k.shape[-2]
    R = orthogonal_matrix(d, seed, q.dtype)
    out = protected_quantized_attention(
        q.to(device), k.to(device), v.to(device), n_protect=n_k, rotation=R.to(device), center=True, causal=causal
    ).cpu()
    ref = _exact_attention(q, k, v, causal)
    assert out.shape == ref.shape and out.dtype == q.dtype
    assert bool(((out.to(torch.float64) - ref).abs() <= _output_tol(q, k, v)).all())


def _exact_attention(q, k, v, causal):
    q64, k64, v64 = (t.to(torch.float64) for t in (q, k, v))
    logits = q64 @ k64.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        n_q, n_k = logits.shape[-2:]
        mask = torch.ones(n_q, n_k, dtype=torch.bool).tril(diagonal=n_k - n_q)
        logits = logits.masked_fill(~mask, float("-inf"))
    p = torch.softmax(logits, dim=-1)
    return torch.nan_to_num(p) @ v64


def _output_tol(q, k, v):
    """|ΔO| ≤ ‖Δp‖₁·max|v| + (n+2)u·max|v|, ‖Δp‖₁ ≤ 2·max|Δ logit|; a logit moves by
    ≤ scale·‖q‖·(‖Δk̃‖ + …) with ‖Δk̃‖ ≤ (d^{3/2} + n + 4)u·(‖k‖ + ‖m‖) from centring and R."""
    d, n = q.shape[-1], k.shape[-2]
    u = eps(q.dtype) / 2
    k64 = k.to(torch.float64)
    knorm = float(k64.norm(dim=-1).max()) + float(k64.mean(dim=-2).norm(dim=-1).max())
    qnorm = float(q.to(torch.float64).norm(dim=-1).max())
    dlogit = (2 * d**1.5 + n + 2 * d + 8) * u * qnorm * knorm / math.sqrt(d)
    vmax = float(v.to(torch.float64).abs().max())
    return (4 * dlogit + (n + 4) * u * 4) * vmax * math.exp(2 * dlogit) + 1e-300


# ----------------------------------------------------------------------------- softmax shift


@pytest.mark.theorem("softmax_shift")
@given(
    x=real_tensors(
        max_d=40,
        batch_shapes=st.sampled_from([(), (3,), (2, 2)]),
        row_scale=False,
        kinds=("gaussian", "ties", "sparse", "heavy"),
    ),
    mag=st.floats(0, 4),
    c=st.floats(-1e4, 1e4),
)
def test_softmax_shift_invariance(x, mag, c, device):
    """softmax (x + c) = softmax x, and stable_softmax agrees with torch.softmax; logits up to
    10⁴·(heavy tails) never overflow."""
    n = x.shape[-1]
    x = (x.to(torch.float64) * 10.0**mag).to(x.dtype)
    p = stable_softmax(x.to(device)).cpu().to(torch.float64)
    p_shift = stable_softmax((x + c).to(device)).cpu().to(torch.float64)
    u = eps(x.dtype) / 2
    xmax = float(x.to(torch.float64).abs().max()) if x.numel() else 0.0
    rel = math.expm1(min(4 * u * (xmax + abs(c)), 700.0)) + 2 * (n + 4) * u  # vacuous once ≥ 1
    assert bool(torch.isfinite(p).all())
    assert bool(((p_shift - p).abs() <= rel * p + 2 * (n + 4) * u * p.amax(dim=-1, keepdim=True)).all())
    ref = torch.softmax(x.to(torch.float64), dim=-1)
    assert bool(
        (
            (p - ref).abs() <= 2 * (n + 4) * u * ref + 2 * (n + 4) * u * ref.amax(dim=-1, keepdim=True) + u * xmax * ref
        ).all()
    )
    assert bool(((p.sum(dim=-1) - 1).abs() <= 2 * (n + 4) * u).all())


@pytest.mark.exercises("softmax_shift")
def test_softmax_masking_and_total_convention():
    ninf = float("-inf")
    x = torch.tensor([[0.0, 1.0, ninf], [ninf, ninf, ninf], [1e4, 1e4 - 1, -1e4]])
    p = stable_softmax(x)
    e = math.e
    assert torch.allclose(p[0], torch.tensor([1 / (1 + e), e / (1 + e), 0.0]))
    assert torch.equal(p[1], torch.zeros(3))  # all masked: 0/0 = 0
    assert torch.allclose(p[2], torch.tensor([e / (1 + e), 1 / (1 + e), 0.0]))
    assert torch.equal(stable_softmax(x, dim=0)[:, 2], torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\bx\b"):
        stable_softmax(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\bx\b"):
        stable_softmax(torch.tensor([1.0, float("inf")]))


@pytest.mark.exercises("softmax_shift")
@pytest.mark.parametrize("kind", ["bool", "float32", "float16", "bfloat16"])
def test_masked_softmax_one_convention_for_every_mask(kind):
    """Boolean masks (True = attend) and transformers' additive masks (finfo(dtype).min of the
    mask's own dtype where masked) give the same probabilities: a float64 softmax over the kept
    entries, and exactly 0 for a fully masked row — also for half-precision masks, whose −65504
    would not read as masked once widened to float32."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, generator=g)
    keep = torch.tensor([[True, False, True, True, False], [False] * 5, [True] * 5])
    if kind == "bool":
        mask = keep
    else:
        dtype = getattr(torch, kind)
        mask = torch.where(keep, torch.zeros((), dtype=dtype), torch.tensor(torch.finfo(dtype).min, dtype=dtype))
    p = masked_softmax(logits, mask)
    x = logits.double().masked_fill(~keep, float("-inf"))
    want = torch.where(keep.any(-1, keepdim=True), torch.softmax(x, -1), torch.zeros_like(x))
    want = torch.nan_to_num(want)
    assert torch.equal(p[1], torch.zeros(5))
    assert bool(((p.double() - want).abs() <= 2 * (5 + 4) * torch.finfo(torch.float32).eps).all())  # 2(n + 4)u


# ----------------------------------------------------------------------------- front-token protection


@pytest.mark.theorem("front_token_protection")
@settings(max_examples=scaled_examples(1))
@given(data=qkv(), frac=st.floats(0, 1), center=st.booleans(), rotate=st.booleans(), causal=st.booleans(), seed=seeds)
def test_protected_keys_are_bit_exact(data, frac, center, rotate, causal, seed, device):
    """The first n_protect keys are kept bit-exact, every other key is its 1-bit reconstruction
    quant1 (R(k_t − m)); without centring and rotation the protected keys are the input keys."""
    q, k, v = data
    d, n_k = q.shape[-1], k.shape[-2]
    n_protect = round(frac * n_k)
    R = orthogonal_matrix(d, seed, q.dtype) if rotate else None
    pk = protected_quantized_keys(k.to(device), n_protect, rotation=None if R is None else R.to(device), center=center)
    keys, exact = pk.keys.cpu(), pk.exact.cpu()
    assert torch.equal(keys[..., :n_protect, :], exact[..., :n_protect, :])
    code = quantize_1bit(exact[..., n_protect:, :])
    assert torch.equal(keys[..., n_protect:, :], dequantize_1bit(code.signs, code.scale))
    if not center and not rotate:
        assert torch.equal(keys[..., :n_protect, :], k[..., :n_protect, :])
    m = k.to(torch.float64).mean(dim=-2) if center else torch.zeros(k.shape[:-2] + (d,), dtype=torch.float64)
    assert bool(
        (
            (pk.mean.cpu().to(torch.float64) - m).abs()
            <= (n_k + 1) * eps(k.dtype) * k.to(torch.float64).abs().amax(dim=(-2, -1), keepdim=True).squeeze(-1)
        ).all()
    )
    args = (q.to(device), k.to(device), v.to(device), n_protect)
    kwargs = dict(rotation=None if R is None else R.to(device), center=center, causal=causal)
    out = protected_quantized_attention(*args, **kwargs)
    err = attention_output_error(*args, **kwargs)
    assert out.shape == q.shape[:-1] + (v.shape[-1],) and err.shape == q.shape[:-2]
    ref = _exact_attention(q, k, v, causal)
    ref_norm = torch.linalg.matrix_norm(ref)
    rel = torch.linalg.matrix_norm(out.cpu().to(torch.float64) - ref) / ref_norm.clamp_min(1e-300)
    # err uses impl's own exact attention O_e (working dtype) instead of the float64 one: both
    # numerator and denominator move by ≤ ‖O_e − O_ref‖ ≤ _output_tol·√(n_q·d_v).
    delta = _output_tol(q, k, v) * math.sqrt(ref[..., :, :].shape[-2] * ref.shape[-1]) / ref_norm.clamp_min(1e-300)
    assert bool(((err.cpu().to(torch.float64) - rel).abs() <= 2 * delta * (1 + rel) + (ref_norm == 0)).all())


def _sink_workload(seed: int, heads: int = 64, n: int = 64, d: int = 32):
    """Attention-sink-like heads: token 0's key leans along a per-head direction that every query
    shares (it draws ≈ 18% of the attention mass on average, all of it for the first query);
    the other keys are Gaussian around a shared mean (as pre-RoPE keys are)."""
    g = torch.Generator().manual_seed(seed)
    mean = 2 * torch.randn(d, generator=g)
    k = mean + torch.randn(heads, n, d, generator=g)
    sink = torch.randn(heads, 1, d, generator=g)
    sink = sink / sink.norm(dim=-1, keepdim=True) * math.sqrt(d)
    q = torch.randn(heads, n, d, generator=g) + 0.5 * sink
    k[:, 0, :] = mean + sink[:, 0, :] + 0.5 * torch.randn(heads, d, generator=g)
    v = torch.randn(heads, n, d, generator=g)
    return q, k, v


@pytest.mark.theorem("front_token_protection")
@pytest.mark.parametrize("center", [True, False])
def test_front_token_protection_reduces_the_error(center):
    """Measured, fixed seeds (empirical entry): on attention-sink heads, protecting the first
    tokens does not increase the mean attention-output error and strictly reduces it; protecting
    every token gives exact attention (error at rounding level)."""
    q, k, v = _sink_workload(seed=0)
    errs = [
        float(attention_output_error(q, k, v, n_protect=p, center=center, causal=True).mean()) for p in (0, 1, 4, 16)
    ]
    assert errs[1] < errs[0]
    assert all(b <= a for a, b in zip(errs, errs[1:]))
    full = attention_output_error(q, k, v, n_protect=k.shape[-2], center=center, causal=True)
    exact = _exact_attention(q, k, v, causal=True)
    bound = _output_tol(q, k, v) * math.sqrt(exact[0].numel()) / torch.linalg.matrix_norm(exact)
    assert bool((full.to(torch.float64) <= bound).all())


def test_bad_input_names_the_argument():
    q, k, v = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5, 2)
    with pytest.raises(ValueError, match="q and k"):
        attention_logits(q, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\bv\b"):
        protected_quantized_attention(q, k, torch.randn(4, 2), 1)
    with pytest.raises(ValueError, match="n_protect"):
        protected_quantized_attention(q, k, v, 6)
    with pytest.raises(ValueError, match="n_protect"):
        protected_quantized_keys(k, -1)
    with pytest.raises(ValueError, match="rotation"):
        protected_quantized_attention(q, k, v, 1, rotation=2 * torch.eye(4))
    with pytest.raises(ValueError, match=r"\bq\b"):
        attention_logits(torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]), k)
    with pytest.raises(ValueError, match="scale"):
        attention_logits(q, k, scale=float("inf"))


def test_default_scale_and_half_precision():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    assert torch.allclose(attention_logits(q, k), q @ k.transpose(-1, -2) / 4.0)
    assert torch.allclose(attention_logits(q, k, scale=0.5), q @ k.transpose(-1, -2) * 0.5)
    qh, kh = q.half(), k.half()
    assert attention_logits(qh, kh).dtype == torch.float16
    assert torch.equal(attention_logits(qh, kh), attention_logits(qh.float(), kh.float()).half())
    x = torch.randn(4, 7, generator=g).bfloat16()
    assert torch.equal(stable_softmax(x), stable_softmax(x.float()).bfloat16())
