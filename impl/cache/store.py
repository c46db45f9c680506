"""The 1-bit key cache: a per-layer codec and a bit-packed key store that attends from the
packed form.

For kv head `h` of a layer, a key `k ∈ ℝ^d` is transformed and coded as

    y = R_h (k − m_h)                 rotation R_h (orthogonal), DC mean m_h   (SPEC §3)
    s = signVec y,  α = optScale y = ‖y‖₁ / d                                   (SPEC §1)
    c = B_hᵀ (y − α s)                rank-r correction, B_h (d × r) orthonormal (SPEC §5)

and stored as the bits of `s` packed 8 per byte, `α` and `c` in ``scale_dtype`` (float16 by
default). The first ``n_protect`` tokens (attention sinks) are kept exactly. The dequantised key
is `k̂ = R_hᵀ (α s + B_h c) + m_h`.

Scores never materialise the context in full precision. For a query `q`:

    ⟪q, k̂_t⟫ = α_t ⟪R q, s_t⟫ + ⟪B_hᵀ R q, c_t⟫ + ⟪q, m_h⟫,

where `⟪R q, s_t⟫` comes from the packed bits (`impl.packing.packed_sign_scores`). The last term
is the same for every token, so softmax ignores it (softmax_shift, attention_score_gauge_invariance
(b)); by default it is dropped — and, to keep every token on the same footing, subtracted from the
exactly kept protected tokens too. ``exact_offsets=True`` returns the logits `⟪q, k̂_t⟫` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from impl.cache.packing import (
    pack_signs,
    packed_sign_scores,
    packed_width,
    unpack_signs,
)
from impl.validation import check_orthogonal, check_orthonormal_columns, check_tensor


@dataclass(frozen=True)
class KeyCodec:
    """The per-layer transform of the keys: mean `m` (H, d), rotation `R` (H, d, d) and rank-r
    correction basis `B` (H, d, r) for each of the H kv heads."""

    mean: Tensor
    rotation: Tensor
    basis: Tensor

    def __post_init__(self) -> None:
        m = check_tensor(self.mean, "mean", min_dim=2)
        H, d = m.shape
        R = check_tensor(self.rotation, "rotation", min_dim=3)
        if R.shape != (H, d, d):
            raise ValueError(f"rotation must have shape (H, d, d) = {(H, d, d)}, got {tuple(R.shape)}")
        check_orthogonal(R, "rotation")
        B = check_tensor(self.basis, "basis", min_dim=3, allow_empty_last=True)
        if B.shape[:2] != (H, d) or B.shape[2] > d:
            raise ValueError(f"basis must have shape (H, d, r) = ({H}, {d}, r ≤ {d}), got {tuple(B.shape)}")
        if B.shape[2]:
            check_orthonormal_columns(B, "basis")

    @classmethod
    def identity(cls, heads: int, dim: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> "KeyCodec":
        """No centring, no rotation, no correction: plain 1-bit sign quantisation."""
        eye = torch.eye(dim, dtype=dtype, device=device).expand(heads, dim, dim).clone()
        return cls(mean=torch.zeros(heads, dim, dtype=dtype, device=device), rotation=eye,
                   basis=torch.zeros(heads, dim, 0, dtype=dtype, device=device))

    @property
    def heads(self) -> int:
        return self.mean.shape[0]

    @property
    def dim(self) -> int:
        return self.mean.shape[1]

    @property
    def rank(self) -> int:
        return self.basis.shape[2]

    def to(self, device: torch.device | str) -> "KeyCodec":
        """The same codec on another device (the dtype is kept: orthogonality was checked at the
        precision the matrices carry)."""
        return KeyCodec(self.mean.to(device), self.rotation.to(device), self.basis.to(device))

    def rotate(self, x: Tensor) -> Tensor:
        """`R_h x` for x of shape (B, H, …, d)."""
        R = self.rotation.to(x.dtype)
        shape = x.shape
        flat = x.reshape(shape[0], shape[1], -1, shape[-1])
        return torch.einsum("hij,bhtj->bhti", R, flat).reshape(shape)

    def transform(self, keys: Tensor) -> Tensor:
        """`y = R_h (k − m_h)` for keys of shape (B, H, T, d)."""
        return self.rotate(keys - self.mean.to(keys.dtype)[None, :, None, :])


@dataclass(frozen=True)
class EncodedKeys:
    """Packed codes for keys of shape (B, H, T, d): `packed` (B, H, T, ⌈d/8⌉) uint8, `scale`
    (B, H, T) and `coeffs` (B, H, T, r) in the storage dtype."""

    packed: Tensor
    scale: Tensor
    coeffs: Tensor


def encode_keys(codec: KeyCodec, keys: Tensor, scale_dtype: torch.dtype = torch.float16) -> EncodedKeys:
    """Code keys (B, H, T, d): bits of `sgn y`, `α = ‖y‖₁/d` and `c = Bᵀ(y − α s)` with
    `y = R (k − m)` — the quantize_1bit code of cos_sign_quant_formula in the rotated frame, with
    the rank-r correction of svd_topk_maximizes_gammaR. `α` and `c` are rounded to `scale_dtype`
    before `c` is formed from the rounded `α`, so decoding reproduces exactly what is stored.

    A token's code does not depend on the tokens encoded with it (decode steps and prefill store
    the same bits): the two contractions, `R (k − m)` and `Bᵀ(y − α s)`, are accumulated in
    float64 and only then rounded, because a float32 GEMM sums in an order that depends on the
    number of rows and would move `y` or `c` across a rounding boundary."""
    k = check_tensor(keys, "keys", min_dim=4)
    if k.shape[1] != codec.heads or k.shape[-1] != codec.dim:
        raise ValueError(f"keys must have shape (B, H={codec.heads}, T, d={codec.dim}), got {tuple(k.shape)}")
    y = codec.transform(k.double()).float()
    d = codec.dim
    scale = (y.abs().sum(dim=-1) / d).to(scale_dtype)
    signs = torch.where(y >= 0, 1.0, -1.0)
    resid = y - scale.float().unsqueeze(-1) * signs
    coeffs = torch.einsum("bhtd,hdr->bhtr", resid.double(), codec.basis.double()).to(scale_dtype)
    return EncodedKeys(packed=pack_signs(y), scale=scale, coeffs=coeffs)


def decode_keys(codec: KeyCodec, enc: EncodedKeys) -> Tensor:
    """The dequantised keys `k̂ = Rᵀ (α s + B c) + m` (float32), shape (B, H, T, d)."""
    s = unpack_signs(enc.packed, codec.dim)
    y_hat = enc.scale.float().unsqueeze(-1) * s + torch.einsum("bhtr,hdr->bhtd", enc.coeffs.float(),
                                                               codec.basis.float())
    Rt = codec.rotation.float().transpose(-1, -2)
    k = torch.einsum("hij,bhtj->bhti", Rt, y_hat)
    return k + codec.mean.float()[None, :, None, :]


class _Growable:
    """A tensor that grows along dim 2 with amortised doubling; `view()` is the filled part."""

    def __init__(self, template: Tensor, capacity: int = 256):
        shape = list(template.shape)
        shape[2] = max(capacity, template.shape[2])
        self.data = template.new_empty(shape)
        self.length = 0

    def append(self, x: Tensor) -> None:
        need = self.length + x.shape[2]
        if need > self.data.shape[2]:
            shape = list(self.data.shape)
            shape[2] = max(need, 2 * self.data.shape[2])
            grown = self.data.new_empty(shape)
            grown[:, :, : self.length] = self.data[:, :, : self.length]
            self.data = grown
        self.data[:, :, self.length:need] = x
        self.length = need

    def view(self) -> Tensor:
        return self.data[:, :, : self.length]

    @property
    def nbytes_allocated(self) -> int:
        return self.data.numel() * self.data.element_size()

    @property
    def nbytes_used(self) -> int:
        return self.view().numel() * self.data.element_size()


@dataclass(frozen=True)
class MemoryReport:
    """Exact memory of a key store. `bits_per_coordinate` = bits of the stored keys (codes,
    scales, coefficients, protected keys) per key coordinate held; `nbytes_allocated` includes
    spare capacity of the growable buffers; `codec_bytes` is the per-layer transform (m, R, B),
    which does not grow with the context."""

    tokens: int
    coordinates: int
    nbytes_used: int
    nbytes_allocated: int
    codec_bytes: int
    breakdown: dict[str, int]

    @property
    def bits_per_coordinate(self) -> float:
        return 8.0 * self.nbytes_used / self.coordinates if self.coordinates else 0.0

    @classmethod
    def summed(cls, reports: Sequence["MemoryReport"]) -> "MemoryReport":
        """The memory of several stores holding the same tokens (e.g. the layers of a model)."""
        if not reports:
            raise ValueError("reports: expected at least one memory report")
        breakdown: dict[str, int] = {}
        for r in reports:
            for k, v in r.breakdown.items():
                breakdown[k] = breakdown.get(k, 0) + v
        return cls(tokens=reports[0].tokens, coordinates=sum(r.coordinates for r in reports),
                   nbytes_used=sum(r.nbytes_used for r in reports),
                   nbytes_allocated=sum(r.nbytes_allocated for r in reports),
                   codec_bytes=sum(r.codec_bytes for r in reports), breakdown=breakdown)


class OneBitKeyStore:
    """Bit-packed keys of one layer, shape (B, H, T, d) logically.

    Tokens `0 … n_protect−1` are stored exactly (in ``protect_dtype``, default: the dtype of
    the first keys appended); every later token as an `EncodedKeys` code. `append` accepts one
    token (decode) or a block (prefill); both give identical stores (front_token_protection,
    cos_sign_quant_formula).
    """

    def __init__(self, codec: KeyCodec, n_protect: int = 0, scale_dtype: torch.dtype = torch.float16,
                 protect_dtype: torch.dtype | None = None):
        if not isinstance(n_protect, int) or n_protect < 0:
            raise ValueError(f"n_protect must be an integer ≥ 0, got {n_protect!r}")
        if scale_dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"scale_dtype must be float16, bfloat16 or float32, got {scale_dtype}")
        self.codec = codec
        self.n_protect = n_protect
        self.scale_dtype = scale_dtype
        self.protect_dtype = protect_dtype
        self._protected: _Growable | None = None
        self._packed: _Growable | None = None
        self._scale: _Growable | None = None
        self._coeffs: _Growable | None = None
        self.batch: int | None = None

    # -- writing -------------------------------------------------------------------------
    def append(self, keys: Tensor) -> None:
        """Append keys of shape (B, H, T, d), T ≥ 1, in token order."""
        k = check_tensor(keys, "keys", min_dim=4)
        if k.dim() != 4 or k.shape[1] != self.codec.heads or k.shape[3] != self.codec.dim:
            raise ValueError(f"keys must have shape (B, H={self.codec.heads}, T, d={self.codec.dim}), got {tuple(k.shape)}")
        if self.batch is None:
            self.batch = k.shape[0]
            if self.protect_dtype is None:
                self.protect_dtype = k.dtype
            if self.codec.mean.device != k.device:
                self.codec = self.codec.to(k.device)
        elif k.shape[0] != self.batch:
            raise ValueError(f"keys must have batch size {self.batch} (as before), got {k.shape[0]}")
        n_exact = max(0, min(self.n_protect - self.protected_length, k.shape[2]))
        if n_exact:
            exact = k[:, :, :n_exact].to(self.protect_dtype)
            if self._protected is None:
                self._protected = _Growable(exact, capacity=self.n_protect)
            self._protected.append(exact)
        rest = k[:, :, n_exact:]
        if rest.shape[2]:
            enc = encode_keys(self.codec, rest, self.scale_dtype)
            if self._packed is None:
                self._packed = _Growable(enc.packed)
                self._scale = _Growable(enc.scale.unsqueeze(-1))
                self._coeffs = _Growable(enc.coeffs)
            self._packed.append(enc.packed)
            self._scale.append(enc.scale.unsqueeze(-1))
            self._coeffs.append(enc.coeffs)

    # -- reading -------------------------------------------------------------------------
    @property
    def protected_length(self) -> int:
        return self._protected.length if self._protected is not None else 0

    @property
    def quantized_length(self) -> int:
        return self._packed.length if self._packed is not None else 0

    def __len__(self) -> int:
        return self.protected_length + self.quantized_length

    def protected_keys(self) -> Tensor | None:
        return self._protected.view() if self._protected is not None else None

    def encoded(self) -> EncodedKeys | None:
        if self._packed is None:
            return None
        return EncodedKeys(self._packed.view(), self._scale.view().squeeze(-1), self._coeffs.view())

    def dequantized_keys(self) -> Tensor:
        """All keys as the attention sees them (float32, B × H × T × d): protected keys exact,
        the rest `k̂ = Rᵀ(α s + B c) + m`. This materialises the context; the attention path
        uses `logits` instead."""
        parts = []
        if self._protected is not None:
            parts.append(self._protected.view().float())
        enc = self.encoded()
        if enc is not None:
            parts.append(decode_keys(self.codec, enc))
        if not parts:
            raise ValueError("the store is empty")
        return torch.cat(parts, dim=2)

    def logits(self, q: Tensor, *, exact_offsets: bool = False, chunk_tokens: int = 4096,
               method: str = "unpack") -> Tensor:
        """`⟪q, k̂_t⟫ − ⟪q, m⟫` for every query and stored token, from the packed form.

        ``q`` has shape (B, H, G, Q, d) (G query heads share each kv head); the result is
        (B, H, G, Q, T), float32. With ``exact_offsets`` the mean term `⟪q, m⟫` is kept, giving
        `⟪q, k̂_t⟫` exactly; without it every logit of a query is shifted by the same constant,
        which softmax ignores (softmax_shift).
        """
        qc = check_tensor(q, "q", min_dim=5)
        if qc.shape[1] != self.codec.heads or qc.shape[-1] != self.codec.dim:
            raise ValueError(f"q must have shape (B, H={self.codec.heads}, G, Q, d={self.codec.dim}), got {tuple(qc.shape)}")
        B, H, G, Q, d = qc.shape
        qf = qc.float().reshape(B, H, G * Q, d)
        offset = (qf * self.codec.mean.float()[None, :, None, :]).sum(-1, keepdim=True)  # ⟪q, m⟫
        parts = []
        if self._protected is not None:
            exact = qf @ self._protected.view().float().transpose(-1, -2)
            parts.append(exact if exact_offsets else exact - offset)
        enc = self.encoded()
        if enc is not None:
            rq = self.codec.rotate(qf)                                        # R q
            sign_part = packed_sign_scores(rq, enc.packed, d, method=method, chunk_tokens=chunk_tokens)
            scores = sign_part * enc.scale.float().unsqueeze(-2)
            if self.codec.rank:
                bq = torch.einsum("bhqd,hdr->bhqr", rq, self.codec.basis.float())  # Bᵀ R q
                scores = scores + bq @ enc.coeffs.float().transpose(-1, -2)
            parts.append(scores + offset if exact_offsets else scores)
        if not parts:
            raise ValueError("the store is empty")
        return torch.cat(parts, dim=-1).reshape(B, H, G, Q, -1)

    # -- accounting ----------------------------------------------------------------------
    def memory(self) -> MemoryReport:
        parts = {"protected": self._protected, "signs": self._packed, "scale": self._scale, "coeffs": self._coeffs}
        used = {k: (v.nbytes_used if v is not None else 0) for k, v in parts.items()}
        allocated = sum(v.nbytes_allocated for v in parts.values() if v is not None)
        codec_bytes = sum(t.numel() * t.element_size() for t in (self.codec.mean, self.codec.rotation, self.codec.basis))
        T = len(self)
        coords = (self.batch or 0) * self.codec.heads * T * self.codec.dim
        return MemoryReport(tokens=T, coordinates=coords, nbytes_used=sum(used.values()), nbytes_allocated=allocated,
                            codec_bytes=codec_bytes, breakdown=used)

    def expected_bits_per_coordinate(self) -> float:
        """`1 + scale_bits/d + r·coef_bits/d` for coded tokens, protected tokens at their dtype's
        width, averaged over the tokens held (the cache's memory formula; no hidden copy)."""
        T = len(self)
        if T == 0:
            return 0.0
        d = self.codec.dim
        sbits = torch.finfo(self.scale_dtype).bits
        coded = packed_width(d) * 8 / d + sbits / d + self.codec.rank * sbits / d
        exact = torch.finfo(self.protect_dtype).bits if self.protect_dtype is not None else 0
        return (self.protected_length * exact + self.quantized_length * coded) / T
