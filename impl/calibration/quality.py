"""How well a fitted codec codes a set of keys — the numbers calibration reports.

For keys `k_t` of one head and the codec's `y_t = R (k_t − m)`, code vectors `v_t`, scales `α_t`
and residuals `e_t = y_t − α_t v_t` (`fit.code_residuals`), with two β's kept apart:

* `beta` — the mean per-vector `cos²(y_t, v_t)`, what the code carries (SPEC's `β_v`; for
  `b = 1` it is `betaVec y_t`);
* `beta_energy` — `1 − Σ_t ‖e_t‖² / Σ_t ‖y_t‖²`, the energy-weighted code quality;
* `gamma` — `γ_r = Σ_t ‖B Bᵀ e_t‖² / Σ_t ‖e_t‖²`;
* `beta_eff` — `1 − Σ_t ‖e_t − B Bᵀ e_t‖² / Σ_t ‖y_t‖²`, measured directly (beta_eff_formula says
  it is `1 − (1 − beta_energy)(1 − gamma)`);
* `rho` — `Σ_t ‖y_t‖² / Σ_t ‖k_t‖²`, the share of key energy left after centring, and
  `beta_c = 1 − rho (1 − beta)` (centered_energy_accounting), the key-level β when the mean is
  stored exactly. Softmax ignores the mean, so attention quality follows `beta`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from impl.cache.codecs.transform import TransformCodec
from impl.calibration.fit import code_residuals
from impl.validation import check_tensor


@dataclass(frozen=True)
class CodecQuality:
    """Quality of one head's codec on one key set (see the module docstring)."""

    tokens: int
    beta: float
    beta_energy: float
    gamma: float
    beta_eff: float
    rho: float
    beta_c: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def codec_quality(codec: TransformCodec, keys: Tensor) -> list[CodecQuality]:
    """Per-head quality of `codec` on `keys` of shape (H, T, d) (float64 accumulation)."""
    k = check_tensor(keys, "keys", min_dim=3)
    if k.dim() != 3 or k.shape[0] != codec.heads or k.shape[-1] != codec.dim:
        raise ValueError(f"keys must have shape (H={codec.heads}, T, d={codec.dim}), got {tuple(k.shape)}")
    k64 = k.double()
    y = codec.transform(k64.unsqueeze(0))[0]                                  # (H, T, d)
    _, v = codec.code_vectors(y.unsqueeze(0))
    v = v[0]
    cos2 = (y * v).sum(-1) ** 2 / ((y * y).sum(-1) * (v * v).sum(-1)).clamp(min=1e-300)
    e = code_residuals(codec, k64)
    Bm = codec.basis.double()
    e_perp = e - torch.einsum("htr,hdr->htd", torch.einsum("htd,hdr->htr", e, Bm), Bm)
    out = []
    for h in range(codec.heads):
        Y = float((y[h] ** 2).sum())
        E = float((e[h] ** 2).sum())
        Ep = float((e_perp[h] ** 2).sum())
        K = float((k64[h] ** 2).sum())
        beta = float(torch.where((y[h] ** 2).sum(-1) > 0, cos2[h], torch.zeros_like(cos2[h])).mean())
        rho = Y / K if K > 0 else 0.0
        out.append(CodecQuality(
            tokens=k.shape[1],
            beta=beta,
            beta_energy=1.0 - E / Y if Y > 0 else 0.0,
            gamma=1.0 - Ep / E if E > 0 else 0.0,
            beta_eff=1.0 - Ep / Y if Y > 0 else 0.0,
            rho=rho,
            beta_c=1.0 - rho * (1.0 - beta),
        ))
    return out
