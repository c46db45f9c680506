"""The last mile of β near the sign lattice — SPEC §4.

Near a lattice point `s ∈ {±1}^d`, perturb along `u`: `k = s + t•u`. While no coordinate flips
sign (`|t·uᵢ| < 1`), the deficit `f t = 1 − cosSign (s + t•u)²` is exactly
`t²·sqnorm u⊥ / sqnorm (s + t•u)` with `u⊥ = u − (⟪u, s⟫/d)•s`: it vanishes to second order,
so the gradient signal dies at the lattice and the last mile is quadratically hard.
"""

from __future__ import annotations

import torch
from torch import Tensor

from impl.sign_quant import residual_energy
from impl.validation import check_sign_vector, check_tensor, result_dtype


def beta_deficit(k: Tensor) -> Tensor:
    """`1 − cosSign k² = 1 − betaVec k` (beta_local_quadratic_expansion's left side).

    Computed as the relative 1-bit error `sqnorm (k − quant1 k) / sqnorm k` (equal to it by
    residual_energy_formula), which keeps its relative accuracy when the deficit is tiny.
    Total convention: `cosSign 0 = 0`, so `beta_deficit(0) = 1`. Shape `k.shape[:-1]`.
    """
    kc = check_tensor(k, "k")
    f = residual_energy(kc, relative=True)
    zero = ~(kc != 0).any(dim=-1)
    return torch.where(zero, torch.ones_like(f), f).to(result_dtype(k.dtype))


def _s_u(s: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    sc = check_tensor(s, "s")
    check_sign_vector(sc, "s")
    uc = check_tensor(u, "u")
    if uc.shape[-1] != sc.shape[-1]:
        raise ValueError(f"u must have the same last dimension as s ({sc.shape[-1]}), got {tuple(u.shape)}")
    dt = torch.promote_types(sc.dtype, uc.dtype)
    return sc.to(dt), uc.to(dt)


def _perp(sc: Tensor, uc: Tensor) -> Tensor:
    return uc - (uc * sc).sum(dim=-1, keepdim=True) / sc.shape[-1] * sc


def _out_dtype(*xs: Tensor) -> torch.dtype:
    dt = result_dtype(xs[0].dtype)
    for x in xs[1:]:
        dt = torch.promote_types(dt, result_dtype(x.dtype))
    return dt


def perp_component(u: Tensor, s: Tensor) -> Tensor:
    """`u⊥ = u − (⟪u, s⟫ / d)•s`, the part of u orthogonal to the lattice point s ∈ {±1}^d
    (sqnorm s = d) — beta_local_quadratic_expansion, beta_hessian_nonneg."""
    sc, uc = _s_u(s, u)
    return _perp(sc, uc).to(_out_dtype(u, s))


def _t(t: float | Tensor, like: Tensor) -> Tensor:
    tc = t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=like.dtype, device=like.device)
    return check_tensor(tc, "t", min_dim=0).to(like.dtype)


def deficit_expansion(s: Tensor, u: Tensor, t: float | Tensor) -> Tensor:
    """`t²·sqnorm u⊥ / sqnorm (s + t•u)` — equal to `1 − cosSign (s + t•u)²` whenever every
    `|t·uᵢ| < 1` (beta_local_quadratic_expansion, exact). `t` is a number or broadcasts over
    the leading dimensions. Outside the no-flip region the right side is still returned but is
    no longer the deficit. At `s + t•u = 0` (outside that region: there every `|t·uᵢ| = 1`) the
    quotient follows Lean's total convention `x / 0 = 0`."""
    sc, uc = _s_u(s, u)
    tc = _t(t, uc)
    up = _perp(sc, uc)
    k = sc + tc.unsqueeze(-1) * uc
    den = (k * k).sum(dim=-1)
    tn = tc * torch.linalg.vector_norm(up, dim=-1)        # (t·‖u⊥‖)²: t² alone underflows for tiny t
    num = tn * tn
    pos = den > 0
    out = torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))
    return out.to(_out_dtype(s, u))


def hessian_coefficient(s: Tensor, u: Tensor) -> Tensor:
    """The deficit's second-order coefficient `d·sqnorm u − ⟪s, u⟫² = d·sqnorm u⊥ ≥ 0`
    (beta_hessian_nonneg). Computed as `d·sqnorm u⊥`, which is ≥ 0 in floating point too."""
    sc, uc = _s_u(s, u)
    d = sc.shape[-1]
    up = _perp(sc, uc)
    return (d * (up * up).sum(dim=-1)).to(_out_dtype(s, u))


def deficit_bound(s: Tensor, u: Tensor, t: float | Tensor) -> Tensor:
    """`4 t²·sqnorm u⊥ / d`, an upper bound on `f t = 1 − cosSign (s + t•u)²` whenever every
    `|t·uᵢ| ≤ 1/2` (beta_last_mile_quadratic_hardness; with f(0) = 0 it gives f′(0) = 0)."""
    sc, uc = _s_u(s, u)
    tc = _t(t, uc)
    d = sc.shape[-1]
    up = _perp(sc, uc)
    tn = tc * torch.linalg.vector_norm(up, dim=-1)        # (t·‖u⊥‖)²: t² alone underflows for tiny t
    return (4.0 * tn * tn / d).to(_out_dtype(s, u))
