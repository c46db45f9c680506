"""Shared Hypothesis strategies and floating-point tolerances for the impl property tests.

Numeric content is drawn from a seed (fast, reproducible: the seed is part of the example) and
then *shaped* by Hypothesis-chosen structure — dimension, batch shape, magnitude per row across
many orders, exact zeros, ties, sign-lattice points, near-lattice points, one-hot and all-zero
vectors — so the structural choices shrink while large tensors stay cheap to generate.
Small vectors can also be drawn element by element (``explicit``), which reaches edge values
(−0.0, subnormals, huge/tiny magnitudes) that a seeded generator would not.

Dimensions come from ``dims``: small ones (where shrinking is informative and every edge case
is cheap) and, in the ``dev`` profile, also the head dims of real models, 64, 128 and 256
(``HEAD_DIMS``), so tolerances scaled by d are exercised at the sizes that matter. The ``ci``
profile keeps small dims only, so the suite stays fast; the profile is chosen here, by the same
rule conftest.py uses (``PROFILE``).
"""

from __future__ import annotations

import math
import os

import torch
from hypothesis import settings
from hypothesis import strategies as st

FLOATS = (torch.float32, torch.float64)

# The active Hypothesis profile (conftest.py loads it): "ci" when the environment sets CI.
PROFILE = "ci" if os.environ.get("CI") else "dev"

# Head dims of real models (Llama, Qwen, Mistral: 128; Phi, small models: 64; Gemma: 256).
HEAD_DIMS = (64, 128, 256)

# Largest |log10| of a row magnitude per dtype: squares and sums of ≤ 4096 squares must stay
# normal numbers (float32: 1e±15 → squares 1e±30, inside [1.2e-38, 3.4e38]).
MAG10 = {torch.float32: 15, torch.float64: 120}

