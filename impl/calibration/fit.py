"""Fitting betaspec's codec (`impl.cache.codecs.transform.TransformCodec`) to calibration keys.

For each kv head, from calibration keys `k_t` (the keys the cache stores):

* the DC mean `m = (1/n) Σ_t k_t` (or 0 without centring), SPEC §3;
* a rotation `R`: identity, the SRHT `2^{−n/2} H_n D` (SPEC §2), the learned rotation (started
  from the identity or from the SRHT) maximising the mean b-bit cosine `cos(y_t, ℓ[idx_t])` of
  `y_t = R (k_t − m)` — for `b = 1` the L¹-max objective `cosSign` (`objective="l1"`), for
  `b > 1` the b-bit distortion (`objective="distortion"`; `"l1"` trains the sign objective and
  then codes with b bits, to compare the two);
* optionally a per-channel scale `σ` (the rms of each coordinate of `y` over the train keys,
  normalised to geometric mean 1) — the stable per-channel scale KIVI exploits, after the rotation;
* the per-token scale rule: least squares, unbiased, or least squares in the logit error of the
  calibration queries (`query_moment` = E[q qᵀ]);
* the levels: ±1 for `b = 1`; for `b > 1` the Gaussian Lloyd–Max levels, or Lloyd–Max levels
  fitted to the head's normalised train coordinates (`levels="fitted"`, lloyd_max_conditions);
* the rank-r basis `B`: the top-r right singular vectors of the code residuals
  `e_t = y_t − α_t v_t` (svd_topk_maximizes_gammaR) — `fit_residual_basis`, the one place it is fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from impl.cache.codecs.transform import COEF_BITS, MAX_CODE_BITS, SCALE_RULES, TransformCodec, default_levels
from impl.hadamard import srht_matrix
from impl.multilevel import check_bits, lloyd_max_levels, rms_normalised
from impl.residual import rank_r_correction
from impl.rotation import learn_rotation
from impl.validation import check_positive_int, check_tensor

ROTATIONS = ("identity", "srht", "learned", "learned_srht")
LEVEL_SOURCES = ("gaussian", "fitted")
OBJECTIVES = ("l1", "distortion")


@dataclass(frozen=True)
class HeadFit:
    """What fitting one head produced: the training curve of the learned rotation (per-step
    mean cos² of the code on train and, when held-out keys were given, on held-out), empty otherwise."""

    train_curve: list[float]
    heldout_curve: list[float]


def code_residuals(codec: TransformCodec, keys: Tensor) -> Tensor:
    """The residuals `e_t = y_t − α_t v_t` of the code (before any rank-r correction), float64,
    for keys (H, T, d): what the rank-r basis is fitted to and what it corrects (SPEC §5). α is
    rounded to the codec's side dtype, as the cache stores it."""
    y = codec.transform(keys.double().unsqueeze(0))                       # (1, H, T, d)
    _, v = codec.code_vectors(y)
    alpha = codec.token_scale(y, v).to(codec.side_dtype).double()
    return (y - alpha.unsqueeze(-1) * v)[0]


def fit_residual_basis(codec: TransformCodec, keys: Tensor, rank: int) -> Tensor:
    """The rank-r correction basis (H, d, r): per head, the top-r right singular vectors of the code
    residuals on `keys` (H, T, d) (svd_topk_maximizes_gammaR, residual_topk_eckart_young)."""
    r = check_positive_int(rank, "rank", minimum=0)
    if r > codec.dim:
        raise ValueError(f"rank must be an integer in [0, d = {codec.dim}], got {rank!r}")
    if r == 0:
        return torch.zeros(codec.heads, codec.dim, 0)
    e = code_residuals(codec, keys)
    return torch.stack([rank_r_correction(e[h], r).basis for h in range(codec.heads)]).float()


