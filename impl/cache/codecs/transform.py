"""betaspec's own code: `b` bits per coordinate on a fitted transform of the keys — SPEC §3, §5, §7.

For kv head `h` of a layer, a key `k ∈ ℝ^d` is coded as

    y = R_h (k − m_h)                     DC mean m_h and rotation R_h (orthogonal), fitted   (SPEC §3)
    u = y ⊘ σ_h,  x = u / (‖u‖/√d)        optional per-channel scale σ_h; unit-rms normalisation
    idxᵢ = nearest level of xᵢ in ℓ_h     2^b levels (Lloyd–Max: Gaussian, or fitted)         (SPEC §7)
    v = σ_h ⊙ ℓ_h[idx]                    the code vector
    α = ⟪y, v⟫ / sqnorm v                 least-squares scale (ls_scale_minimizes), or the
                                          unbiased `sqnorm y / ⟪y, v⟫` (mse_code_logit_shrinkage), or
                                          the query-weighted `⟪y, W v⟫ / ⟪v, W v⟫` with `W = R E[qqᵀ] Rᵀ`
                                          from calibration queries (least squares in logit error)
    c = B_hᵀ (y − α v)                    rank-r correction of the residual (SPEC §5)

and stored as the indices packed densely (`b` bits each), `α` in float16, and `c` in float16 or as
int8/int4 with one float16 scale per token. With `b = 1` and the levels ±1 this is SPEC §1's sign
code in the rotated frame: `idx = [y ≥ 0]`, `α = l1 y / d` (optScale). The dequantised key is
`k̂ = R_hᵀ (α v + B_h c) + m_h`; its logit against a query is

    ⟪q, k̂⟫ = α ⟪R q ⊙ σ, ℓ[idx]⟫ + ⟪B_hᵀ R q, c⟫ + ⟪q, m_h⟫          (fused_logit_identity)

computed from the packed indices (`packed_level_scores`, or the compiled lookup-table kernel). The
last term is the same for every token (the offset softmax ignores).
"""

from __future__ import annotations

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
from impl.cache.packing import pack_codes, packed_code_width, unpack_codes
from impl.multilevel import (
    check_bits,
    check_levels,
    ls_scale,
    nearest_level,
    rms_normalised,
    unbiased_rescale,
    weighted_ls_scale,
    uniform_dequantize,
    uniform_quantize,
)
from impl.validation import check_orthogonal, check_orthonormal_columns, check_tensor

SCALE_RULES = ("ls", "unbiased", "query")
COEF_BITS = (16, 8, 4)
MAX_CODE_BITS = 4


