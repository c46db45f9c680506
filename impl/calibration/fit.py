"""Fitting the per-layer key codec on calibration keys, and measuring its quality.

For each kv head, from calibration keys `k_t` (the keys the cache stores):

* the DC mean `m = (1/n) Σ_t k_t` (or 0 without centring), SPEC §3;
* a rotation `R`: identity, the SRHT `2^{−n/2} H_n D` (SPEC §2), the learned L¹-max rotation
  maximising the mean `cosSign (R (k_t − m))` (`impl.rotation.learn_rotation`), or the learned
  one started from the SRHT;
* the rank-r basis `B`: the top-r right singular vectors of the 1-bit residual rows
  `e_t = y_t − α_t s_t`, `y_t = R (k_t − m)` (svd_topk_maximizes_gammaR).

Quality is reported on any key set (train, held-out, out-of-domain) with two β's kept apart:

* `beta` — the mean per-vector `betaVec y_t` (what the 1-bit code carries; SPEC's `β_v`);
* `beta_energy` — `1 − Σ_t ‖e_t‖² / Σ_t ‖y_t‖²`, the energy-weighted 1-bit quality;
* `gamma` — `γ_r = Σ_t ‖B Bᵀ e_t‖² / Σ_t ‖e_t‖²`;
* `beta_eff` — `1 − Σ_t ‖e_t − B Bᵀ e_t‖² / Σ_t ‖y_t‖²`, measured directly; it equals
  `1 − (1 − beta_energy)(1 − gamma)` exactly (beta_eff_formula, summed over tokens);
* `rho` — `Σ_t ‖y_t‖² / Σ_t ‖k_t‖²`, the share of key energy left after centring, and
  `beta_c = 1 − rho (1 − beta)` (centered_energy_accounting), the key-level β when the mean is
  stored exactly. Softmax ignores the mean, so attention quality follows `beta`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from impl.cache.store import KeyCodec
from impl.hadamard import hadamard_matrix, random_signs
from impl.moments import beta_vec
from impl.residual import rank_r_correction
from impl.rotation import learn_rotation
from impl.validation import check_tensor

ROTATIONS = ("identity", "srht", "learned", "learned_srht")


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


def srht_rotation(d: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
    """The SRHT as a matrix, `2^{−n/2} H_n D` (srht_isometry); `d` must be a power of two."""
    n = int(math.log2(d))
    if 2**n != d:
        raise ValueError(f"the SRHT needs d to be a power of two, got d = {d}")
    s = random_signs(d, generator, dtype=torch.float64)
    return (hadamard_matrix(n, dtype=torch.float64) * s[None, :] * 2.0 ** (-n / 2)).to(dtype)


def codec_quality(codec: KeyCodec, keys: Tensor) -> list[CodecQuality]:
    """Per-head quality of `codec` on `keys` of shape (H, T, d) (float64 accumulation)."""
    k = check_tensor(keys, "keys", min_dim=3)
    if k.shape[0] != codec.heads or k.shape[-1] != codec.dim:
        raise ValueError(f"keys must have shape (H={codec.heads}, T, d={codec.dim}), got {tuple(k.shape)}")
    k64 = k.double()
    y = codec.transform(k64.unsqueeze(0))[0]                                  # (H, T, d), float64
    d = codec.dim
    alpha = y.abs().sum(-1, keepdim=True) / d
    e = y - alpha * torch.where(y >= 0, 1.0, -1.0).double()
    Bm = codec.basis.double()
    e_perp = e - torch.einsum("htr,hdr->htd", torch.einsum("htd,hdr->htr", e, Bm), Bm)
    out = []
    for h in range(codec.heads):
        Y = float((y[h] ** 2).sum())
        E = float((e[h] ** 2).sum())
        Ep = float((e_perp[h] ** 2).sum())
        K = float((k64[h] ** 2).sum())
        beta = float(beta_vec(y[h]).mean())
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


@dataclass(frozen=True)
class HeadFit:
    """What fitting one head produced: the training curve of the learned rotation (per-step
    mean β on train and, when held-out keys were given, on held-out), empty otherwise."""

    train_curve: list[float]
    heldout_curve: list[float]


def fit_codec(
    keys: Tensor,
    *,
    rotation: str = "learned",
    center: bool = True,
    rank: int = 0,
    steps: int = 200,
    lr: float = 1e-2,
    batch_size: int | None = 4096,
    seed: int = 0,
    heldout: Tensor | None = None,
) -> tuple[KeyCodec, list[HeadFit]]:
    """Fit a `KeyCodec` on calibration keys of shape (H, T, d), one head at a time.

    `rotation` ∈ ROTATIONS; `center` subtracts the per-head mean; `rank` is r (0 … d);
    `steps`, `lr`, `batch_size` drive the learned rotation (Adam on the exponential
    parametrisation, see `impl.rotation.learn_rotation`); `heldout` keys (H, T', d) are only
    used to record the held-out β curve — never to fit. Deterministic under `seed`.
    """
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
    k = check_tensor(keys, "keys", min_dim=3)
    if k.dim() != 3 or k.shape[1] < 1:
        raise ValueError(f"keys must have shape (H, T ≥ 1, d), got {tuple(k.shape)}")
    H, T, d = k.shape
    if not isinstance(rank, int) or not 0 <= rank <= d:
        raise ValueError(f"rank must be an integer in [0, d = {d}], got {rank!r}")
    if heldout is not None and (heldout.dim() != 3 or heldout.shape[0] != H or heldout.shape[2] != d):
        raise ValueError(f"heldout must have shape (H={H}, T', d={d}), got {tuple(heldout.shape)}")
    gen = torch.Generator().manual_seed(seed)
    means, rots, bases, fits = [], [], [], []
    for h in range(H):
        kh = k[h].float()
        m = kh.mean(0) if center else torch.zeros(d)
        train_curve: list[float] = []
        heldout_curve: list[float] = []
        if rotation == "identity":
            R = torch.eye(d)
        elif rotation == "srht":
            R = srht_rotation(d, gen)
        else:
            init = srht_rotation(d, gen) if rotation == "learned_srht" else "identity"
            fit = learn_rotation(kh, steps=steps, lr=lr, center=center, init=init, generator=gen,
                                 batch_size=batch_size, eval_keys=heldout[h].float() if heldout is not None else None)
            R, m = fit.R.float(), fit.mean.float()
            train_curve = [float(x) for x in fit.curve.train_beta]
            if fit.curve.eval_beta is not None:
                heldout_curve = [float(x) for x in fit.curve.eval_beta]
        y = (kh - m) @ R.T
        if rank:
            alpha = y.abs().sum(-1, keepdim=True) / d
            resid = y - alpha * torch.where(y >= 0, 1.0, -1.0)
            Bm = rank_r_correction(resid.double(), rank).basis.float()
        else:
            Bm = torch.zeros(d, 0)
        means.append(m)
        rots.append(R)
        bases.append(Bm)
        fits.append(HeadFit(train_curve, heldout_curve))
    codec = KeyCodec(mean=torch.stack(means), rotation=torch.stack(rots), basis=torch.stack(bases))
    return codec, fits


def data_free_codecs(rotation: str, layers: int, heads: int, dim: int, seed: int = 0) -> list[KeyCodec]:
    """Codecs that need no calibration data: no centring, no correction, and the identity or a
    seeded SRHT per head (srht_achieves_isotropic_floor) — the data-independent baselines."""
    if rotation not in ("identity", "srht"):
        raise ValueError(f"a data-free codec needs rotation 'identity' or 'srht', got {rotation!r}")
    if rotation == "identity":
        return [KeyCodec.identity(heads, dim) for _ in range(layers)]
    gen = torch.Generator().manual_seed(seed)
    return [
        KeyCodec(mean=torch.zeros(heads, dim), rotation=torch.stack([srht_rotation(dim, gen) for _ in range(heads)]),
                 basis=torch.zeros(heads, dim, 0))
        for _ in range(layers)
    ]
