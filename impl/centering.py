"""DC-mean centering of keys and the mean-domination collapse — SPEC §3.

Keys of one head are a tensor of shape (..., n, d): `k_t`, t < n, along dim −2. DC-mean
centering writes `k_t = m + v_t` with `m = (1/n) Σ_t k_t`, so `Σ_t v_t = 0`. The mean costs
nothing at deploy time (attention_score_gauge_invariance (b)); what the 1-bit code carries is
the residual `v_t`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from impl.moments import beta_vec
from impl.sign_quant import opt_scale, residual_energy, sign_vec
from impl.validation import (
    check_orthogonal,
    check_sign_vector,
    check_tensor,
    result_dtype,
)


class Centered(NamedTuple):
    """`mean` m (shape (..., d)) and `residual` v_t = k_t − m (shape (..., n, d))."""

    mean: Tensor
    residual: Tensor


def _keys(keys: Tensor, name: str = "keys") -> Tensor:
    kc = check_tensor(keys, name, min_dim=2)
    if kc.shape[-2] < 1:
        raise ValueError(f"{name} must hold at least one token (shape (..., n, d), n ≥ 1), got {tuple(keys.shape)}")
    return kc


def dc_center(keys: Tensor) -> Centered:
    """DC-mean centering over the token dimension (dim −2): `m = (1/n) Σ_t k_t`,
    `v_t = k_t − m`, so that `Σ_t v_t = 0` (l2Norm_uncentered_gt, batch form)."""
    kc = _keys(keys)
    m = kc.mean(dim=-2)
    v = kc - m.unsqueeze(-2)
    dt = result_dtype(keys.dtype)
    return Centered(mean=m.to(dt), residual=v.to(dt))


class EnergySplit(NamedTuple):
    """`mean_energy = n·sqnorm m`, `residual_energy = Σ_t sqnorm v_t`,
    `total_energy = Σ_t sqnorm k_t` (each of shape keys.shape[:-2])."""

    mean_energy: Tensor
    residual_energy: Tensor
    total_energy: Tensor


def energy_split(keys: Tensor) -> EnergySplit:
    """The batch energy identity of DC centering (l2Norm_uncentered_gt):
    `Σ_t sqnorm k_t = n · sqnorm m + Σ_t sqnorm v_t` for `k_t = m + v_t`, `Σ_t v_t = 0`;
    hence `Σ_t sqnorm v_t < Σ_t sqnorm k_t` when `m ≠ 0`. The three terms are computed
    independently (the identity is not used to derive one from the others)."""
    kc = _keys(keys)
    n = kc.shape[-2]
    m = kc.mean(dim=-2)
    v = kc - m.unsqueeze(-2)
    dt = result_dtype(keys.dtype)
    return EnergySplit(
        mean_energy=(n * (m * m).sum(dim=-1)).to(dt),
        residual_energy=(v * v).sum(dim=(-2, -1)).to(dt),
        total_energy=(kc * kc).sum(dim=(-2, -1)).to(dt),
    )


class MeanDominationCollapse(NamedTuple):
    """The quantities of dc_centering_lifts_rotational_ceiling for the key `k = c•s + v`.

    `code` = signVec k; `scale` = optScale k; `error` = sqnorm (k − quant1 k);
    `lost_energy` = sqnorm v; `centered_error` = sqnorm (v − quant1 v);
    `bound` = (1 − 1/d)·sqnorm v. Under the hypotheses (⟪v, s⟫ = 0, c > 0, |vᵢ| < c):
    code = s, scale = c, error = lost_energy, centered_error ≤ bound < lost_energy (v ≠ 0)."""

    code: Tensor
    scale: Tensor
    error: Tensor
    lost_energy: Tensor
    centered_error: Tensor
    bound: Tensor


def mean_domination_collapse(c: float | Tensor, s: Tensor, v: Tensor) -> MeanDominationCollapse:
    """Mean-domination collapse (dc_centering_lifts_rotational_ceiling, centered_quant_strict_gain).

    For `s ∈ {±1}^d`, `⟪v, s⟫ = 0`, `c > 0`, every `|vᵢ| < c`, the key `k = c•s + v` has
    `signVec k = s`, `optScale k = c` and 1-bit error exactly `sqnorm v` (all of v is lost),
    whereas quantizing the centred residual loses `sqnorm (v − quant1 v) ≤ (1 − 1/d)·sqnorm v`.
    This function evaluates all of these for given c, s, v (batched; c broadcasts over the
    leading dimensions); it does not require the hypotheses — it reports what happens.
    """
    sc = check_tensor(s, "s")
    check_sign_vector(sc, "s")
    vc = check_tensor(v, "v")
    if vc.shape[-1] != sc.shape[-1]:
        raise ValueError(f"v must have the same last dimension as s ({sc.shape[-1]}), got {tuple(v.shape)}")
    cc = c if isinstance(c, Tensor) else torch.tensor(float(c), dtype=vc.dtype, device=vc.device)
    cc = check_tensor(cc, "c", min_dim=0).to(vc.dtype)
    d = vc.shape[-1]
    k = cc.unsqueeze(-1) * sc.to(vc.dtype) + vc
    lost = (vc * vc).sum(dim=-1)
    dt = result_dtype(v.dtype)
    return MeanDominationCollapse(
        code=sign_vec(k).to(dt),
        scale=opt_scale(k).to(dt),
        error=residual_energy(k).to(dt),
        lost_energy=lost.to(dt),
        centered_error=residual_energy(vc).to(dt),
        bound=((1.0 - 1.0 / d) * lost).to(dt),
    )


class CenteredBeta(NamedTuple):
    """`beta_v` (mean per-vector betaVec of the centred, rotated residuals), `beta_c`
    (= 1 − ρ·(1 − β_v), the key-level β with the mean stored exactly) and `rho`
    (= Σ_t sqnorm v_t / Σ_t sqnorm k_t); each of shape keys.shape[:-2]."""

    beta_v: Tensor
    beta_c: Tensor
    rho: Tensor


def centered_effective_beta(keys: Tensor, rotation: Tensor | None = None) -> CenteredBeta:
    """The two β's after centring (SPEC "Which β after centring"; centered_energy_accounting).

    `β_v = (1/n) Σ_t betaVec (R (k_t − m))` — what the 1-bit code carries (attention quality
    follows it, since softmax ignores the mean). `β_c = 1 − ρ·(1 − β_v)` with
    `ρ = Σ_t sqnorm v_t / Σ_t sqnorm k_t` — the key-level effective β when the mean is stored
    exactly (the beta_eff_formula shape with γ = 1 − ρ). By centered_energy_accounting, per
    key `sqnorm (v − quant1 v) / sqnorm (m + v) = (1 − betaVec v)·(sqnorm v / sqnorm (m + v))`,
    and with equal residual norms `1 − β_c` is exactly the batch's relative 1-bit error.
    `rotation` (optional, orthogonal d × d) is applied to the residuals; it changes no norm.
    Total convention: all-zero keys give ρ = 0 (0/0), β_v = 0, β_c = 1.
    """
    kc = _keys(keys)
    m = kc.mean(dim=-2, keepdim=True)
    v = kc - m
    if rotation is not None:
        Rc = check_tensor(rotation, "rotation", min_dim=2)
        if Rc.shape != (kc.shape[-1], kc.shape[-1]):
            raise ValueError(f"rotation must be a ({kc.shape[-1]}, {kc.shape[-1]}) matrix, got {tuple(Rc.shape)}")
        check_orthogonal(Rc, "rotation")
        v = v @ Rc.to(v.dtype).transpose(0, 1)
    beta_v = beta_vec(v).mean(dim=-1)
    ev = (v * v).sum(dim=(-2, -1))
    ek = (kc * kc).sum(dim=(-2, -1))
    pos = ek > 0
    rho = torch.where(pos, ev / torch.where(pos, ek, torch.ones_like(ek)), torch.zeros_like(ek))
    beta_c = 1.0 - rho * (1.0 - beta_v)
    dt = result_dtype(keys.dtype)
    return CenteredBeta(beta_v=beta_v.to(dt), beta_c=beta_c.to(dt), rho=rho.to(dt))
