"""Attention over exact and 1-bit keys — SPEC §3 (gauge invariance) and §6 (front-token protection).

Shapes: queries `q` (..., n_q, d), keys `k` (..., n_k, d), values `v` (..., n_k, d_v); logits
`⟪q_i, k_j⟫ · scale` (default scale 1/√d). A projection matrix `W` (nn.Linear layout,
shape (d, d_model)) maps a hidden state x to `W x`; folding a rotation R into it is `R W`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from impl.sign_quant import dequantize_1bit, quantize_1bit
from impl.validation import (
    check_no_nan,
    check_orthogonal,
    check_positive_int,
    check_tensor,
    compute_dtype,
    result_dtype,
)


def _qk(q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    qc = check_tensor(q, "q", min_dim=2)
    kc = check_tensor(k, "k", min_dim=2)
    if qc.shape[-1] != kc.shape[-1]:
        raise ValueError(f"q and k must share the head dimension d: got q {tuple(q.shape)}, k {tuple(k.shape)}")
    dt = torch.promote_types(qc.dtype, kc.dtype)
    return qc.to(dt), kc.to(dt)


def _scale(scale: float | None, d: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number or None, got {scale!r}")
    return float(scale)


def attention_logits(q: Tensor, k: Tensor, scale: float | None = None) -> Tensor:
    """Attention logits `⟪q_i, k_j⟫ · scale` (attention_score_gauge_invariance (a): unchanged
    when q and k are both rotated by an orthogonal R). Shape (..., n_q, n_k); default scale 1/√d."""
    qc, kc = _qk(q, k)
    s = _scale(scale, qc.shape[-1])
    return ((qc @ kc.transpose(-1, -2)) * s).to(result_dtype(q.dtype))


def stable_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """`softmax x i = exp xᵢ / Σⱼ exp xⱼ`, computed as `softmax (x − max x)` — the shift that
    softmax_shift proves harmless (`softmax (x + c) = softmax x`), so nothing overflows.

    −Inf entries are masked (probability 0); a slice that is entirely −Inf gives all zeros
    (total convention, 0/0 = 0). NaN or +Inf raise ValueError.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension")
    xc = x.to(compute_dtype(x.dtype))
    check_no_nan(xc, "x")
    mx = xc.amax(dim=dim, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    e = torch.exp(xc - mx)
    total = e.sum(dim=dim, keepdim=True)
    pos = total > 0
    out = torch.where(pos, e / torch.where(pos, total, torch.ones_like(total)), torch.zeros_like(e))
    return out.to(result_dtype(x.dtype))


def masked_softmax(logits: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """`stable_softmax` of `logits` with a mask applied first — the one masking convention of the
    project: ``mask`` is boolean (True = attend; False entries become −∞) or additive (added to
    the logits; transformers' float masks hold 0 or a large negative number); None masks nothing.
    A row with every entry masked gets probability 0 everywhere (total convention 0/0 = 0), never
    NaN and never a uniform distribution over masked keys. `mask` broadcasts against `logits`."""
    if mask is None:
        return stable_softmax(logits, dim=dim)
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    x = logits.to(compute_dtype(logits.dtype))
    if mask.dtype == torch.bool:
        x = x.masked_fill(~mask, float("-inf"))
    else:
        # transformers marks masked entries with finfo(dtype).min of the mask's own dtype; treat
        # anything at or below half of it as −∞ (tested before widening, so a float16 mask's −65504
        # counts too), so a fully masked row is recognised as such
        masked = mask <= torch.finfo(mask.dtype).min / 2
        x = torch.where(masked, torch.full_like(x, float("-inf")), x + mask.to(x.dtype))
    return stable_softmax(x, dim=dim).to(result_dtype(logits.dtype))


class FoldedProjections(NamedTuple):
    """`W_q` and `W_k` with the rotation folded in: `R W_q`, `R W_k`."""

    W_q: Tensor
    W_k: Tensor


def fold_rotation(W_q: Tensor, W_k: Tensor, R: Tensor) -> FoldedProjections:
    """Fold an orthogonal R into both projections: `(R W_q, R W_k)` (attention_score_gauge_invariance
    (a)): then `q′ = R q`, `k′ = R k` and `⟪R q, R k⟫ = ⟪q, k⟫` — every logit is unchanged, so the
    rotation is free at deploy time. `W_q`, `W_k`: shape (d, d_model); R: (d, d), and must be
    orthogonal (ValueError otherwise)."""
    Wq = check_tensor(W_q, "W_q", min_dim=2)
    Wk = check_tensor(W_k, "W_k", min_dim=2)
    Rc = check_tensor(R, "R", min_dim=2)
    d = check_orthogonal(Rc, "R")
    if Rc.dim() != 2:
        raise ValueError(f"R must be a single (d, d) matrix, got shape {tuple(R.shape)}")
    for name, W in (("W_q", Wq), ("W_k", Wk)):
        if W.shape[-2] != d:
            raise ValueError(f"{name} must have shape (..., d = {d}, d_model), got {tuple(W.shape)}")
    dt = torch.promote_types(Rc.dtype, torch.promote_types(Wq.dtype, Wk.dtype))
    Rw = Rc.to(dt)
    return FoldedProjections(
        W_q=(Rw @ Wq.to(dt)).to(result_dtype(W_q.dtype)),
        W_k=(Rw @ Wk.to(dt)).to(result_dtype(W_k.dtype)),
    )


class ProtectedKeys(NamedTuple):
    """Keys in the working basis `k̃_t = R (k_t − m)`: `keys` = what attention uses (the first
    `n_protect` rows exactly `exact`'s, the rest `quant1 k̃_t`); `exact` = k̃_t unquantized;
    `mean` m (zeros when not centred); `rotation` R (identity when None was given)."""

    keys: Tensor
    exact: Tensor
    mean: Tensor
    rotation: Tensor


def protected_quantized_keys(
    k: Tensor, n_protect: int, rotation: Tensor | None = None, center: bool = True
) -> ProtectedKeys:
    """The key cache of front_token_protection: centre (m = mean over tokens, dim −2) and rotate
    the keys, `k̃_t = R (k_t − m)`, keep the first `n_protect` tokens' k̃_t exact (bit for bit) and
    replace every other by its 1-bit reconstruction `optScale k̃_t • signVec k̃_t`."""
    kc = check_tensor(k, "k", min_dim=2)
    n_k, d = kc.shape[-2], kc.shape[-1]
    n_protect = check_positive_int(n_protect, "n_protect", minimum=0)
    if n_protect > n_k:
        raise ValueError(f"n_protect must be ≤ the number of keys ({n_k}), got {n_protect}")
    m = kc.mean(dim=-2, keepdim=True) if center else torch.zeros_like(kc[..., :1, :])
    x = kc - m if center else kc
    if rotation is not None:
        Rc = check_tensor(rotation, "rotation", min_dim=2)
        if Rc.shape != (d, d):
            raise ValueError(f"rotation must be a ({d}, {d}) matrix, got {tuple(rotation.shape)}")
        check_orthogonal(Rc, "rotation")
        R = Rc.to(kc.dtype)
        x = x @ R.transpose(0, 1)
    else:
        R = torch.eye(d, dtype=kc.dtype, device=kc.device)
    code = quantize_1bit(x[..., n_protect:, :])
    quant = dequantize_1bit(code.signs, code.scale).to(x.dtype)
    keys = torch.cat([x[..., :n_protect, :], quant], dim=-2)
    return ProtectedKeys(keys=keys, exact=x, mean=m.squeeze(-2), rotation=R)


def causal_mask(n_q: int, n_k: int, device=None) -> Tensor:
    """Bottom-right aligned causal mask (True = attend): query i sees keys j ≤ i + (n_k − n_q)."""
    i = torch.arange(n_q, device=device)[:, None]
    j = torch.arange(n_k, device=device)[None, :]
    return j <= i + (n_k - n_q)


def _attend(q: Tensor, k: Tensor, v: Tensor, scale: float, causal: bool) -> Tensor:
    logits = (q @ k.transpose(-1, -2)) * scale
    mask = causal_mask(logits.shape[-2], logits.shape[-1], q.device) if causal else None
    return masked_softmax(logits, mask, dim=-1) @ v


def _qkv(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    qc, kc = _qk(q, k)
    vc = check_tensor(v, "v", min_dim=2)
    if vc.shape[-2] != kc.shape[-2]:
        raise ValueError(f"v must have one row per key: k {tuple(k.shape)}, v {tuple(v.shape)}")
    return qc, kc, vc.to(qc.dtype)


def protected_quantized_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    n_protect: int,
    rotation: Tensor | None = None,
    center: bool = True,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Attention with 1-bit keys except the first `n_protect` tokens (front_token_protection).

    Keys are centred and rotated (`k̃_t = R (k_t − m)`, queries `q̃ = R q`) — both free by
    attention_score_gauge_invariance, since `⟪q̃, k̃_t⟫ = ⟪q, k_t⟫ − ⟪q, m⟫` and the shift is
    constant per query (softmax_shift) — then every key after the first `n_protect` is replaced
    by its 1-bit reconstruction; the protected keys stay exact. With `n_protect = n_k` the output
    equals exact attention up to rounding. The mean m is taken over all n_k keys. `causal`
    masks key j for query i when j > i + (n_k − n_q). Returns (..., n_q, d_v).
    """
    qc, kc, vc = _qkv(q, k, v)
    s = _scale(scale, qc.shape[-1])
    pk = protected_quantized_keys(kc, n_protect, rotation=rotation, center=center)
    qr = qc @ pk.rotation.transpose(0, 1)
    return _attend(qr, pk.keys, vc, s, causal).to(result_dtype(q.dtype))


def attention_output_error(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    n_protect: int,
    rotation: Tensor | None = None,
    center: bool = True,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Relative attention-output error of `protected_quantized_attention` against exact attention
    `softmax(q kᵀ · scale) v`: `‖O_quant − O_exact‖_F / ‖O_exact‖_F` over the last two dims
    (0 when O_exact = 0) — the measurement of front_token_protection."""
    qc, kc, vc = _qkv(q, k, v)
    s = _scale(scale, qc.shape[-1])
    exact = _attend(qc, kc, vc, s, causal)
    approx = protected_quantized_attention(qc, kc, vc, n_protect, rotation, center, causal, scale)
    num = torch.linalg.matrix_norm(approx - exact)
    den = torch.linalg.matrix_norm(exact)
    pos = den > 0
    out = torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))
    return out.to(result_dtype(q.dtype))
