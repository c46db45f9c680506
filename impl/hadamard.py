"""The Walsh–Hadamard transform and the SRHT — SPEC §2 (hadamard_mul_transpose, srht_isometry,
srht_achieves_isotropic_floor).

Sylvester's construction: `H₀ = [1]`, `H_{n+1} = [[H_n, H_n], [H_n, −H_n]]`, a `2ⁿ × 2ⁿ` matrix
of ±1 with `H_n · H_nᵀ = 2ⁿ · I`; `H_n` is symmetric. The SRHT with a ±1 diagonal `D = diag(s)`
is `x ↦ 2^{−n/2} · H_n D x`, an isometry. Here `n` is always the *exponent* (SPEC's index):
`hadamard_matrix(n)` has size `2ⁿ`, and a vector of length `d = 2ⁿ` is transformed by `H_n`.

How `fwht` is computed. `H_n = H_a ⊗ H_b ⊗ …` (Kronecker factors acting on disjoint groups of
index bits), so the transform of a batch of rows is a product of small dense matmuls, each
contracting one group of bits: O(d·Σ factor sizes) flops instead of O(d²), and one pass over
memory per factor instead of one per butterfly level. For `d ≤ 128` a single GEMM with the
dense `H_n` is fastest; larger `d` uses factors of at most 32. On CPU the rows are processed
in chunks of about 4 MiB so the intermediate products stay in cache (measured best among
0.5–8 MiB chunks on the 2-core test machine) and only the input read and the output write
touch main memory. (`benchmarks/bench_fwht.py` measures the choices.) The
normalisation `2^{−n/2}` is folded into the first factor, so it costs no extra pass.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from impl.validation import (
    check_positive_int,
    check_power_of_two,
    check_sign_vector,
    check_tensor,
    result_dtype,
)

_DENSE_MAX_BITS = 7  # d ≤ 128: one GEMM with the dense H_n
_FACTOR_MAX_BITS = 5  # larger d: Kronecker factors of size ≤ 32
_CHUNK_ELEMS = 1 << 20  # elements per CPU chunk: 4 MiB of float32, L3-resident with its intermediate


def hadamard_matrix(n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Sylvester's Hadamard matrix `H_n` of size `2ⁿ × 2ⁿ` (hadamard_mul_transpose):
    `H₀ = [1]`, `H_{n+1} = [[H_n, H_n], [H_n, −H_n]]`, so `H_n · H_nᵀ = 2ⁿ · I`.

    `n` is the exponent, as in SPEC (not the size). Entries are exactly ±1.
    """
    n = check_positive_int(n, "n", minimum=0)
    if n > 15:
        raise ValueError(f"n must be ≤ 15 (a dense 2ⁿ × 2ⁿ matrix); got {n}; use fwht for larger sizes")
    h = torch.ones(1, 1, dtype=torch.float64)
    h1 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    for _ in range(n):
        h = torch.kron(h1, h)  # [[H, H], [H, −H]]
    return h.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=64)
