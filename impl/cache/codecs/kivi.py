"""KIVI (Liu et al., ICML 2024, arXiv 2402.02750): per-channel asymmetric `b`-bit key quantization
in groups of `G` tokens — written from the paper (§3.1–3.3, Appendix A Alg. 1).

For kv head `h`, channel `j` and a group `g` of `G` consecutive tokens, with
`z = min_{t∈g} k_{t,j}` (the zero point) and `s = (max_{t∈g} k_{t,j} − z) / (2^b − 1)` (the step):

    c_{t,j} = clamp(round((k_{t,j} − z) / s), 0, 2^b − 1)      round half to even (torch.round)
    k̂_{t,j} = z + s · c_{t,j}

(`uniform_quantize` / `uniform_dequantize`: uniform_quant_half_step — every entry errs by at most
`s/2`). A constant group (`s = 0`) gets code 0 and decodes to `z` exactly (the paper divides by
zero there). `s` and `z` are stored in float16 — one pair per channel per group, as KIVI's fp16
model does — and the codes are formed against the rounded values, so decoding reproduces exactly
what was coded. KIVI does this arithmetic in fp16 (`(k − z)/s` rounded to half precision before
`round`); here it is done in float64 against the fp16 `z`, `s`, which can differ from KIVI's
codes by one step only at near-ties.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
)
from impl.cache.packing import pack_codes, packed_code_width, unpack_codes
from impl.multilevel import uniform_dequantize, uniform_quantize
from impl.validation import check_positive_int

KIVI_BITS = (1, 2, 3, 4, 8)
SCORE_CHUNK_TOKENS = 4096


@dataclass(frozen=True)
class KiviCodec(KeyCodec):
    """KIVI keys (module docstring): packed `b`-bit codes per token, and float16 `scale` and `zero`
    per channel per group of `G` tokens (`token_block = G`).

    Settings: `heads`, `dim`, `bits` ∈ {1, 2, 3, 4, 8} (published: 2 and 4, "KIVI-2"/"KIVI-4"),
    `group` G (published: 32), `side_dtype` of scale and zero point (float16, as KIVI). No fitted
    tensors: `parameters()` is empty, and `device` is where `to()` last put the codec.

    Bits per token and head: `8⌈d·b/8⌉ + 2·16·d/G` — at G = 32, 3 bits per coordinate for KIVI-2
    and 5 for KIVI-4, for d = 64 and d = 128 alike.

    The residual. KIVI keeps the most recent tokens in full precision and quantizes them `R` at a
    time (`R` = 128 published, a multiple of `G`): KIVI appends the new key, attends, and only then
    flushes a full residual, so its queries see 1…R exact tokens. `KeyStore(codec, window=1,
    flush_block=R)` keeps exactly that: `1 + (n − 1) mod R` exact tokens after n, the rest coded
    R at a time (the study runs KIVI so).

    KIVI quantizes the raw post-RoPE keys: there is no rotation and no centring."""

    kind: ClassVar[str] = "kivi"

    heads: int
    dim: int
    bits: int = 2
    group: int = 32
    side_dtype: torch.dtype = torch.float16
    placement: torch.device = field(default=torch.device("cpu"), compare=False)

    def __post_init__(self) -> None:
        for name in ("heads", "dim", "group"):
            try:
                check_positive_int(getattr(self, name), name)
            except ValueError as exc:
                raise CodecError(str(exc)) from exc
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or self.bits not in KIVI_BITS:
            raise CodecError(f"bits must be one of {KIVI_BITS}, got {self.bits!r}")
        object.__setattr__(self, "side_dtype", float_dtype(self.side_dtype, "side_dtype"))
        object.__setattr__(self, "placement", torch.device(self.placement))

    @classmethod
    def for_layer(cls, heads: int, dim: int, bits: int = 2, group: int = 32,
                  side_dtype: torch.dtype = torch.float16) -> "KiviCodec":
        """KIVI for one layer (data-free: KIVI has no fitted constants)."""
        return cls(heads=heads, dim=dim, bits=bits, group=group, side_dtype=side_dtype)

    @property
    def token_block(self) -> int:  # type: ignore[override]
        return self.group

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self.placement

    def to(self, device: torch.device | str) -> "KiviCodec":
        return replace(self, placement=torch.device(device))

    # -- the code ------------------------------------------------------------------------
    def code_fields(self) -> dict[str, int]:
        return {"codes": 1, "scale": self.group, "zero": self.group}

    def _grouped(self, x: Tensor) -> Tensor:
        """(B, H, T, …) → (B, H, T/G, G, …)."""
        return x.reshape(x.shape[0], x.shape[1], x.shape[2] // self.group, self.group, *x.shape[3:])

    def encode(self, keys: Tensor) -> Codes:
        """Keys (B, H, T, d), `T` a multiple of `G` → codes (B, H, T, ⌈d·b/8⌉) uint8, `scale` and
        `zero` (B, H, T/G, d) in the side dtype. Each group is coded on its own."""
        k = check_keys(keys, self.heads, self.dim)
        B, H, T, d = k.shape
        if T % self.group:
            raise ValueError(f"keys must hold a multiple of group = {self.group} tokens, got {T}")
        x = self._grouped(k.double())                                   # (B, H, n, G, d)
        lo, hi = x.amin(dim=3), x.amax(dim=3)                           # (B, H, n, d)
        zero = lo.to(self.side_dtype)
        check_finite_after_rounding(zero, "zero point (group minimum)", self.side_dtype)
        scale = ((hi - lo) / (2**self.bits - 1)).to(self.side_dtype)
        check_finite_after_rounding(scale, "scale (max − min)/(2^b − 1)", self.side_dtype)
        c = uniform_quantize(x, zero.double().unsqueeze(3), scale.double().unsqueeze(3), self.bits)
        return {"codes": pack_codes(c.reshape(B, H, T, d), self.bits), "scale": scale, "zero": zero}

    def decode(self, codes: Codes) -> Tensor:
        """`k̂ = z + s·c` per group, float32 (B, H, T, d)."""
        c = self._grouped(unpack_codes(codes["codes"], self.bits, self.dim))
        k = uniform_dequantize(c, codes["zero"].unsqueeze(3), codes["scale"].unsqueeze(3))
        return k.float().reshape(c.shape[0], c.shape[1], -1, self.dim)

    def scores(self, q: Tensor, codes: Codes) -> Tensor:
        """`⟪q, k̂_t⟫ = Σ_j q_j s_{g(t),j} c_{t,j} + Σ_j q_j z_{g(t),j}`, group by group (a chunk of
        groups at a time: only the chunk's `s ⊙ c` is ever in floating point)."""
        qf = check_queries(q, self.heads, self.dim)
        packed, scale, zero = codes["codes"], codes["scale"], codes["zero"]
        per = max(1, SCORE_CHUNK_TOKENS // self.group)                  # groups per chunk
        outs = []
        for g0 in range(0, scale.shape[2], per):
            s = scale[:, :, g0:g0 + per].to(qf.dtype)                   # (B, H, n, d)
            z = zero[:, :, g0:g0 + per].to(qf.dtype)
            n = s.shape[2]
            c = unpack_codes(packed[:, :, g0 * self.group:(g0 + n) * self.group], self.bits, self.dim)
            sc = (self._grouped(c.to(qf.dtype)) * s.unsqueeze(3)).flatten(2, 3)   # (B, H, nG, d)
            t = qf @ sc.transpose(-1, -2)                               # Σ_j q_j s_j c_tj
            t = t + (qf @ z.transpose(-1, -2)).repeat_interleave(self.group, dim=-1)   # Σ_j q_j z_j
            outs.append(t)
        if not outs:
            return qf.new_zeros(*qf.shape[:-1], 0)
        return torch.cat(outs, dim=-1)

    def token_bits(self) -> float:
        """`8⌈d·b/8⌉ + 2·s·d/G`: the packed codes, and one scale and zero point (`s` bits each, 16)
        per channel shared by the `G` tokens of a group."""
        s = torch.finfo(self.side_dtype).bits
        return float(8 * packed_code_width(self.dim, self.bits) + 2 * s * self.dim / self.group)

    # -- artifacts -----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"heads": self.heads, "dim": self.dim, "bits": self.bits, "group": self.group,
                "side_dtype": dtype_name(self.side_dtype)}

    def parameters(self) -> dict[str, Tensor]:
        return {}

    @classmethod
    def from_parameters(cls, settings: dict[str, Any], tensors: dict[str, Tensor]) -> "KiviCodec":
        if tensors:
            raise CodecError(f"KIVI has no tensors, got {sorted(tensors)}")
        return cls(heads=require_setting(settings, "heads", int), dim=require_setting(settings, "dim", int),
                   bits=require_setting(settings, "bits", int), group=require_setting(settings, "group", int),
                   side_dtype=require_setting(settings, "side_dtype", str))

    def label(self) -> str:
        return f"kivi b={self.bits} G={self.group}"
