"""Orthogonal matrices and learned L¹-max rotations — SPEC §3 and §6.

A rotation acts on a key as a column vector, `k ↦ R k`; on a batch of keys stored as rows
`X` (shape (n, d)) that is `X @ Rᵀ`. Orthogonality means `Rᵀ R = I`; `orthogonality_defect`
measures `‖RᵀR − I‖_F`.

`learn_rotation` maximises the mean 1-bit cosine `(1/n) Σ_t cosSign (R (k_t − m))` over
orthogonal R (SPEC §3, "learned L¹-max rotation"), with `R = exp(A) R₀` or
`R = cayley(A) R₀`, `A = W − Wᵀ` skew-symmetric, W trained by Adam; both maps are exactly
orthogonal on skew matrices (the exponential is evaluated with a diagonal Padé approximant,
see `skew_exp`), so R leaves O(d) only by rounding. It is the numerical witness
for the open target ffn_weight_beta_lift_under_learned_R and the fitting step of the metric of
the conjecture expert_heterogeneity_batch_full_gap (`batch_full_gap`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from impl.hadamard import srht_matrix
from impl.moments import beta_vec
from impl.multilevel import check_levels, level_cosine
from impl.sign_quant import _pow2_normalize, cos_sign
from impl.validation import (
    check_orthogonal,
    check_positive_int,
    check_power_of_two,
    check_square,
    check_tensor,
    orthogonality_atol,
    result_dtype,
)


def orthogonality_defect(R: Tensor) -> Tensor:
    """`‖RᵀR − I‖_F` (Frobenius), computed in float64; 0 exactly for an orthogonal R.

    Batched over leading dimensions; returns shape `R.shape[:-2]` in R's dtype.
    """
    Rc = check_tensor(R, "R", min_dim=2)
    d = check_square(Rc, "R")
    R64 = Rc.to(torch.float64)
    eye = torch.eye(d, dtype=torch.float64, device=R.device)
    return torch.linalg.matrix_norm(R64.transpose(-1, -2) @ R64 - eye).to(result_dtype(R.dtype))


def is_orthogonal(R: Tensor, atol: float | None = None) -> Tensor:
    """Whether `RᵀR = I` to within `atol` in Frobenius norm (attention_score_gauge_invariance
    needs it). Default `atol = 16·d·eps(dtype)` (see `impl.validation.orthogonality_atol`)."""
    Rc = check_tensor(R, "R", min_dim=2)
    d = check_square(Rc, "R")
    if atol is None:
        atol = orthogonality_atol(d, R.dtype)
    return orthogonality_defect(Rc).to(torch.float64) <= atol


def project_orthogonal(M: Tensor) -> Tensor:
    """The orthogonal matrix nearest to `M` in Frobenius norm: the polar factor `U Vᵀ` of
    `M = U Σ Vᵀ` (computed in float64, cast back). Batched over leading dimensions."""
    Mc = check_tensor(M, "M", min_dim=2)
    check_square(Mc, "M")
    U, _, Vh = torch.linalg.svd(Mc.to(torch.float64))
    return (U @ Vh).to(result_dtype(M.dtype))


def random_orthogonal(
    d: int,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """A Haar-distributed orthogonal `d × d` matrix: QR of a standard Gaussian matrix, with the
    columns of Q multiplied by `sign(diag R)` so the law is exactly Haar (Mezzadri 2007).
    Computed in float64 from `generator` only, then cast to `dtype`."""
    d = check_positive_int(d, "d")
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator must be a torch.Generator (randomness is explicit)")
    Z = torch.randn(d, d, generator=generator, dtype=torch.float64, device=generator.device)
    Q, Rr = torch.linalg.qr(Z)
    sgn = torch.where(torch.diagonal(Rr) >= 0, 1.0, -1.0).to(torch.float64)
    Q = Q * sgn[None, :]
    out = Q.to(dtype)
    return out.to(device) if device is not None else out


def _check_skew(A: Tensor, name: str) -> Tensor:
    Ac = check_tensor(A, name, min_dim=2)
    check_square(Ac, name)
    asym = torch.linalg.matrix_norm(Ac + Ac.transpose(-1, -2))
    size = torch.linalg.matrix_norm(Ac)
    eps = torch.finfo(Ac.dtype).eps
    # A skew matrix built as W − Wᵀ is exactly skew; allow one rounding per entry.
    if bool((asym > 4 * eps * size).any()):
        raise ValueError(f"{name} must be skew-symmetric ({name}ᵀ = −{name})")
    return Ac


def cayley(A: Tensor) -> Tensor:
    """Cayley map `R = (I − A)⁻¹ (I + A)` of a skew-symmetric `A`: orthogonal with det R = +1
    for every skew A (I − A is always invertible: its eigenvalues are 1 − iλ).
    Raises ValueError when A is not skew-symmetric. Batched; differentiable."""
    Ac = _check_skew(A, "A")
    eye = torch.eye(Ac.shape[-1], dtype=Ac.dtype, device=Ac.device)
    return torch.linalg.solve(eye - Ac, eye + Ac).to(result_dtype(A.dtype))


# Diagonal Padé [6/6] coefficients of exp: c_k = (12 − k)! 6! / (12! k! (6 − k)!).
_PADE6 = [
    math.factorial(12 - k) * math.factorial(6) / (math.factorial(12) * math.factorial(k) * math.factorial(6 - k))
    for k in range(7)
]
_PADE6_THETA = 0.5  # ‖B‖ ≤ 1/2: the [6/6] error (6!)²/(12!·13!)·‖B‖¹³ ≈ 2e-17 is below float64 rounding


def _skew_exp(A: Tensor) -> Tensor:
    """exp(A) for skew A by scaling and squaring with the diagonal Padé approximant r₆.

    For skew B, q(B) = p(−B) = p(B)ᵀ commutes with p(B), so r₆(B) = q(B)⁻¹ p(B) is *exactly*
    orthogonal; only rounding (solve, s squarings) moves it off O(d). torch.linalg.matrix_exp
    is not used: its Taylor branch for float64 loses up to ~4e5 ulp (seen in torch 2.13 for
    2 × 2 inputs with ‖A‖₁ ≈ 0.04), and a truncated Taylor series is never exactly orthogonal.
    """
    d = A.shape[-1]
    norm1 = float(A.detach().abs().sum(dim=-2).amax()) if A.numel() else 0.0
    s = max(0, math.ceil(math.log2(norm1 / _PADE6_THETA))) if norm1 > 0 else 0
    B = A / 2.0**s
    eye = torch.eye(d, dtype=A.dtype, device=A.device)
    B2 = B @ B
    B4 = B2 @ B2
    B6 = B4 @ B2
    c = _PADE6
    V = c[0] * eye + c[2] * B2 + c[4] * B4 + c[6] * B6
    U = B @ (c[1] * eye + c[3] * B2 + c[5] * B4)
    R = torch.linalg.solve(V - U, V + U)
    for _ in range(s):
        R = R @ R
    return R


def skew_exp(A: Tensor) -> Tensor:
    """Matrix exponential `R = exp(A)` of a skew-symmetric `A`: orthogonal with det R = +1
    (`exp(A)ᵀ exp(A) = exp(−A) exp(A) = I`). Computed by scaling and squaring with the
    diagonal Padé approximant [6/6], which is exactly orthogonal on skew matrices, so
    ‖RᵀR − I‖ is rounding only: ≲ (1 + 4‖A‖₁)·(8d + d^{3/2})·eps. Raises ValueError when A is
    not skew. Batched; differentiable."""
    Ac = _check_skew(A, "A")
    return _skew_exp(Ac).to(result_dtype(A.dtype))


def _generator(generator: torch.Generator | int | None) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        return torch.Generator().manual_seed(0)
    seed = check_positive_int(generator, "generator (seed)", minimum=0)
    return torch.Generator().manual_seed(seed)


def _initial_rotation(init, d: int, gen: torch.Generator, dtype: torch.dtype, device) -> Tensor:
    if isinstance(init, Tensor):
        if init.shape != (d, d):
            raise ValueError(f"init must be a ({d}, {d}) orthogonal matrix, got shape {tuple(init.shape)}")
        check_orthogonal(check_tensor(init, "init", min_dim=2), "init")
        return init.to(dtype=dtype, device=device)
    if init == "identity":
        return torch.eye(d, dtype=dtype, device=device)
    if init == "random":
        return random_orthogonal(d, gen, dtype=torch.float64).to(dtype=dtype, device=device)
    if init == "srht":
        check_power_of_two(d, "keys.shape[-1] (init='srht')")
        return srht_matrix(d, gen, dtype=dtype, device=device)
    raise ValueError(f"init must be 'identity', 'srht', 'random' or a (d, d) orthogonal tensor, got {init!r}")


@dataclass(frozen=True)
class RotationCurve:
    """Per-step training record of `learn_rotation`.

    `train_beta[i]`: mean betaVec of the rows used at step i (all rows, or the minibatch),
    rotated by the R in force *before* update i. `eval_beta[i]`: the same on the held-out rows
    (None when no `eval_keys` were given)."""

    train_beta: Tensor
    eval_beta: Tensor | None


@dataclass(frozen=True)
class RotationFit:
    """Result of `learn_rotation`.

    `R` (d × d, orthogonal to working precision after a final polar projection), `mean` (the m
    subtracted before rotating; zeros when center=False), `curve`, `beta` = mean betaVec of
    `R(k_t − m)` over all training rows with the returned R, `eval_beta` the same on
    `eval_keys` (or None), and `defect` = ‖RᵀR − I‖_F of the parametrised matrix before the
    final projection (it measures how orthogonal the parametrisation kept R)."""

    R: Tensor
    mean: Tensor
    curve: RotationCurve
    beta: float
    eval_beta: float | None
    defect: float


def _mean_beta(rows: Tensor, R: Tensor, levels: Tensor | None = None) -> Tensor:
    y = rows @ R.transpose(0, 1)
    return beta_vec(y).mean() if levels is None else (level_cosine(y, levels) ** 2).mean()


def learn_rotation(
    keys: Tensor,
    steps: int = 200,
    lr: float = 1e-2,
    center: bool = True,
    init: Literal["identity", "srht", "random"] | Tensor = "identity",
    generator: torch.Generator | int | None = None,
    batch_size: int | None = None,
    eval_keys: Tensor | None = None,
    parametrization: Literal["exp", "cayley"] = "exp",
    levels: Tensor | None = None,
) -> RotationFit:
    """Learn an orthogonal R maximising `(1/n) Σ_t cosSign (R (k_t − m))` over the calibration
    keys (SPEC §3 learned L¹-max rotation; witness for ffn_weight_beta_lift_under_learned_R,
    whose metric is `RotationFit.beta` = `(1/n) Σ_t betaVec (R (k_t − m))`).

    With `levels` (a table (2^b,) of increasing levels) the objective is the b-bit one instead:
    the mean `cos(y_t, ℓ[idx_t])` of `multilevel.level_cosine`, whose square is one minus the
    relative error of the least-squares b-bit code; `beta` and the curves then report the mean
    cos² of that code. The levels ±1 give back the L1-max objective.

    `keys`: shape (..., d), all leading dimensions are rows. `m` is the mean row when
    `center` (DC-mean centering, §3), else 0. `R = exp(W − Wᵀ) R₀` (or Cayley of W − Wᵀ),
    W trained by Adam(lr) for `steps` steps; `R₀` from `init`: identity, a random SRHT
    `2^{−n/2} H_n D` (d a power of two), a Haar-random rotation, or a given orthogonal tensor.
    `batch_size` rows are drawn without replacement per step (all rows when None).
    Deterministic: every random choice comes from `generator` (a Generator, an int seed, or
    None for seed 0). Computed in float64 for float64 keys, else float32.
    """
    X = check_tensor(keys, "keys", min_dim=2)
    d = X.shape[-1]
    X = X.reshape(-1, d)
    n = X.shape[0]
    if n < 1:
        raise ValueError("keys must hold at least one row")
    steps = check_positive_int(steps, "steps", minimum=0)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if batch_size is not None:
        batch_size = min(check_positive_int(batch_size, "batch_size"), n)
    if parametrization not in ("exp", "cayley"):
        raise ValueError(f"parametrization must be 'exp' or 'cayley', got {parametrization!r}")
    E = None
    if eval_keys is not None:
        E = check_tensor(eval_keys, "eval_keys", min_dim=1)
        if E.shape[-1] != d:
            raise ValueError(f"eval_keys must have last dimension d = {d}, got shape {tuple(E.shape)}")
        E = E.reshape(-1, d).to(X.dtype)
    lv = None
    if levels is not None:
        lv = check_levels(levels, "levels").to(X.dtype)
        if lv.dim() != 1:
            raise ValueError(f"levels must be one table (2^b,), got shape {tuple(levels.shape)}")
    gen = _generator(generator)

    # Training needs autograd whatever the caller's mode (a report may run under no_grad or
    # inference_mode); the inputs are detached so no gradient reaches the caller's tensors.
    with torch.inference_mode(False), torch.enable_grad():
        X = X.detach().clone() if X.is_inference() else X.detach()
        if E is not None:
            E = E.detach().clone() if E.is_inference() else E.detach()
        mean = X.mean(dim=0) if center else torch.zeros(d, dtype=X.dtype, device=X.device)
        Xc = X - mean
        Ec = E - mean if E is not None else None
        R0 = _initial_rotation(init, d, gen, X.dtype, X.device)

        W = torch.zeros(d, d, dtype=X.dtype, device=X.device, requires_grad=True)
        opt = torch.optim.Adam([W], lr=lr)
        eye = torch.eye(d, dtype=X.dtype, device=X.device)

        def rotation() -> Tensor:
            A = W - W.transpose(0, 1)
            if parametrization == "exp":
                Q = _skew_exp(A)
            else:
                Q = torch.linalg.solve(eye - A, eye + A)
            return Q @ R0

        train_curve = torch.empty(steps, dtype=torch.float64)
        eval_curve = torch.empty(steps, dtype=torch.float64) if Ec is not None else None
        for i in range(steps):
            if batch_size is None or batch_size == n:
                rows = Xc
            else:
                idx = torch.randperm(n, generator=gen, device=gen.device)[:batch_size].to(X.device)
                rows = Xc[idx]
            R = rotation()
            y = rows @ R.transpose(0, 1)
            c = cos_sign(y) if lv is None else level_cosine(y, lv)
            loss = -c.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                train_curve[i] = float((c.detach() ** 2).mean())
                if eval_curve is not None:
                    eval_curve[i] = float(_mean_beta(Ec, R.detach(), lv))

        with torch.no_grad():
            R_param = rotation()
            defect = float(orthogonality_defect(R_param))
            R_final = project_orthogonal(R_param)
            beta = float(_mean_beta(Xc, R_final, lv))
            eval_beta = float(_mean_beta(Ec, R_final, lv)) if Ec is not None else None
    out_dtype = result_dtype(keys.dtype)
    return RotationFit(
        R=R_final.to(out_dtype),
        mean=mean.to(out_dtype),
        curve=RotationCurve(train_beta=train_curve, eval_beta=eval_curve),
        beta=beta,
        eval_beta=eval_beta,
        defect=defect,
    )


def householder_to_diagonal(x: Tensor) -> Tensor:
    """An orthogonal R with `R x = (‖x‖/√d)·𝟙`, so `cosSign (R x) = 1` (sign_lattice_reachable):
    every nonzero key can be rotated onto the sign lattice — why the single-vector ceiling
    inequality of the write-up is vacuous.

    With `y = (‖x‖/√d)·𝟙`: if `⟪x, 𝟙⟫ ≥ 0`, `R = −(I − 2wwᵀ/‖w‖²)` with `w = x + y` (maps x to
    −(−y)); else `R = I − 2wwᵀ/‖w‖²` with `w = x − y`. Either way `‖w‖² ≥ 2‖x‖²`, so there is no
    cancellation. Total convention: `x = 0` gives `R = I`. Batched: shape (..., d) → (..., d, d).
    """
    xc = check_tensor(x, "x")
    d = xc.shape[-1]
    xs, _ = _pow2_normalize(xc)  # R is scale-invariant; this keeps ‖x‖ finite
    norm = torch.linalg.vector_norm(xs, dim=-1, keepdim=True)
    y = (norm / d**0.5).expand_as(xs)
    positive = xs.sum(dim=-1, keepdim=True) >= 0
    w = torch.where(positive, xs + y, xs - y)
    ww = (w * w).sum(dim=-1, keepdim=True)
    zero = ww == 0
    w = w / torch.sqrt(torch.where(zero, torch.ones_like(ww), ww))
    eye = torch.eye(d, dtype=xs.dtype, device=xs.device)
    H = eye - 2.0 * w.unsqueeze(-1) * w.unsqueeze(-2)
    R = torch.where(positive.unsqueeze(-1), -H, H)
    R = torch.where(zero.unsqueeze(-1), eye.expand_as(R), R)
    return R.to(result_dtype(x.dtype))


@dataclass(frozen=True)
class BatchFullGap:
    """Metric of expert_heterogeneity_batch_full_gap.

    `beta_subsample` = mean betaVec of `R(k − m)` over the subsample S the rotation was fitted
    on; `beta_full` = the same over all rows; `gap = beta_subsample − beta_full`; `index` = the
    rows in S; `fit` = the `RotationFit` (R and m fitted on S)."""

    beta_subsample: float
    beta_full: float
    gap: float
    index: Tensor
    fit: RotationFit


def batch_full_gap(
    rows: Tensor,
    subsample_size: int,
    steps: int = 200,
    generator: torch.Generator | int | None = None,
    lr: float = 1e-2,
    center: bool = True,
    init: Literal["identity", "srht", "random"] | Tensor = "identity",
    parametrization: Literal["exp", "cayley"] = "exp",
) -> BatchFullGap:
    """Fit `learn_rotation` on a random subsample S of `rows` and compare mean betaVec on S with
    the mean over all rows, both for the fitted transform `k ↦ R (k − m_S)`
    (expert_heterogeneity_batch_full_gap): `gap = β(S) − β(all)`.

    The conjecture: for mixtures of clusters with distinct anisotropy the gap stays > 0 for
    |S| below (clusters × d); for one cluster it vanishes as |S| grows. S is drawn without
    replacement from `generator` (then reused for the fit), so the result is deterministic.
    """
    X = check_tensor(rows, "rows", min_dim=2)
    d = X.shape[-1]
    X = X.reshape(-1, d)
    n = X.shape[0]
    s = check_positive_int(subsample_size, "subsample_size")
    if s > n:
        raise ValueError(f"subsample_size must be ≤ the number of rows ({n}), got {s}")
    gen = _generator(generator)
    index = torch.randperm(n, generator=gen, device=gen.device)[:s].to(X.device)
    fit = learn_rotation(
        X[index], steps=steps, lr=lr, center=center, init=init, generator=gen, parametrization=parametrization
    )
    with torch.no_grad():
        R = fit.R.to(X.dtype)
        beta_full = float(_mean_beta(X - fit.mean.to(X.dtype), R))
    return BatchFullGap(beta_subsample=fit.beta, beta_full=beta_full, gap=fit.beta - beta_full, index=index, fit=fit)
