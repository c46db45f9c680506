"""QJL (Zandieh, Daliri, Han, AAAI 2025, arXiv 2406.03482): one sign bit per random projection of
the key, and the key's norm — written from the paper (Def. 3.1, Alg. 1, Lemma 3.2/3.5).

For kv head `h` with a sketch `S_h ∈ ℝ^{m×d}`, a key `k` is stored as

    sign(S k) ∈ {±1}^m   (m bits, packed)      and      ‖k‖₂   (float16)

and its inner product with a query `q` (projected by the same `S`, not quantized) is estimated by

    ProdQJL(q, k) = √(π/2)/m · ‖k‖ · ⟪S q, sign(S k)⟫,

the mean of the `m` i.i.d. terms `√(π/2) ‖k‖ ⟪s_i, q⟫ sign⟪s_i, k⟫`. For `s ~ 𝒩(0, I_d)`,
`E[sign⟪s, k⟫ ⟪s, q⟫] = √(2/π) ⟪q, k⟫ / ‖k‖` (registered theorem `qjl_unbiased`), so the estimator
is unbiased, with variance `((π/2) ‖q‖² ‖k‖² − ⟪q, k⟫²) / m`.

The sketch (`qjl_sketch`):

* ``"gaussian"`` — i.i.d. 𝒩(0, 1) entries, the paper's Definition 3.1 (unbiased as above);
* ``"orthogonal"`` — what all the paper's experiments use (§4.1): Gaussian rows orthogonalised in
  blocks of `d` (Haar `d × d` blocks, here exactly Haar via `random_orthogonal`) and scaled by `√d`,
  so each row is uniform on the sphere of radius `√d` and rows are orthogonal within a block.
  Such a row is `√d / ‖g‖` times a Gaussian row `g`, so the estimator's mean is
  `√d / E‖g‖ · ⟪q, k⟫ = √d Γ(d/2) / (√2 Γ((d+1)/2)) · ⟪q, k⟫ ≈ (1 + 1/(4d)) ⟪q, k⟫`
  (`orthogonal_sketch_bias`) — biased by +0.20 % at d = 128 (+0.39 % at d = 64), as in the
  reference experiments (kept for fidelity); its variance is lower than the Gaussian sketch's
  (measured at d = 128: 0.36× at m = d, 0.32× at m = 2d).

Sign convention: this project's `sgn 0 = +1` (`pack_signs`, bit `[x ≥ 0]`); the reference kernel
maps 0 to −1. `S k = 0` happens only for `k = 0` (then ‖k‖ = 0 and the term vanishes) or on a
null event of the sketch, so the estimator is unchanged.

This is plain QJL (Algorithm 1). The reference code's outlier channels (the top 8 of every
32-token group coded by a second sketch, with their indices and norm) are not part of the paper's
algorithm and are not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from impl.cache.codecs.base import (
    Codes,
    CodecError,
    KeyCodec,
    check_finite_after_rounding,
    check_keys,
    check_queries,
    dtype_name,
    float_dtype,
    require_setting,
    require_tensor,
)
from impl.cache.packing import pack_signs, packed_width, unpack_signs
from impl.rotation import random_orthogonal
from impl.validation import check_orthonormal_columns, check_positive_int, check_tensor

SKETCHES = ("orthogonal", "gaussian")
SQRT_HALF_PI = math.sqrt(math.pi / 2)


# ------------------------------------------------------------------------------ the estimator


def stored_norm(x: Tensor, dtype: torch.dtype, what: str) -> Tensor:
    """`‖x‖₂` over the last dimension, rounded to the storage `dtype`; ValueError (naming `what`)
    when it overflows that dtype."""
    n = torch.linalg.vector_norm(x, dim=-1).to(dtype)
    check_finite_after_rounding(n, what, dtype)
    return n


def qjl_signs(x: Tensor, sketch: Tensor) -> Tensor:
    """The packed sign code `sign(S_h x)` (bit `[⟪s_i, x⟫ ≥ 0]`, sgn 0 = +1) of vectors `x`
    (B, H, T, d) under per-head sketches `S` (H, m, d), computed in float64: uint8 (B, H, T, ⌈m/8⌉)."""
    proj = torch.einsum("bhtd,hmd->bhtm", x.double(), sketch.double())
    return pack_signs(proj)


def qjl_inner_product(q: Tensor, signs: Tensor, norm: Tensor, sketch: Tensor) -> Tensor:
    """QJL's estimate of `⟪q, k_t⟫` for queries `q` (B, H, Q, d) against keys stored as packed signs
    `sign(S k_t)` (B, H, T, ⌈m/8⌉) and norms `‖k_t‖` (B, H, T), with per-head sketches `S` (H, m, d):

        √(π/2)/m · ‖k_t‖ · ⟪S q, sign(S k_t)⟫                        (B, H, Q, T)

    Unbiased for a Gaussian sketch (registered theorem `qjl_unbiased`): for `s ~ 𝒩(0, I_d)`,
    `E[sgn⟪s, k⟫ ⟪s, q⟫] = √(2/π) ⟪q, k⟫ / ‖k‖`. The query sketch `S q` is formed once, and the
    sign sum is read from the packed bits (`impl.cache.kernels.sign_scores`). Float32 out (float64 for float64
    queries)."""
    S = check_tensor(sketch, "sketch", min_dim=3)
    if S.dim() != 3:
        raise ValueError(f"sketch must have shape (H, m, d), got {tuple(sketch.shape)}")
    H, m, d = S.shape
    qc = check_queries(q, H, d)
    if signs.dim() != 4 or signs.shape[:2] != qc.shape[:2]:
        raise ValueError(f"signs must have shape (B, H, T, ⌈m/8⌉) = ({qc.shape[0]}, {H}, T, {packed_width(m)}), "
                         f"got {tuple(signs.shape)}")
    n = check_tensor(norm, "norm", min_dim=3, allow_empty_last=True)
    if tuple(n.shape) != tuple(signs.shape[:3]):
        raise ValueError(f"norm must have shape (B, H, T) = {tuple(signs.shape[:3])}, got {tuple(norm.shape)}")
    sq = qc @ S.to(qc.dtype).transpose(-1, -2)                                  # (B, H, Q, m)
    from impl.cache.kernels import sign_scores  # the compiled kernel where one is available

    dots = sign_scores(sq, signs, m)                                             # ⟪S q, sign(S k_t)⟫
    return dots * (SQRT_HALF_PI / m) * n.to(qc.dtype).unsqueeze(-2)


def qjl_reconstruction(signs: Tensor, norm: Tensor, sketch: Tensor) -> Tensor:
    """The vector whose inner product with any `q` is `qjl_inner_product`:
    `√(π/2)/m · ‖k‖ · Sᵀ sign(S k)`, float32 (B, H, T, d)."""
    S = check_tensor(sketch, "sketch", min_dim=3)
    m = S.shape[1]
    sg = unpack_signs(signs, m, torch.float32)                                   # (B, H, T, m)
    back = torch.einsum("bhtm,hmd->bhtd", sg, S.float())
    return back * (SQRT_HALF_PI / m) * norm.float().unsqueeze(-1)


def qjl_sketch(m: int, d: int, generator: torch.Generator, kind: str = "orthogonal") -> Tensor:
    """One `m × d` sketch, float32: i.i.d. 𝒩(0, 1) (``"gaussian"``, Def. 3.1), or ⌈m/d⌉ Haar `d × d`
    blocks stacked, scaled by `√d` and cut to `m` rows (``"orthogonal"``, the paper's experiments)."""
    m = check_positive_int(m, "m")
    d = check_positive_int(d, "d")
    if kind == "gaussian":
        return torch.randn(m, d, generator=generator, dtype=torch.float64).float()
    if kind == "orthogonal":
        blocks = [random_orthogonal(d, generator, dtype=torch.float64) for _ in range(-(-m // d))]
        return (torch.cat(blocks, dim=0)[:m] * math.sqrt(d)).float()
    raise CodecError(f"sketch must be one of {SKETCHES}, got {kind!r}")


def orthogonal_sketch_bias(d: int) -> float:
    """`√d / E‖g‖` for `g ~ 𝒩(0, I_d)` — the factor by which the orthogonal sketch's estimator
    overshoots `⟪q, k⟫` in expectation (see the module docstring)."""
    d = check_positive_int(d, "d")
    return math.sqrt(d) / (math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2)))


# ------------------------------------------------------------------------------ the codec


@dataclass(frozen=True)
class QJLCodec(KeyCodec):
    """QJL keys (module docstring): `sign(S_h k)` packed (m bits) and `‖k‖` in `side_dtype`.

    Tensors: `sketch` (H, m, d), float32. Settings: `sketch_kind` ("orthogonal", default as in the
    paper's experiments, or "gaussian" as in Def. 3.1); `side_dtype` of the norm (float16, as the
    reference). Published (d = 128): m = 256 = 2d, and m = 512 in the first 15 layers. Keys are the
    raw post-RoPE keys; the reference keeps a 128-token full-precision buffer like KIVI's residual
    (`KeyStore(codec, window=0, flush_block=128)`)."""

    kind: ClassVar[str] = "qjl"

    sketch: Tensor
    sketch_kind: str = "orthogonal"
    side_dtype: torch.dtype = torch.float16

    def __post_init__(self) -> None:
        S = check_tensor(self.sketch, "sketch", min_dim=3)
        if S.dim() != 3:
            raise CodecError(f"sketch must have shape (H, m, d), got {tuple(self.sketch.shape)}")
        if self.sketch_kind not in SKETCHES:
            raise CodecError(f"sketch_kind must be one of {SKETCHES}, got {self.sketch_kind!r}")
        if self.sketch_kind == "orthogonal":
            m, d = S.shape[1:]
            for start in range(0, m, d):   # every block of d rows: orthogonal rows of norm √d
                block = self.sketch[:, start:start + d] / math.sqrt(d)
                try:
                    check_orthonormal_columns(block.transpose(-1, -2), "sketch")
                except ValueError as exc:
                    raise CodecError(f"sketch (orthogonal): rows {start}…{start + block.shape[1] - 1} must be "
                                     f"orthogonal with norm √d; {exc}") from exc
        object.__setattr__(self, "side_dtype", float_dtype(self.side_dtype, "side_dtype"))

    @classmethod
    def random(cls, heads: int, dim: int, m: int, seed: int = 0, *, sketch: str = "orthogonal",
               side_dtype: torch.dtype = torch.float16) -> "QJLCodec":
        """A data-free QJL codec: one independent sketch per head (`qjl_sketch`) from `seed`."""
        heads = check_positive_int(heads, "heads")
        dim = check_positive_int(dim, "dim")
        m = check_positive_int(m, "m")
        if sketch not in SKETCHES:
            raise CodecError(f"sketch must be one of {SKETCHES}, got {sketch!r}")
        g = torch.Generator().manual_seed(int(seed))
        S = torch.stack([qjl_sketch(m, dim, g, sketch) for _ in range(heads)])
        return cls(sketch=S, sketch_kind=sketch, side_dtype=side_dtype)

    @property
    def heads(self) -> int:  # type: ignore[override]
        return self.sketch.shape[0]

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.sketch.shape[2]

    @property
    def m(self) -> int:
        return self.sketch.shape[1]

    def to(self, device: torch.device | str) -> "QJLCodec":
        return replace(self, sketch=self.sketch.to(device))

    # -- the code ------------------------------------------------------------------------
    def code_fields(self) -> dict[str, int]:
        return {"signs": 1, "norm": 1}

    def encode(self, keys: Tensor) -> Codes:
        """`sign(S k)` (packed) and `‖k‖` (side dtype) per token; keys (B, H, T, d)."""
        k = check_keys(keys, self.heads, self.dim).double()
        return {"signs": qjl_signs(k, self.sketch), "norm": stored_norm(k, self.side_dtype, "key norm ‖k‖")}

    def decode(self, codes: Codes) -> Tensor:
        """`√(π/2)/m ‖k‖ Sᵀ sign(S k)`: its inner product with q is the estimator."""
        return qjl_reconstruction(codes["signs"], codes["norm"], self.sketch)

    def scores(self, q: Tensor, codes: Codes) -> Tensor:
        """`qjl_inner_product(q, signs, norm, S)`."""
        qf = check_queries(q, self.heads, self.dim)
        return qjl_inner_product(qf, codes["signs"], codes["norm"], self.sketch)

    def token_bits(self) -> float:
        """`8⌈m/8⌉ + s` (sign bits and the norm; `s` = side dtype width, 16)."""
        return float(8 * packed_width(self.m) + torch.finfo(self.side_dtype).bits)

    # -- artifacts -----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"heads": self.heads, "dim": self.dim, "m": self.m, "sketch_kind": self.sketch_kind,
                "side_dtype": dtype_name(self.side_dtype)}

    def parameters(self) -> dict[str, Tensor]:
        return {"sketch": self.sketch}

    @classmethod
    def from_parameters(cls, settings: dict[str, Any], tensors: dict[str, Tensor]) -> "QJLCodec":
        H = require_setting(settings, "heads", int)
        d = require_setting(settings, "dim", int)
        m = require_setting(settings, "m", int)
        try:
            return cls(sketch=require_tensor(tensors, "sketch", (H, m, d)),
                       sketch_kind=require_setting(settings, "sketch_kind", str),
                       side_dtype=require_setting(settings, "side_dtype", str))
        except ValueError as exc:
            raise CodecError(str(exc)) from exc

    def label(self) -> str:
        return f"qjl m={self.m}" + ("" if self.sketch_kind == "orthogonal" else " gaussian")

