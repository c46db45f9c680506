"""Rank-r correction of the 1-bit residual — SPEC §5.

After 1-bit quantization a key `k` leaves a residual `r = k − quant1 k` with
`sqnorm r = (1 − b)·sqnorm k` (b = betaVec k). Storing a correction `c` that captures a
fraction `g` of the residual's energy gives the effective β `1 − (1 − b)(1 − g)`
(beta_eff_formula). Over a batch of residual rows `E` (shape (..., n, d)), the best rank-r
correction projects the rows onto the top-r right singular vectors (Ky Fan / Eckart–Young).
A basis is a (..., d, r) matrix `B` with orthonormal columns; `P = B Bᵀ`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from impl.validation import (
    check_orthonormal_columns,
    check_positive_int,
    check_tensor,
    compute_dtype,
    result_dtype,
)


def beta_eff(b: float | Tensor, g: float | Tensor) -> float | Tensor:
    """Effective β after a residual correction: `1 − (1 − b)(1 − g)` (beta_eff_formula).

    If `sqnorm r = (1 − b)·sqnorm k` and `sqnorm (r − c) = (1 − g)·sqnorm r` then
    `1 − sqnorm (r − c) / sqnorm k = 1 − (1 − b)(1 − g)`; for `b, g ∈ [0, 1]` it lies in
    `[max b g, 1]`. Numbers in, ``float`` out; tensors broadcast.
    """
    if isinstance(b, Tensor) or isinstance(g, Tensor):
        tensors = [x for x in (b, g) if isinstance(x, Tensor)]
        out_dtype = result_dtype(tensors[0].dtype)
        for x in tensors[1:]:
            out_dtype = torch.promote_types(out_dtype, result_dtype(x.dtype))
        work = compute_dtype(out_dtype)
        device = tensors[0].device

        def as_tensor(x: float | Tensor, name: str) -> Tensor:
            xt = x if isinstance(x, Tensor) else torch.tensor(float(x), dtype=work, device=device)
            return check_tensor(xt, name, min_dim=0).to(work)

        bt, gt = as_tensor(b, "b"), as_tensor(g, "g")
        return (1.0 - (1.0 - bt) * (1.0 - gt)).to(out_dtype)
    for name, x in (("b", b), ("g", g)):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x or x in (float("inf"), float("-inf")):
            raise ValueError(f"{name} must be a finite real number or a tensor, got {x!r}")
    return 1.0 - (1.0 - float(b)) * (1.0 - float(g))


def _k_for(x: Tensor, k: int) -> int:
    k = check_positive_int(k, "k", minimum=0)
    if k > x.shape[-1]:
        raise ValueError(f"k must be ≤ the last dimension ({x.shape[-1]}), got {k}")
    return k


def top_k_mask(x: Tensor, k: int) -> Tensor:
    """Boolean mask of k largest entries along the last dimension (top_k_optimal: the set S
    with a threshold τ ≤ xᵢ on S and xᵢ ≤ τ off S). Ties at the threshold are broken by
    `torch.topk`; any such choice is optimal."""
    xc = check_tensor(x, "x")
    k = _k_for(xc, k)
    mask = torch.zeros(xc.shape, dtype=torch.bool, device=xc.device)
    if k:
        idx = torch.topk(xc, k, dim=-1).indices
        mask.scatter_(-1, idx, True)
    return mask


def top_k_sum(x: Tensor, k: int) -> Tensor:
    """Sum of the k largest entries along the last dimension: the maximum of `Σ cᵢ xᵢ` over
    weights `0 ≤ cᵢ ≤ 1`, `Σ cᵢ = k` (top_k_optimal) — in particular over all k-subsets."""
    xc = check_tensor(x, "x")
    k = _k_for(xc, k)
    if k == 0:
        return torch.zeros(xc.shape[:-1], dtype=result_dtype(x.dtype), device=xc.device)
    return torch.topk(xc, k, dim=-1).values.sum(dim=-1).to(result_dtype(x.dtype))


class LowRankCorrection(NamedTuple):
    """`basis` B (..., d, r), orthonormal columns = top-r right singular vectors of E;
    `coefficients` E B (..., n, r); `approximation` E B Bᵀ (..., n, d)."""

    basis: Tensor
    coefficients: Tensor
    approximation: Tensor


def _residual(residual: Tensor) -> Tensor:
    return check_tensor(residual, "residual", min_dim=2)


def rank_r_correction(
    residual: Tensor,
    r: int,
    method: Literal["svd", "randomized"] = "svd",
    generator: torch.Generator | None = None,
    *,
    oversample: int = 10,
    power_iters: int = 2,
) -> LowRankCorrection:
    """Best rank-r correction of residual rows E (svd_topk_maximizes_gammaR,
    residual_topk_eckart_young, eckart_young_full): project every row onto the span of the
    top-r right singular vectors, `X = E B Bᵀ`, so `‖E − X‖_F² = Σ_{i ≥ r} σᵢ²`.

    `method="svd"`: exact (torch.linalg.svd). `method="randomized"`: Halko–Martinsson–Tropp
    range finder with `r + oversample` Gaussian probes from `generator` and `power_iters`
    subspace iterations, then an exact SVD of the small projected matrix; exact when rank E ≤ r
    (+oversample), near-optimal otherwise, and falls back to the exact SVD when the sketch would
    not be smaller than E. `r` may be 0 … d.
    """
    E = _residual(residual)
    n, d = E.shape[-2], E.shape[-1]
    r = check_positive_int(r, "r", minimum=0)
    if r > d:
        raise ValueError(f"r must be ≤ d = {d}, got {r}")
    if method not in ("svd", "randomized"):
        raise ValueError(f"method must be 'svd' or 'randomized', got {method!r}")
    ell = min(r + check_positive_int(oversample, "oversample", minimum=0), d)
    if method == "randomized" and ell < min(n, d) and r > 0:
        if not isinstance(generator, torch.Generator):
            raise ValueError("generator must be a torch.Generator for method='randomized'")
        power_iters = check_positive_int(power_iters, "power_iters", minimum=0)
        omega = torch.randn(d, ell, generator=generator, dtype=E.dtype, device=generator.device).to(E.device)
        Q = torch.linalg.qr(E @ omega).Q
        for _ in range(power_iters):
            Z = torch.linalg.qr(E.transpose(-1, -2) @ Q).Q
            Q = torch.linalg.qr(E @ Z).Q
        small = Q.transpose(-1, -2) @ E  # (..., ell, d)
        Vh = torch.linalg.svd(small, full_matrices=False).Vh
    else:
        Vh = torch.linalg.svd(E, full_matrices=r > min(n, d)).Vh
    B = Vh[..., :r, :].transpose(-1, -2)
    coeff = E @ B
    approx = coeff @ B.transpose(-1, -2)
    dt = result_dtype(residual.dtype)
    return LowRankCorrection(basis=B.to(dt), coefficients=coeff.to(dt), approximation=approx.to(dt))


def _residual_and_basis(residual: Tensor, basis: Tensor) -> tuple[Tensor, Tensor]:
    E = _residual(residual)
    Bc = check_tensor(basis, "basis", min_dim=2, allow_empty_last=True)  # r = 0 is allowed
    if Bc.shape[-2] != E.shape[-1]:
        raise ValueError(f"basis must have shape (..., d = {E.shape[-1]}, r), got {tuple(basis.shape)}")
    check_orthonormal_columns(Bc, "basis")
    dt = torch.promote_types(E.dtype, Bc.dtype)
    return E.to(dt), Bc.to(dt)


def gamma_r(residual: Tensor, basis: Tensor) -> Tensor:
    """Captured energy fraction `γ_r = Σ_t ‖P e_t‖² / Σ_t ‖e_t‖²`, `P = B Bᵀ`
    (svd_topk_maximizes_gammaR). Equals `Σ_j ⟪EᵀE b_j, b_j⟫ / tr(EᵀE)`; by Ky Fan it is at
    most (sum of the r largest eigenvalues of EᵀE) / tr(EᵀE), with equality for the SVD basis.
    Total convention: E = 0 gives 0."""
    E, B = _residual_and_basis(residual, basis)
    captured = ((E @ B) ** 2).sum(dim=(-2, -1))
    total = (E * E).sum(dim=(-2, -1))
    pos = total > 0
    g = torch.where(pos, captured / torch.where(pos, total, torch.ones_like(total)), torch.zeros_like(total))
    return g.to(result_dtype(residual.dtype))


def low_rank_error(residual: Tensor, basis: Tensor) -> Tensor:
    """`‖E − E P‖_F²`, `P = B Bᵀ` (residual_topk_eckart_young): equals
    `tr(EᵀE) − Σ_j ⟪EᵀE b_j, b_j⟫ ≥ Σ_{i ≥ r} λᵢ(EᵀE)`, with equality at the top-r
    eigenvectors. Computed directly from the difference E − E P."""
    E, B = _residual_and_basis(residual, basis)
    diff = E - (E @ B) @ B.transpose(-1, -2)
    return (diff * diff).sum(dim=(-2, -1)).to(result_dtype(residual.dtype))