def sign_levels(heads: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The 1-bit levels (−1, +1) for every head: SPEC §1's sign code."""
    return torch.tensor([-1.0, 1.0], dtype=dtype, device=device).expand(heads, 2).clone()


@dataclass(frozen=True)
class TransformCodec(KeyCodec):
    """The per-layer code described in the module docstring.

    Tensors: `mean` (H, d), `rotation` (H, d, d) orthogonal, `basis` (H, d, r) orthonormal columns,
    `levels` (H, 2^b) strictly increasing, `channel_scale` (H, d) positive (ones: none), and for the
    "query" scale rule `query_moment` (H, d, d) = E[q qᵀ] of the calibration queries of each kv
    head, in key coordinates (symmetric positive semi-definite).
    Settings: `bits` b ∈ {1, 2, 3, 4}; `scale_rule` "ls", "unbiased" or "query"; `coef_bits` 16 (float16
    coefficients), 8 or 4 (integers with a float16 scale per token); `side_dtype` of α and the
    coefficient scale (float16 by default)."""

    kind: ClassVar[str] = "transform"

    mean: Tensor
    rotation: Tensor
    basis: Tensor
    levels: Tensor
    channel_scale: Tensor
    bits: int = 1
    scale_rule: str = "ls"
    coef_bits: int = 16
    side_dtype: torch.dtype = torch.float16
    query_moment: Tensor | None = None

    def __post_init__(self) -> None:
        m = check_tensor(self.mean, "mean", min_dim=2)
        if m.dim() != 2:
            raise CodecError(f"mean must have shape (H, d), got {tuple(self.mean.shape)}")
        H, d = m.shape
        R = check_tensor(self.rotation, "rotation", min_dim=3)
        if R.shape != (H, d, d):
            raise CodecError(f"rotation must have shape (H, d, d) = {(H, d, d)}, got {tuple(R.shape)}")
        check_orthogonal(R, "rotation")
        B = check_tensor(self.basis, "basis", min_dim=3, allow_empty_last=True)
        if B.shape[:2] != (H, d) or B.shape[2] > d:
            raise CodecError(f"basis must have shape (H, d, r) = ({H}, {d}, r ≤ {d}), got {tuple(B.shape)}")
        if B.shape[2]:
            check_orthonormal_columns(B, "basis")
        b = check_bits(self.bits, "bits", maximum=MAX_CODE_BITS)
        lv = check_levels(self.levels, "levels")
        if lv.shape != (H, 2**b):
            raise CodecError(f"levels must have shape (H, 2^bits) = {(H, 2**b)}, got {tuple(lv.shape)}")
        cs = check_tensor(self.channel_scale, "channel_scale")
        if cs.shape != (H, d) or not bool((cs > 0).all()):
            raise CodecError(f"channel_scale must be positive with shape (H, d) = {(H, d)}, got {tuple(cs.shape)}")
        if self.scale_rule not in SCALE_RULES:
            raise CodecError(f"scale_rule must be one of {SCALE_RULES}, got {self.scale_rule!r}")
        if (self.scale_rule == "query") != (self.query_moment is not None):
            raise CodecError("query_moment (H, d, d) is needed exactly when scale_rule is 'query'")
        if self.query_moment is not None:
            Wq = check_tensor(self.query_moment, "query_moment", min_dim=3)
            if Wq.shape != (H, d, d):
                raise CodecError(f"query_moment must have shape (H, d, d) = {(H, d, d)}, got {tuple(Wq.shape)}")
            if not torch.allclose(Wq, Wq.transpose(-1, -2), rtol=1e-5, atol=1e-6 * float(Wq.abs().max())):
                raise CodecError("query_moment must be symmetric (it is E[q qᵀ])")
        if not isinstance(self.coef_bits, int) or isinstance(self.coef_bits, bool) or self.coef_bits not in COEF_BITS:
            raise CodecError(f"coef_bits must be one of {COEF_BITS}, got {self.coef_bits!r}")
        object.__setattr__(self, "side_dtype", float_dtype(self.side_dtype, "side_dtype"))

    # -- construction --------------------------------------------------------------------
    @classmethod
    def identity(cls, heads: int, dim: int, *, bits: int = 1, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> "TransformCodec":
        """No centring, no rotation, no correction: plain sign quantisation (b = 1) or Gaussian
        Lloyd–Max levels (b > 1) on the raw coordinates."""
        eye = torch.eye(dim, dtype=dtype, device=device).expand(heads, dim, dim).clone()
        return cls(mean=torch.zeros(heads, dim, dtype=dtype, device=device), rotation=eye,
                   basis=torch.zeros(heads, dim, 0, dtype=dtype, device=device),
                   levels=default_levels(bits, heads, dtype=dtype, device=device),
                   channel_scale=torch.ones(heads, dim, dtype=dtype, device=device), bits=bits)

    @property
    def heads(self) -> int:  # type: ignore[override]
        return self.mean.shape[0]

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.mean.shape[1]

    @property
    def rank(self) -> int:
        return self.basis.shape[2]

    def with_basis(self, basis: Tensor) -> "TransformCodec":
        return replace(self, basis=basis)

    def to(self, device: torch.device | str) -> "TransformCodec":
        """The same codec on another device (dtypes kept: orthogonality was checked at the precision
        the matrices carry)."""
        return replace(self, mean=self.mean.to(device), rotation=self.rotation.to(device),
                       basis=self.basis.to(device), levels=self.levels.to(device),
                       channel_scale=self.channel_scale.to(device),
                       query_moment=None if self.query_moment is None else self.query_moment.to(device))

    # -- the transform -------------------------------------------------------------------
    def rotate(self, x: Tensor) -> Tensor:
        """`R_h x` for x of shape (B, H, …, d)."""
        R = self.rotation.to(x.dtype)
        shape = x.shape
        flat = x.reshape(shape[0], shape[1], -1, shape[-1])
        return torch.einsum("hij,bhtj->bhti", R, flat).reshape(shape)

    def transform(self, keys: Tensor) -> Tensor:
        """`y = R_h (k − m_h)` for keys of shape (B, H, T, d)."""
        return self.rotate(keys - self.mean.to(keys.dtype)[None, :, None, :])

    def code_vectors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """`(idx, v)`: the level indices of `y` (B, H, T, d) and the code vector `v = σ ⊙ ℓ[idx]` (in
        y's dtype). The normalisation `x = u / (‖u‖/√d)` puts unit-variance levels on the
        coordinates' scale; `y = 0` gives, in every coordinate, the level just above 0 (ties go up:
sgn 0 = +1 for b = 1)."""
        sigma = self.channel_scale.to(y.dtype)[None, :, None, :]
        x = rms_normalised(y / sigma)
        idx = nearest_level(x.transpose(0, 1), self.levels.to(y.dtype)).transpose(0, 1)   # per-head tables
        return idx, self.level_vectors(idx, y.dtype) * sigma

    def level_vectors(self, idx: Tensor, dtype: torch.dtype) -> Tensor:
        """`ℓ_h[idx]` for indices (B, H, T, d)."""
        lv = self.levels.to(dtype)[None, :, None, :].expand(*idx.shape[:-1], self.levels.shape[-1])
        return torch.take_along_dim(lv, idx, dim=-1)

    def token_scale(self, y: Tensor, v: Tensor) -> Tensor:
        """α per token for y, v (B, H, T, d): `ls_scale(y, v)`, `unbiased_rescale(y, v)` or
        `weighted_ls_scale(y, v, R E[qqᵀ] Rᵀ)` (see `scale_rule`)."""
        if self.scale_rule == "ls":
            return ls_scale(y, v)
        if self.scale_rule == "unbiased":
            return unbiased_rescale(y, v)
        R = self.rotation.to(y.dtype)
        W = R @ self.query_moment.to(y.dtype) @ R.transpose(-1, -2)           # the moments in the rotated frame
        return weighted_ls_scale(y, v, W)

    # -- the code ------------------------------------------------------------------------
    def code_fields(self) -> dict[str, int]:
        fields = {"codes": 1, "scale": 1}
        if self.rank:
            fields["coeffs"] = 1
            if self.coef_bits != 16:
                fields["coef_scale"] = 1
        return fields

    def encode(self, keys: Tensor) -> Codes:
        """Code keys (B, H, T, d) (see the module docstring). α is rounded to `side_dtype` before the
        residual is formed, so decoding reproduces what is stored; a key whose α or coefficients
        overflow the side dtype raises ValueError. The contractions `R (k − m)` and `Bᵀ e` are
        accumulated in float64 and only then rounded, so a token's code does not depend on the
        tokens encoded with it (prefill and decode store the same bits)."""
        k = check_keys(keys, self.heads, self.dim)
        y = self.transform(k.double())                                             # (B, H, T, d) float64
        idx, v = self.code_vectors(y)
        alpha = self.token_scale(y, v).to(self.side_dtype)
        check_finite_after_rounding(alpha, "per-token scale α", self.side_dtype)
        codes: Codes = {"codes": pack_codes(idx, self.bits), "scale": alpha}
        if self.rank:
            resid = y - alpha.double().unsqueeze(-1) * v
            c = torch.einsum("bhtd,hdr->bhtr", resid, self.basis.double())
            if self.coef_bits == 16:
                codes["coeffs"] = c.to(self.side_dtype)
                check_finite_after_rounding(codes["coeffs"], "rank-r coefficients", self.side_dtype)
            else:
                half = 2 ** (self.coef_bits - 1) - 1
                step = (c.abs().amax(-1) / half).to(self.side_dtype)
                check_finite_after_rounding(step, "coefficient scale", self.side_dtype)
                st = step.double().unsqueeze(-1)
                q = uniform_quantize(c, -half * st, st, self.coef_bits)
                codes["coeffs"] = pack_codes(q, self.coef_bits)
                codes["coef_scale"] = step
        return codes

    def coefficients(self, codes: Codes) -> Tensor:
        """The stored rank-r coefficients `ĉ` (float32, (B, H, T, r))."""
        if self.coef_bits == 16:
            return codes["coeffs"].float()
        half = 2 ** (self.coef_bits - 1) - 1
        st = codes["coef_scale"].float().unsqueeze(-1)
        q = unpack_codes(codes["coeffs"], self.coef_bits, self.rank)
        return uniform_dequantize(q, -half * st, st)

    def decode(self, codes: Codes) -> Tensor:
        """`k̂ = Rᵀ (α v + B ĉ) + m` (float32), shape (B, H, T, d)."""
        idx = unpack_codes(codes["codes"], self.bits, self.dim)
        v = self.level_vectors(idx, torch.float32) * self.channel_scale.float()[None, :, None, :]
        y_hat = codes["scale"].float().unsqueeze(-1) * v
        if self.rank:
            y_hat = y_hat + torch.einsum("bhtr,hdr->bhtd", self.coefficients(codes), self.basis.float())
        k = torch.einsum("hji,bhtj->bhti", self.rotation.float(), y_hat)             # Rᵀ ŷ
        return k + self.mean.float()[None, :, None, :]

    def offset(self, q: Tensor) -> Tensor:
        """`⟪q, m⟫`, the same for every token."""
        qf = check_queries(q, self.heads, self.dim)
        return (qf * self.mean.to(qf.dtype)[None, :, None, :]).sum(-1)

    def scores(self, q: Tensor, codes: Codes) -> Tensor:
        """`α_t ⟪R q ⊙ σ, ℓ[idx_t]⟫ + ⟪Bᵀ R q, ĉ_t⟫` (fused_logit_identity; the offset `⟪q, m⟫` is
        `offset(q)`), from the packed indices; q (B, H, Q, d)."""
        qf = check_queries(q, self.heads, self.dim)
        rq = self.rotate(qf)
        from impl.cache.kernels import level_scores  # the compiled kernel where one is available

        t = level_scores(rq * self.channel_scale.to(qf.dtype)[None, :, None, :], codes["codes"],
                         self.levels.to(qf.dtype), self.bits, self.dim)
        s = t * codes["scale"].to(qf.dtype).unsqueeze(-2)
        if self.rank:
            bq = torch.einsum("bhqd,hdr->bhqr", rq, self.basis.to(qf.dtype))
            s = s + bq @ self.coefficients(codes).to(qf.dtype).transpose(-1, -2)
        return s

    def token_bits(self) -> float:
        """`8⌈d·b/8⌉ + s` bits (indices and α), plus `16 r` (float16 coefficients) or
        `8⌈r·c/8⌉ + s` (c-bit integer coefficients and their scale); `s` = the side dtype's width."""
        s = torch.finfo(self.side_dtype).bits
        bits = 8 * packed_code_width(self.dim, self.bits) + s
        if self.rank:
            if self.coef_bits == 16:
                bits += s * self.rank
            else:
                bits += 8 * packed_code_width(self.rank, self.coef_bits) + s
        return float(bits)

    # -- artifacts -----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"heads": self.heads, "dim": self.dim, "rank": self.rank, "bits": self.bits,
                "scale_rule": self.scale_rule, "coef_bits": self.coef_bits, "side_dtype": dtype_name(self.side_dtype)}

    def parameters(self) -> dict[str, Tensor]:
        out = {"mean": self.mean, "rotation": self.rotation, "basis": self.basis, "levels": self.levels,
               "channel_scale": self.channel_scale}
        if self.query_moment is not None:
            out["query_moment"] = self.query_moment
        return out

    @classmethod
    def from_parameters(cls, settings: dict[str, Any], tensors: dict[str, Tensor]) -> "TransformCodec":
        H = require_setting(settings, "heads", int)
        d = require_setting(settings, "dim", int)
        r = require_setting(settings, "rank", int)
        b = require_setting(settings, "bits", int)
        if not 1 <= b <= MAX_CODE_BITS:
            raise CodecError(f"setting 'bits' must be in [1, {MAX_CODE_BITS}], got {b}")
        rule = require_setting(settings, "scale_rule", str)
        try:
            return cls(mean=require_tensor(tensors, "mean", (H, d)),
                       rotation=require_tensor(tensors, "rotation", (H, d, d)),
                       basis=require_tensor(tensors, "basis", (H, d, r)),
                       levels=require_tensor(tensors, "levels", (H, 2**b)),
                       channel_scale=require_tensor(tensors, "channel_scale", (H, d)), bits=b,
                       scale_rule=rule,
                       query_moment=require_tensor(tensors, "query_moment", (H, d, d)) if rule == "query" else None,
                       coef_bits=require_setting(settings, "coef_bits", int),
                       side_dtype=require_setting(settings, "side_dtype", str))
        except ValueError as exc:
            raise CodecError(str(exc)) from exc

    def label(self) -> str:
        parts = [f"b={self.bits}"]
        if self.rank:
            parts.append(f"r={self.rank}" + ("" if self.coef_bits == 16 else f"/int{self.coef_bits}"))
        if self.scale_rule != "ls":
            parts.append({"unbiased": "unbiased", "query": "query-weighted"}[self.scale_rule])
        if not bool((self.channel_scale == 1).all()):
            parts.append("channel-scaled")
        return "transform " + " ".join(parts)


def default_levels(bits: int, heads: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """Levels for every head: ±1 for `b = 1` (the sign code; its scale is α's), the Gaussian
    Lloyd–Max levels for `b > 1` (lloyd_max_isotropic_floor)."""
    from impl.multilevel import gaussian_lloyd_max

    b = check_bits(bits, "bits", maximum=MAX_CODE_BITS)
    if b == 1:
        return sign_levels(heads, dtype=dtype, device=device)
    return gaussian_lloyd_max(b).levels.to(dtype=dtype, device=device).expand(heads, 2**b).clone()
