"""Input checks shared by the ``impl`` modules.

Every public ``impl`` function validates its tensors here, so the error messages are uniform:
a ``ValueError`` that names the argument and says what was expected (DESIGN.md, "impl
conventions"). Nothing in this module computes any of SPEC's quantities.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

_HALF = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a computation on `dtype` runs in: half precision is widened to float32,
    non-floating types go to the default float dtype, float32/float64 are kept."""
    if dtype in _HALF:
        return torch.float32
    if not dtype.is_floating_point:
        return torch.get_default_dtype()
    return dtype


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a returned tensor gets for an input of `dtype` (half stays half)."""
    if dtype in _HALF or dtype.is_floating_point:
        return dtype
    return torch.get_default_dtype()


def check_tensor(
    x: object, name: str, *, min_dim: int = 1, finite: bool = True, allow_empty_last: bool = False
) -> Tensor:
    """Check that `x` is a real tensor with at least `min_dim` dimensions, a non-empty last
    dimension (unless `allow_empty_last`) and, by default, only finite entries; return it
    converted to its compute dtype (see `compute_dtype`)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        raise ValueError(f"{name} must be real, got complex dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s) (last = d), got shape {tuple(x.shape)}")
    if min_dim >= 1 and x.shape[-1] == 0 and not allow_empty_last:
        raise ValueError(f"{name} must have a non-empty last dimension (d ≥ 1), got shape {tuple(x.shape)}")
    xc = x.to(compute_dtype(x.dtype))
    if finite:
        check_finite(xc, name)
    return xc


def check_finite(x: Tensor, name: str) -> None:
    """Raise when `x` holds NaN or ±Inf.

    Fast path: one reduction (`sum`); only when the sum is not finite (NaN/Inf present, or an
    overflow of the sum itself) is the exact elementwise test run.
    """
    if x.numel() == 0:
        return
    if torch.isfinite(x.sum()).item():
        return
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite (found NaN or Inf)")


def check_no_nan(x: Tensor, name: str) -> None:
    """Raise when `x` holds NaN or +Inf (−Inf is allowed: it is a masked logit)."""
    if bool(torch.isnan(x).any()) or bool(torch.isposinf(x).any()):
        raise ValueError(f"{name} must not contain NaN or +Inf (−Inf marks a masked entry)")


def check_last_dim(x: Tensor, d: int, name: str) -> None:
    """Raise unless the last dimension of `x` is `d`."""
    if x.shape[-1] != d:
        raise ValueError(f"{name} must have last dimension d = {d}, got shape {tuple(x.shape)}")


def check_square(x: Tensor, name: str) -> int:
    """Raise unless `x` is a (batch of) square matrix; return its order."""
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name} must be a square matrix (..., d, d), got shape {tuple(x.shape)}")
    return x.shape[-1]


def check_sign_vector(s: Tensor, name: str) -> None:
    """Raise unless every entry of `s` is exactly +1 or −1 (a point of {±1}^d)."""
    if not bool(((s == 1) | (s == -1)).all()):
        raise ValueError(f"{name} must have entries in {{+1, -1}} (a sign vector)")


def check_positive_int(n: object, name: str, *, minimum: int = 1) -> int:
    """Raise unless `n` is an integer ≥ `minimum`; return it as ``int``."""
    if isinstance(n, bool):
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {n!r}")
    try:
        value = operator.index(n)
    except TypeError:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {n!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value}")
    return value


def orthogonality_atol(d: int, dtype: torch.dtype) -> float:
    """Default tolerance on ‖RᵀR − I‖_F for an orthogonal matrix stored in `dtype`.

    Each entry of RᵀR is a length-d inner product of unit columns; its rounding error is a
    random walk of d roundings of terms of size ≤ 1, typically √d·eps (diagonal) and ≲ eps
    (off-diagonal), so the Frobenius norm over d² entries is ≈ √2·d·eps; storing R itself
    in `dtype` adds ≤ √d·eps. 16·d·eps leaves a factor ≥ 8 over that estimate while still
    rejecting any matrix that is not orthogonal to working precision.
    """
    eps = torch.finfo(compute_dtype(dtype)).eps
    return 16.0 * max(d, 1) * eps


def _gram_defect(M: Tensor, name: str) -> float:
    """`max ‖MᵀM − I_r‖_F` over the batch, in float64, for M of shape (..., d, r); 0 when r = 0
    or the batch is empty. Raises when M holds NaN or Inf."""
    M64 = M.detach().to(torch.float64)
    if not bool(torch.isfinite(M64).all()):
        raise ValueError(f"{name} must be finite (found NaN or Inf)")
    r = M.shape[-1]
    if r == 0 or M64.numel() == 0:
        return 0.0
    eye = torch.eye(r, dtype=torch.float64, device=M.device)
    return float(torch.linalg.matrix_norm(M64.transpose(-1, -2) @ M64 - eye).max())


def check_orthogonal(R: Tensor, name: str, atol: float | None = None) -> int:
    """Raise unless `R` is a (batch of) orthogonal matrix: ‖RᵀR − I‖_F ≤ atol in float64.

    Default `atol` is `orthogonality_atol(d, R.dtype)`. Returns the order d.
    """
    d = check_square(R, name)
    if atol is None:
        atol = orthogonality_atol(d, R.dtype)
    worst = _gram_defect(R, name)
    if worst > atol:
        raise ValueError(f"{name} must be orthogonal (‖{name}ᵀ{name} − I‖_F ≤ {atol:.3g}), got defect {worst:.3g}")
    return d


def check_orthonormal_columns(B: Tensor, name: str, atol: float | None = None) -> int:
    """Raise unless the columns of `B` (shape (..., d, r)) are orthonormal: ‖BᵀB − I_r‖_F ≤ atol
    in float64 (default `orthogonality_atol(d, B.dtype)`). Returns r."""
    if B.dim() < 2:
        raise ValueError(f"{name} must be a (..., d, r) matrix with orthonormal columns, got shape {tuple(B.shape)}")
    d, r = B.shape[-2], B.shape[-1]
    if r > d:
        raise ValueError(f"{name} must have at most d = {d} columns to be orthonormal, got {r}")
    if atol is None:
        atol = orthogonality_atol(d, B.dtype)
    worst = _gram_defect(B, name)
    if worst > atol:
        raise ValueError(f"{name} must have orthonormal columns (‖{name}ᵀ{name} − I‖_F ≤ {atol:.3g}), got {worst:.3g}")
    return r


def check_power_of_two(d: int, name: str) -> int:
    """Raise unless `d` is a power of two; return log2 d."""
    if d < 1 or d & (d - 1):
        raise ValueError(f"{name} must be a power of two (got {d}); pass pad=True to zero-pad")
    return int(math.log2(d))