def _block(bits: int, scale: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Cached `scale · H_bits` used as a matmul factor (never handed out to callers)."""
    return hadamard_matrix(bits, dtype=torch.float64).mul_(scale).to(dtype=dtype, device=device)


def _factor_bits(m: int) -> list[int]:
    """Split m index bits into as few groups of ≤ _FACTOR_MAX_BITS as possible, balanced."""
    k = -(-m // _FACTOR_MAX_BITS)
    return [m // k + (1 if i < m % k else 0) for i in range(k)]


def _apply_factors(x: Tensor, bits: list[int], blocks: list[Tensor], out: Tensor | None = None) -> Tensor:
    """Apply `H_{bits[-1]} ⊗ … ⊗ H_{bits[0]}` to the rows of contiguous 2-D `x`.

    Factor j contracts index bits [Σ_{i<j} bits_i, Σ_{i≤j} bits_i) (lowest bits first): after a
    view (…, f, inner) it is a matmul from the left by the f × f block."""
    b0 = 1 << bits[0]
    last = len(bits) == 1
    if last and out is not None:
        torch.mm(x.view(-1, b0), blocks[0], out=out.view(-1, b0))
        return out
    y = x.view(-1, b0) @ blocks[0]
    inner = b0
    for j in range(1, len(bits)):
        f = 1 << bits[j]
        if j == len(bits) - 1 and out is not None:
            torch.matmul(blocks[j], y.view(-1, f, inner), out=out.view(-1, f, inner))
            return out
        y = torch.matmul(blocks[j], y.view(-1, f, inner))
        inner *= f
    return y.reshape(x.shape)


def _fwht_rows(y: Tensor, m: int, scale: float) -> Tensor:
    """Unnormalised-times-`scale` transform `scale · H_m` of the rows of contiguous 2-D `y`."""
    n_rows, d = y.shape
    if m <= _DENSE_MAX_BITS:
        return y @ _block(m, scale, y.dtype, y.device)
    bits = _factor_bits(m)
    blocks = [_block(b, scale if j == 0 else 1.0, y.dtype, y.device) for j, b in enumerate(bits)]
    needs_grad = torch.is_grad_enabled() and y.requires_grad
    if y.device.type != "cpu" or needs_grad or n_rows * d <= _CHUNK_ELEMS:
        return _apply_factors(y, bits, blocks)
    out = torch.empty_like(y)
    rows = max(1, _CHUNK_ELEMS // d)
    for i in range(0, n_rows, rows):
        _apply_factors(y[i : i + rows], bits, blocks, out=out[i : i + rows])
    return out


def fwht(x: Tensor, normalize: bool = True, pad: bool = False) -> Tensor:
    """Fast Walsh–Hadamard transform along the last dimension (hadamard_mul_transpose,
    srht_isometry): returns `H_n x` for each vector `x` of length `d = 2ⁿ`, times `2^{−n/2}`
    when `normalize` (then the map is orthogonal and its own inverse).

    O(d log d)-type cost (products of ≤ 32 × 32 Hadamard blocks), any leading shape. A length
    that is not a power of two raises ValueError unless `pad=True`, which zero-pads to the next
    power of two (the result then has that length). Half precision is computed in float32.
    """
    xc = check_tensor(x, "x")
    d = xc.shape[-1]
    if d & (d - 1):
        if not pad:
            check_power_of_two(d, "x.shape[-1]")
        d2 = 1 << (d - 1).bit_length()
        xc = torch.nn.functional.pad(xc, (0, d2 - d))
        d = d2
    m = d.bit_length() - 1
    scale = 2.0 ** (-m / 2) if normalize else 1.0
    lead = xc.shape[:-1]
    y = _fwht_rows(xc.reshape(-1, d).contiguous(), m, scale)
    return y.reshape(*lead, d).to(result_dtype(x.dtype))


def _check_signs(signs: Tensor, d: int, dtype: torch.dtype) -> Tensor:
    if not isinstance(signs, Tensor) or signs.dim() < 1:
        raise ValueError("signs must be a tensor of ±1 with last dimension d")
    if signs.shape[-1] != d:
        raise ValueError(f"signs must have last dimension d = {d}, got shape {tuple(signs.shape)}")
    check_sign_vector(signs, "signs")
    return signs.to(dtype)


def srht(x: Tensor, signs: Tensor) -> Tensor:
    """The subsampled-randomised-Hadamard rotation `x ↦ 2^{−n/2} · H_n (s ⊙ x)` with `D = diag(s)`,
    `s ∈ {±1}^d` (srht_isometry, srht_achieves_isotropic_floor): orthogonal, so
    `sqnorm (srht x) = sqnorm x`; it maps iid Gaussian keys to iid Gaussian keys, whose
    cosSign tends to √(2/π).

    `x` has shape (..., d), d = 2ⁿ; `signs` has shape (d,) (one D for all rows) or broadcasts
    against `x`. Half precision is computed in float32.
    """
    xc = check_tensor(x, "x")
    d = xc.shape[-1]
    m = check_power_of_two(d, "x.shape[-1]")
    s = _check_signs(signs, d, xc.dtype)
    if s.dim() == 1 and m <= _DENSE_MAX_BITS:
        # Row form: (H D x)ᵀ = xᵀ D H, so D folds into the rows of the dense matrix — one GEMM.
        mat = s[:, None] * _block(m, 2.0 ** (-m / 2), xc.dtype, xc.device)
        return (xc @ mat).to(result_dtype(x.dtype))
    return fwht(xc * s, normalize=True).to(result_dtype(x.dtype))


def srht_inverse(y: Tensor, signs: Tensor) -> Tensor:
    """Inverse of `srht`: `y ↦ D · 2^{−n/2} H_n y` (since `2^{−n/2} H_n` is symmetric and
    orthogonal and `D² = I`) — srht_isometry."""
    yc = check_tensor(y, "y")
    d = yc.shape[-1]
    m = check_power_of_two(d, "y.shape[-1]")
    s = _check_signs(signs, d, yc.dtype)
    if s.dim() == 1 and m <= _DENSE_MAX_BITS:
        mat = _block(m, 2.0 ** (-m / 2), yc.dtype, yc.device) * s[None, :]
        return (yc @ mat).to(result_dtype(y.dtype))
    return (fwht(yc, normalize=True) * s).to(result_dtype(y.dtype))


def random_signs(
    d: int,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """A uniformly random sign vector `s ∈ {±1}^d` (the diagonal D of the SRHT), drawn from
    `generator` only."""
    d = check_positive_int(d, "d")
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator must be a torch.Generator (randomness is explicit)")
    bits = torch.randint(0, 2, (d,), generator=generator, device=generator.device)
    s = (2 * bits - 1).to(dtype)
    return s.to(device) if device is not None else s


def srht_matrix(d: int, generator: torch.Generator, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> Tensor:
    """The SRHT as a matrix, `R = 2^{−n/2} H_n D` with `D = diag(s)` for random signs `s` drawn
    from `generator` (srht_isometry: R is orthogonal, so `R k` is an isometry). `d = 2ⁿ` must be
    a power of two. Built in float64, then cast."""
    d = check_positive_int(d, "d")
    if d & (d - 1):
        raise ValueError(f"d must be a power of two for the SRHT, got {d}")
    n = d.bit_length() - 1
    s = random_signs(d, generator, dtype=torch.float64)
    R = hadamard_matrix(n, dtype=torch.float64) * s[None, :] * 2.0 ** (-n / 2)
    return R.to(dtype=dtype, device=device)