def _channel_scale(y: Tensor) -> Tensor:
    """Per-channel rms of `y` (T, d), normalised to geometric mean 1 (α carries the overall scale)."""
    rms = torch.sqrt((y.double() ** 2).mean(0)).clamp(min=1e-12)
    return (rms / torch.exp(torch.log(rms).mean())).float()



def fit_codec(
    keys: Tensor,
    *,
    rotation: str = "learned",
    center: bool = True,
    bits: int = 1,
    levels: str = "gaussian",
    objective: str | None = None,
    channel_scale: bool = False,
    rank: int = 0,
    coef_bits: int = 16,
    scale_rule: str = "ls",
    steps: int = 200,
    lr: float = 1e-2,
    batch_size: int | None = 4096,
    seed: int = 0,
    heldout: Tensor | None = None,
    query_moment: Tensor | None = None,
) -> tuple[TransformCodec, list[HeadFit]]:
    """Fit a `TransformCodec` on calibration keys of shape (H, T, d), one head at a time (see the
    module docstring for each choice).

    `steps`, `lr`, `batch_size` drive the learned rotation (Adam on the exponential
    parametrisation, `impl.rotation.learn_rotation`); `heldout` keys (H, T', d) are only used to
    record the held-out curve — never to fit; `query_moment` (H, d, d) = E[q qᵀ] of calibration queries,
    for `scale_rule="query"`. Deterministic under `seed`."""
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
    b = check_bits(bits, "bits", maximum=MAX_CODE_BITS)
    if levels not in LEVEL_SOURCES:
        raise ValueError(f"levels must be one of {LEVEL_SOURCES}, got {levels!r}")
    objective = objective if objective is not None else ("l1" if b == 1 else "distortion")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if coef_bits not in COEF_BITS:
        raise ValueError(f"coef_bits must be one of {COEF_BITS}, got {coef_bits!r}")
    if scale_rule not in SCALE_RULES:
        raise ValueError(f"scale_rule must be one of {SCALE_RULES}, got {scale_rule!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    k = check_tensor(keys, "keys", min_dim=3)
    if k.dim() != 3 or k.shape[1] < 1:
        raise ValueError(f"keys must have shape (H, T ≥ 1, d), got {tuple(k.shape)}")
    H, T, d = k.shape
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= d:
        raise ValueError(f"rank must be an integer in [0, d = {d}], got {rank!r}")
    if heldout is not None:
        heldout = check_tensor(heldout, "heldout", min_dim=3)
        if heldout.dim() != 3 or heldout.shape[0] != H or heldout.shape[2] != d:
            raise ValueError(f"heldout must have shape (H={H}, T', d={d}), got {tuple(heldout.shape)}")
    start = default_levels(b, 1)[0]                                   # the table the objective uses
    base, fits = fit_transform(k, rotation=rotation, center=center, objective_levels=None if objective == "l1" else start,
                               steps=steps, lr=lr, batch_size=batch_size, seed=seed, heldout=heldout)
    if (scale_rule == "query") != (query_moment is not None):
        raise ValueError("query_moment (H, d, d) must be given exactly when scale_rule is 'query'")
    codec = code_on_transform(base, k, bits=b, levels=levels, channel_scale=channel_scale, rank=rank,
                              coef_bits=coef_bits, scale_rule=scale_rule, query_moment=query_moment)
    return codec, fits


def fit_transform(keys: Tensor, *, rotation: str, center: bool, objective_levels: Tensor | None = None,
                  steps: int = 200, lr: float = 1e-2, batch_size: int | None = 4096, seed: int = 0,
                  heldout: Tensor | None = None) -> tuple[TransformCodec, list[HeadFit]]:
    """The mean and rotation of every head (see the module docstring), as a 1-bit `TransformCodec`
    without correction; `objective_levels` (2^b,) selects the b-bit objective of the learned
    rotation (None: the L1-max objective). `code_on_transform` puts any code on it."""
    k = check_tensor(keys, "keys", min_dim=3)
    H, T, d = k.shape
    gen = torch.Generator().manual_seed(seed)
    means, rots, fits = [], [], []
    for h in range(H):
        kh = k[h].float()
        m = kh.mean(0) if center else torch.zeros(d)
        train_curve: list[float] = []
        heldout_curve: list[float] = []
        if rotation == "identity":
            R = torch.eye(d)
        elif rotation == "srht":
            R = srht_matrix(d, gen)
        else:
            init = srht_matrix(d, gen) if rotation == "learned_srht" else "identity"
            fit = learn_rotation(kh, steps=steps, lr=lr, center=center, init=init, generator=gen,
                                 batch_size=batch_size, eval_keys=heldout[h].float() if heldout is not None else None,
                                 levels=objective_levels)
            R, m = fit.R.float(), fit.mean.float()
            train_curve = [float(x) for x in fit.curve.train_beta]
            if fit.curve.eval_beta is not None:
                heldout_curve = [float(x) for x in fit.curve.eval_beta]
        means.append(m)
        rots.append(R)
        fits.append(HeadFit(train_curve, heldout_curve))
    codec = TransformCodec(mean=torch.stack(means), rotation=torch.stack(rots), basis=torch.zeros(H, d, 0),
                           levels=default_levels(1, H), channel_scale=torch.ones(H, d), bits=1)
    return codec, fits


def code_on_transform(base: TransformCodec, keys: Tensor, *, bits: int = 1, levels: str = "gaussian",
                      channel_scale: bool = False, rank: int = 0, coef_bits: int = 16,
                      scale_rule: str = "ls", query_moment: Tensor | None = None) -> TransformCodec:
    """The codec with `base`'s mean and rotation and a `bits`-bit code fitted to `keys` (H, T, d):
    the per-channel scale, the levels (Gaussian, or Lloyd–Max fitted to the normalised coordinates)
    and the rank-r basis of the code residuals (see the module docstring); `query_moment` (H, d, d),
    `E[q qᵀ]` of calibration queries, for the "query" scale rule."""
    k = check_tensor(keys, "keys", min_dim=3)
    b = check_bits(bits, "bits", maximum=MAX_CODE_BITS)
    H, _, d = k.shape
    start = default_levels(b, 1)[0]
    y = base.transform(k.double().unsqueeze(0))[0].float()                 # (H, T, d)
    sigmas = torch.stack([_channel_scale(y[h]) for h in range(H)]) if channel_scale else torch.ones(H, d)
    if levels == "fitted" and b > 1:
        lvls = torch.stack([lloyd_max_levels(rms_normalised(y[h].double() / sigmas[h].double()), 2**b).levels.float() for h in range(H)])
    else:
        lvls = start.expand(H, 2**b).clone()
    codec = replace(base, basis=torch.zeros(H, d, 0), levels=lvls, channel_scale=sigmas, bits=b,
                    scale_rule=scale_rule, coef_bits=coef_bits,
                    query_moment=None if query_moment is None else query_moment.float())
    if rank:
        codec = replace(codec, basis=fit_residual_basis(codec, k, rank))
    return codec


def data_free_codecs(rotation: str, layers: int, heads: int, dim: int, seed: int = 0,
                     bits: int = 1) -> list[TransformCodec]:
    """Codecs that need no calibration data: no centring, no correction, Gaussian levels, and the
    identity or a seeded SRHT per head (srht_achieves_isotropic_floor) — the data-independent
    baselines."""
    if rotation not in ("identity", "srht"):
        raise ValueError(f"a data-free codec needs rotation 'identity' or 'srht', got {rotation!r}")
    layers = check_positive_int(layers, "layers")
    heads = check_positive_int(heads, "heads")
    if rotation == "identity":
        return [TransformCodec.identity(heads, dim, bits=bits) for _ in range(layers)]
    gen = torch.Generator().manual_seed(seed)
    return [replace(TransformCodec.identity(heads, dim, bits=bits),
                    rotation=torch.stack([srht_matrix(dim, gen) for _ in range(heads)]))
            for _ in range(layers)]