KINDS = ("gaussian", "heavy", "lattice", "near_lattice", "sparse", "ties", "onehot", "mean_dominated")


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of `dtype` (unit roundoff u = eps/2)."""
    return torch.finfo(dtype).eps


def scaled_examples(divisor: int, minimum: int = 5) -> int:
    """max_examples for an expensive property: the active profile's count / divisor."""
    return max(minimum, settings.default.max_examples // divisor)


def dims(min_d: int = 1, max_d: int = 48, *, head_dims: bool | None = None) -> st.SearchStrategy[int]:
    """A dimension d: an integer in [min_d, max_d], or — with ``head_dims`` (default: only in the
    ``dev`` profile), one draw in four — one of the real head dims ``HEAD_DIMS`` that are ≥ min_d,
    even above max_d. Shrinking moves towards the small range, so failures shrink towards small d."""
    small = st.integers(min_d, max_d)
    if head_dims is None:
        head_dims = PROFILE == "dev"
    big = [h for h in HEAD_DIMS if h >= min_d]
    if not head_dims or not big:
        return small
    heads = st.sampled_from(big)
    return st.integers(0, 3).flatmap(lambda i: heads if i == 3 else small)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _shape_rows(x: torch.Tensor, kind: str, g: torch.Generator, draw) -> torch.Tensor:
    rows, d = x.shape
    if kind == "gaussian":
        return x
    if kind == "heavy":  # log-normal magnitudes: coordinates spread over many orders
        sigma = draw(st.floats(0.5, 6.0))
        return x * torch.exp(sigma * torch.randn(rows, d, generator=g, dtype=torch.float64))
    if kind == "lattice":
        return torch.where(x >= 0, 1.0, -1.0).to(torch.float64)
    if kind == "near_lattice":
        delta = 10.0 ** draw(st.floats(-12, -1))
        s = torch.where(x >= 0, 1.0, -1.0).to(torch.float64)
        return s * (1.0 + delta * torch.rand(rows, d, generator=g, dtype=torch.float64))
    if kind == "sparse":
        keep = torch.rand(rows, d, generator=g, dtype=torch.float64) < draw(st.floats(0.05, 0.6))
        return torch.where(keep, x, torch.zeros_like(x))
    if kind == "ties":
        levels = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
        idx = torch.randint(0, 5, (rows, d), generator=g)
        return levels[idx]
    if kind == "onehot":
        out = torch.zeros(rows, d, dtype=torch.float64)
        j = torch.randint(0, d, (rows,), generator=g)
        out[torch.arange(rows), j] = x[torch.arange(rows), j] + 0.5
        return out
    if kind == "mean_dominated":  # a shared large mean plus small residuals (real keys)
        mean = 10.0 ** draw(st.floats(0.5, 4)) * torch.randn(1, d, generator=g, dtype=torch.float64)
        return mean + x
    raise AssertionError(kind)


@st.composite
def real_tensors(
    draw,
    *,
    dtype: torch.dtype | None = None,
    min_d: int = 1,
    max_d: int = 48,
    d: int | None = None,
    batch_shapes: st.SearchStrategy | None = None,
    kinds: tuple[str, ...] = KINDS,
    allow_zero_rows: bool = True,
    row_scale: bool = True,
    head_dims: bool | None = None,
) -> torch.Tensor:
    """A float tensor of shape (*batch, d): structure from Hypothesis, numbers from a seed.

    d is ``d`` when given, else drawn from ``dims(min_d, max_d, head_dims=head_dims)``: in the
    ``dev`` profile that includes the real head dims 64, 128, 256."""
    dtype = draw(st.sampled_from(FLOATS)) if dtype is None else dtype
    d = draw(dims(min_d, max_d, head_dims=head_dims)) if d is None else d
    batch = draw(batch_shapes if batch_shapes is not None else st.sampled_from([(), (1,), (3,), (2, 3)]))
    rows = math.prod(batch) if batch else 1
    g = _gen(draw(st.integers(0, 2**31 - 1)))
    if d <= 6 and draw(st.booleans()) and draw(st.booleans()):
        # explicit small vectors: every element from Hypothesis (edge values)
        width = 32 if dtype == torch.float32 else 64
        lim = 2.0 ** int(MAG10[dtype] * math.log2(10))  # a power of two: exact in any width
        elem = st.one_of(
            st.just(0.0),
            st.just(-0.0),
            st.floats(-lim, lim, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=width).filter(
                lambda v: v == 0 or abs(v) >= 1.0 / lim
            ),
        )
        vals = draw(st.lists(st.lists(elem, min_size=d, max_size=d), min_size=rows, max_size=rows))
        x = torch.tensor(vals, dtype=torch.float64)
    else:
        kind = draw(st.sampled_from(kinds))
        x = torch.randn(rows, d, generator=g, dtype=torch.float64)
        x = _shape_rows(x, kind, g, draw)
        if row_scale:
            lo = -MAG10[dtype] // 2
            e10 = torch.empty(rows, 1, dtype=torch.float64).uniform_(lo, -lo, generator=g)
            if draw(st.booleans()):
                e10 = e10.mean().expand(rows, 1)  # same order for the whole batch
            x = x * 10.0**e10
        if draw(st.booleans()):  # sprinkle exact zeros
            x = torch.where(torch.rand(rows, d, generator=g) < 0.15, torch.zeros_like(x), x)
    if allow_zero_rows and rows > 1 and draw(st.integers(0, 9)) == 0:
        x[0] = 0.0
    if not allow_zero_rows:
        zero = (x == 0).all(dim=-1)
        x[zero, 0] = 1.0
    x = x.to(dtype)
    if not allow_zero_rows:  # a row can underflow to zero after the cast
        zero = (x == 0).all(dim=-1)
        x[zero, 0] = 1.0
    return x.reshape(*batch, d)


@st.composite
def sign_vectors(draw, d: int, dtype: torch.dtype = torch.float64, rows: int | None = None) -> torch.Tensor:
    """A ±1 tensor of shape (d,) or (rows, d)."""
    g = _gen(draw(st.integers(0, 2**31 - 1)))
    shape = (d,) if rows is None else (rows, d)
    return (2 * torch.randint(0, 2, shape, generator=g) - 1).to(dtype)


def orthogonal_matrix(d: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """An orthogonal d × d matrix from numpy-free float64 QR (independent of impl.rotation)."""
    g = _gen(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))[None, :]).to(dtype)


def orthonormal_frame(d: int, r: int, seed: int) -> torch.Tensor:
    """A d × r float64 matrix with orthonormal columns (reduced QR of a Gaussian matrix)."""
    g = _gen(seed)
    if r == 0:
        return torch.zeros(d, 0, dtype=torch.float64)
    return torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64)).Q


seeds = st.integers(0, 2**31 - 1)
