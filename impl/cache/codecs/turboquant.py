"""TurboQuant (Zandieh, Daliri, Hadian, Mirrokni, arXiv 2504.19874): a random rotation, then the
Lloyd–Max codebook of one coordinate of a uniform point on the sphere — written from the paper
(Alg. 1 and 2, §3.1–3.2, §4.2–4.3).

**TurboQuant_mse** (Alg. 1). Per kv head a Haar rotation `Π` (`random_orthogonal`: QR of a Gaussian
matrix with the sign fix, exactly Haar). A key `k` is stored as its norm `‖k‖` (float16; the paper
stores norms "in floating-point precision" for inputs off the sphere) and the indices

    idx_i = nearest level of u_i in 𝒞_{b,d},   u = Π k / ‖k‖,

`𝒞_{b,d} = sphere_lloyd_max(b, d)` — the `2^b` Lloyd–Max levels of the density
`∝ (1 − x²)^{(d−3)/2}` on [−1, 1] of one coordinate of `u` (Lemma 1), a function of `(b, d)` only,
so it is not stored. Decoding and scoring:

    k̂ = ‖k‖ Πᵀ 𝒞[idx],         ⟪q, k̂⟫ = ‖k‖ ⟪Π q, 𝒞[idx]⟫      (from the packed indices).

For a unit key `E‖u − 𝒞[idx]‖² = d · D_{b,d}` with `D_{b,d}` = `sphere_lloyd_max(b, d).distortion`
per coordinate (≈ 0.36, 0.117, 0.034, 0.0093 divided by d for b = 1…4).

**TurboQuant_prod** (Alg. 2). The `(b−1)`-bit MSE code above (none for `b = 1`), and QJL with
`m = d` and a plain i.i.d. 𝒩(0, 1) sketch `S` (d × d per head) on the residual `r = k − k̂_mse`:
stored `sign(S r)` (d bits) and `‖r‖` (float16). The inner-product estimator

    ⟪q, k̂⟫ = ⟪q, k̂_mse⟫ + √(π/2)/d · ‖r‖ · ⟪S q, sign(S r)⟫

is unbiased (its second term is `qjl_inner_product`, registered theorem `qjl_unbiased`); decoding
returns `k̂_mse + √(π/2)/d · ‖r‖ · Sᵀ sign(S r)`, whose inner product with any `q` is exactly that
estimator. `r` is formed from the float16-rounded norm, so it is the residual of what is stored.
Sign convention: `sgn 0 = +1` (`pack_signs`).

**Fractional bits: the outlier split** (§4.2: "splitting channels into outlier and non-outlier
sets, and applying two independent instances of TurboQuant to each"). The paper's example,
"32 outlier channels are quantized at 3 bits, while the remaining 96 channels use 2 bits, leading to
an effective bit precision of (32×3 + 96×2)/128 = 2.5", is arithmetically 288/128 = 2.25; a 3/2
split at 2.5 bits needs 64 outlier channels (and the 3.5-bit ratio is not given). Which of the two
(the count or the stated precision) was run is unknown: `outlier_channels` is a setting. With
`outlier_index` (H, n_o) the channels of each head are split into the `n_o` outlier channels
(coded at `outlier_bits`) and the other `d − n_o` (coded at `bits`); each set is an independent instance with its own rotation (and sketch), its own
codebook `𝒞_{b, d_i}` for its sub-dimension, and its own norm(s). The paper does not say how the
outlier set is chosen. Here it is a fixed set per (layer, head): the `n_o` channels of largest rms
on calibration keys (`outlier_channels_by_rms`) — a per-layer constant, so it costs 0 bits per
token (its `H·n_o` indices are counted in `parameter_bytes`). (QJL's reference code instead picks
the outliers per 32-token group and stores their indices: 8 bits per index.)

Bits per token and head, each instance `i` on `d_i` channels at `b_i` bits (side values 16 bits):
mse: `Σ_i 8⌈d_i b_i/8⌉ + 16`; prod: `Σ_i [8⌈d_i (b_i−1)/8⌉ + 16 if b_i > 1] + 8⌈d_i/8⌉ + 16`.

The cache policy: TurboQuant codes every token as it arrives ("applies quantization even during the
streaming generation process"; no full-precision window is mentioned), i.e. `KeyStore(codec)` with
`window = 0`, `flush_block = 1`; keys are the raw post-RoPE keys. Whether the paper's KV
experiments used _mse or _prod for keys is not stated: both are provided.
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
    check_keys,
    check_queries,
    dtype_name,
    float_dtype,
    require_setting,
    require_tensor,
)
from impl.cache.codecs.qjl import qjl_inner_product, qjl_reconstruction, qjl_signs, qjl_sketch, stored_norm
from impl.cache.packing import pack_codes, packed_code_width, packed_width, unpack_codes
from impl.multilevel import check_bits, nearest_level, ratio_or_zero, sphere_lloyd_max
from impl.rotation import random_orthogonal
from impl.validation import check_orthogonal, check_positive_int, check_tensor

MAX_TQ_BITS = 4


# ------------------------------------------------------------------------------ one instance


@dataclass(frozen=True)
class TurboQuantInstance:
    """One TurboQuant quantizer on `d_i` channels of every head: the MSE stage (`mse_bits` > 0, with
    `rotation` (H, d_i, d_i)) and, for TurboQuant_prod, the QJL stage on its residual (`sketch`
    (H, d_i, d_i)). Field names of its codes: ``codes``/``norm`` (MSE), ``signs``/``residual_norm``
    (QJL)."""

    dim: int
    mse_bits: int
    rotation: Tensor | None
    sketch: Tensor | None
    side_dtype: torch.dtype
    levels: Tensor | None = field(default=None, compare=False, repr=False)   # 𝒞_{b,d_i}, float64

    def __post_init__(self) -> None:
        if self.mse_bits and self.levels is None:
            object.__setattr__(self, "levels", sphere_lloyd_max(self.mse_bits, self.dim).levels)

    def fields(self) -> list[str]:
        mse = ["codes", "norm"] if self.mse_bits else []
        return mse + (["signs", "residual_norm"] if self.sketch is not None else [])

    def token_bits(self) -> int:
        s = torch.finfo(self.side_dtype).bits
        bits = 8 * packed_code_width(self.dim, self.mse_bits) + s if self.mse_bits else 0
        if self.sketch is not None:
            bits += 8 * packed_width(self.dim) + s
        return bits

    def _mse_vectors(self, idx: Tensor, norm: Tensor, dtype: torch.dtype) -> Tensor:
        """`‖k‖ Πᵀ 𝒞[idx]` in `dtype`."""
        c = self.levels.to(dtype=dtype, device=idx.device)[idx]
        back = torch.einsum("hji,bhtj->bhti", self.rotation.to(dtype), c)
        return back * norm.to(dtype).unsqueeze(-1)

    def encode(self, x: Tensor) -> Codes:
        """Code `x` (B, H, T, d_i), float64."""
        codes: Codes = {}
        resid = x
        if self.mse_bits:
            norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
            u = ratio_or_zero(x, norm, norm > 0)
            y = torch.einsum("hij,bhtj->bhti", self.rotation.double(), u).contiguous()  # Π u
            idx = nearest_level(y, self.levels.to(x.device))
            codes["codes"] = pack_codes(idx, self.mse_bits)
            codes["norm"] = stored_norm(x, self.side_dtype, "key norm ‖k‖")
            if self.sketch is not None:
                resid = x - self._mse_vectors(idx, codes["norm"], torch.float64)
        if self.sketch is not None:
            codes["signs"] = qjl_signs(resid, self.sketch)
            codes["residual_norm"] = stored_norm(resid, self.side_dtype, "residual norm ‖k − k̂_mse‖")
        return codes

    def decode(self, codes: Codes) -> Tensor:
        out = None
        if self.mse_bits:
            out = self._mse_vectors(unpack_codes(codes["codes"], self.mse_bits, self.dim), codes["norm"], torch.float32)
        if self.sketch is not None:
            qjl = qjl_reconstruction(codes["signs"], codes["residual_norm"], self.sketch)
            out = qjl if out is None else out + qjl
        return out

    def scores(self, q: Tensor, codes: Codes) -> Tensor:
        """`‖k‖ ⟪Π q, 𝒞[idx]⟫` (+ the QJL term) for queries `q` (B, H, Q, d_i)."""
        from impl.cache.kernels import level_scores  # the compiled kernel where one is available

        s = None
        if self.mse_bits:
            rq = torch.einsum("hij,bhqj->bhqi", self.rotation.to(q.dtype), q)          # Π q
            lv = self.levels.to(dtype=q.dtype, device=q.device).expand(q.shape[1], -1)
            s = level_scores(rq, codes["codes"], lv, self.mse_bits, self.dim) * codes["norm"].to(q.dtype).unsqueeze(-2)
        if self.sketch is not None:
            t = qjl_inner_product(q, codes["signs"], codes["residual_norm"], self.sketch)
            s = t if s is None else s + t
        return s


# ------------------------------------------------------------------------------ the codecs


def outlier_channels_by_rms(keys: Tensor, n: int) -> Tensor:
    """The `n` channels of largest rms over batch and tokens, per head, for calibration keys
    (B, H, T, d): int64 (H, n), sorted ascending."""
    k = check_tensor(keys, "keys", min_dim=4)
    if k.dim() != 4 or k.shape[0] * k.shape[2] == 0:
        raise ValueError(f"keys must have shape (B, H, T, d) with at least one token, got {tuple(keys.shape)}")
    n = check_positive_int(n, "n")
    if n >= k.shape[-1]:
        raise ValueError(f"n must be smaller than d = {k.shape[-1]}, got {n}")
    ms = k.double().pow(2).mean(dim=(0, 2))                                                # (H, d)
    return torch.sort(torch.topk(ms, n, dim=-1).indices, dim=-1).values


def _regular_channels(outlier_index: Tensor, d: int) -> Tensor:
    """Per head, the channels not in `outlier_index` (H, n_o), ascending: (H, d − n_o)."""
    keep = torch.ones(outlier_index.shape[0], d, dtype=torch.bool, device=outlier_index.device)
    keep.scatter_(1, outlier_index, False)
    return torch.arange(d, device=outlier_index.device).expand(outlier_index.shape[0], d)[keep].reshape(
        outlier_index.shape[0], d - outlier_index.shape[1])


@dataclass(frozen=True)
class _TurboQuant(KeyCodec):
    """Shared by TurboQuant_mse and TurboQuant_prod (module docstring). `rotation` / `sketch` belong
    to the regular channels (all channels without a split); `outlier_*` to the outlier instance."""

    uses_sketch: ClassVar[bool]

    bits: int
    rotation: Tensor | None = None
    sketch: Tensor | None = None
    outlier_index: Tensor | None = None
    outlier_bits: int | None = None
    outlier_rotation: Tensor | None = None
    outlier_sketch: Tensor | None = None
    side_dtype: torch.dtype = torch.float16
    parts: tuple = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "side_dtype", float_dtype(self.side_dtype, "side_dtype"))
        b = self._bits(self.bits, "bits")
        anchor = self.rotation if self.rotation is not None else self.sketch
        if anchor is None:
            raise CodecError("rotation (or, for b = 1 TurboQuant_prod, sketch) is required")
        a = check_tensor(anchor, "rotation" if self.rotation is not None else "sketch", min_dim=3)
        H, d_r = a.shape[0], a.shape[-1]
        if self.outlier_index is None:
            if any(t is not None for t in (self.outlier_bits, self.outlier_rotation, self.outlier_sketch)):
                raise CodecError("outlier_bits, outlier_rotation and outlier_sketch need outlier_index")
            parts = [("", None, self._instance(b, d_r, H, self.rotation, self.sketch, ""))]
        else:
            oi = self.outlier_index
            if (not isinstance(oi, Tensor) or oi.dtype != torch.int64 or oi.dim() != 2 or oi.shape[0] != H
                    or oi.shape[1] < 1):
                raise CodecError(f"outlier_index must be an int64 tensor (H={H}, n_o ≥ 1), got "
                                 f"{tuple(oi.shape) if isinstance(oi, Tensor) else type(oi).__name__}")
            n_o = oi.shape[1]
            d = d_r + n_o
            srt = torch.sort(oi, dim=-1).values
            if int(oi.min()) < 0 or int(oi.max()) >= d or bool((srt[:, 1:] == srt[:, :-1]).any()):
                raise CodecError(f"outlier_index must hold {n_o} distinct channels in [0, {d}) per head")
            if self.outlier_bits is None:
                raise CodecError("outlier_bits is required with outlier_index")
            bo = self._bits(self.outlier_bits, "outlier_bits")
            parts = [("", _regular_channels(oi, d), self._instance(b, d_r, H, self.rotation, self.sketch, "")),
                     ("outlier_", oi, self._instance(bo, n_o, H, self.outlier_rotation, self.outlier_sketch,
                                                     "outlier_"))]
        object.__setattr__(self, "parts", tuple(parts))

    @staticmethod
    def _bits(value: object, name: str) -> int:
        try:
            return check_bits(value, name, maximum=MAX_TQ_BITS)
        except ValueError as exc:
            raise CodecError(str(exc)) from exc

    def _instance(self, bits: int, d_i: int, H: int, rotation: Tensor | None, sketch: Tensor | None,
                  prefix: str) -> TurboQuantInstance:
        mse_bits = bits - 1 if self.uses_sketch else bits
        if mse_bits:
            if rotation is None:
                raise CodecError(f"{prefix}rotation is required (the MSE stage has {mse_bits} bits)")
            R = check_tensor(rotation, f"{prefix}rotation", min_dim=3)
            if R.shape != (H, d_i, d_i):
                raise CodecError(f"{prefix}rotation must have shape (H, d_i, d_i) = {(H, d_i, d_i)}, "
                                 f"got {tuple(R.shape)}")
            try:
                check_orthogonal(rotation, f"{prefix}rotation")
            except ValueError as exc:
                raise CodecError(str(exc)) from exc
            if d_i < 3:
                raise CodecError(f"{'outlier_index' if prefix else 'dim'}: the {'outlier' if prefix else 'regular'} "
                                 f"instance has {d_i} channels; its sphere codebook needs at least 3")
        elif rotation is not None:
            raise CodecError(f"{prefix}rotation must be None: a {bits}-bit TurboQuant_prod has no MSE stage")
        if self.uses_sketch:
            if sketch is None:
                raise CodecError(f"{prefix}sketch is required for TurboQuant_prod")
            S = check_tensor(sketch, f"{prefix}sketch", min_dim=3)
            if S.shape != (H, d_i, d_i):
                raise CodecError(f"{prefix}sketch must have shape (H, d_i, d_i) = {(H, d_i, d_i)}, "
                                 f"got {tuple(S.shape)}")
        elif sketch is not None:
            raise CodecError(f"{prefix}sketch must be None for TurboQuant_mse")
        return TurboQuantInstance(dim=d_i, mse_bits=mse_bits, rotation=rotation, sketch=sketch,
                                  side_dtype=self.side_dtype)

    @classmethod
    def random(cls, heads: int, dim: int, bits: int, seed: int = 0, *, outlier_index: Tensor | None = None,
               outlier_bits: int | None = None, side_dtype: torch.dtype = torch.float16):
        """A data-free codec from `seed`: per head a Haar rotation (MSE stage) and, for prod, an
        i.i.d. 𝒩(0, 1) sketch; with `outlier_index` (H, n_o) (e.g. `outlier_channels_by_rms` of
        calibration keys) a second, independent instance on those channels at `outlier_bits`."""
        heads = check_positive_int(heads, "heads")
        dim = check_positive_int(dim, "dim")
        b = cls._bits(bits, "bits")
        if outlier_index is not None and outlier_bits is None:
            raise CodecError("outlier_bits is required with outlier_index")
        n_o = 0 if outlier_index is None else int(outlier_index.shape[-1])
        if n_o >= dim:
            raise CodecError(f"outlier_index must leave regular channels: n_o = {n_o} ≥ dim = {dim}")
        g = torch.Generator().manual_seed(int(seed))

        def stage_tensors(bits_i: int | None, d_i: int) -> tuple[Tensor | None, Tensor | None]:
            if bits_i is None:
                return None, None
            mse = bits_i - 1 if cls.uses_sketch else bits_i
            rot = torch.stack([random_orthogonal(d_i, g) for _ in range(heads)]) if mse else None
            sk = torch.stack([qjl_sketch(d_i, d_i, g, "gaussian") for _ in range(heads)]) if cls.uses_sketch else None
            return rot, sk

        rot, sk = stage_tensors(b, dim - n_o)
        orot, osk = stage_tensors(None if outlier_index is None else cls._bits(outlier_bits, "outlier_bits"), n_o)
        return cls(bits=b, rotation=rot, sketch=sk, outlier_index=outlier_index,
                   outlier_bits=None if outlier_index is None else outlier_bits, outlier_rotation=orot,
                   outlier_sketch=osk, side_dtype=side_dtype)

    # -- shape -----------------------------------------------------------------------------
    @property
    def heads(self) -> int:  # type: ignore[override]
        return (self.rotation if self.rotation is not None else self.sketch).shape[0]

    @property
    def dim(self) -> int:  # type: ignore[override]
        return sum(inst.dim for _, _, inst in self.parts)

    @property
    def outlier_channels(self) -> int:
        return 0 if self.outlier_index is None else self.outlier_index.shape[1]

    def to(self, device: torch.device | str):
        moved = {name: (t.to(device) if isinstance(t, Tensor) else None)
                 for name, t in (("rotation", self.rotation), ("sketch", self.sketch),
                                 ("outlier_index", self.outlier_index), ("outlier_rotation", self.outlier_rotation),
                                 ("outlier_sketch", self.outlier_sketch))}
        return replace(self, **moved)

    @staticmethod
    def _select(x: Tensor, channels: Tensor | None) -> Tensor:
        """`x[..., channels_h]` per head for x (B, H, N, d)."""
        if channels is None:
            return x
        idx = channels.to(x.device)[None, :, None, :].expand(x.shape[0], -1, x.shape[2], -1)
        return torch.gather(x, -1, idx)

    # -- the code ------------------------------------------------------------------------
    def code_fields(self) -> dict[str, int]:
        return {prefix + name: 1 for prefix, _, inst in self.parts for name in inst.fields()}

    def encode(self, keys: Tensor) -> Codes:
        """Code keys (B, H, T, d) per token (module docstring); computed in float64."""
        k = check_keys(keys, self.heads, self.dim).double()
        codes: Codes = {}
        for prefix, channels, inst in self.parts:
            for name, t in inst.encode(self._select(k, channels)).items():
                codes[prefix + name] = t
        return codes

    def decode(self, codes: Codes) -> Tensor:
        """`k̂` (float32, (B, H, T, d)); each instance's channels put back in place."""
        out = None
        for prefix, channels, inst in self.parts:
            part = inst.decode({name: codes[prefix + name] for name in inst.fields()})
            if channels is None:
                return part
            if out is None:
                out = part.new_zeros(*part.shape[:-1], self.dim)
            idx = channels.to(part.device)[None, :, None, :].expand(part.shape[0], -1, part.shape[2], -1)
            out.scatter_(-1, idx, part)
        return out

    def scores(self, q: Tensor, codes: Codes) -> Tensor:
        """The sum over instances of each instance's `⟪q_i, k̂_i⟫` (module docstring)."""
        qf = check_queries(q, self.heads, self.dim)
        s = None
        for prefix, channels, inst in self.parts:
            t = inst.scores(self._select(qf, channels), {name: codes[prefix + name] for name in inst.fields()})
            s = t if s is None else s + t
        return s

    def token_bits(self) -> float:
        """Σ over instances: packed MSE indices + norm, and for prod the `d_i` sign bits + ‖r‖."""
        return float(sum(inst.token_bits() for _, _, inst in self.parts))

    # -- artifacts -----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"heads": self.heads, "dim": self.dim, "bits": self.bits, "outlier_channels": self.outlier_channels,
                "outlier_bits": self.outlier_bits, "side_dtype": dtype_name(self.side_dtype)}

    def parameters(self) -> dict[str, Tensor]:
        named = (("rotation", self.rotation), ("sketch", self.sketch), ("outlier_index", self.outlier_index),
                 ("outlier_rotation", self.outlier_rotation), ("outlier_sketch", self.outlier_sketch))
        return {name: t for name, t in named if t is not None}

    @classmethod
    def from_parameters(cls, settings: dict[str, Any], tensors: dict[str, Tensor]):
        H = require_setting(settings, "heads", int)
        d = require_setting(settings, "dim", int)
        b = cls._bits(require_setting(settings, "bits", int), "bits")
        n_o = require_setting(settings, "outlier_channels", int)
        if not 0 <= n_o < d:
            raise CodecError(f"setting 'outlier_channels' must be in [0, {d}), got {n_o}")
        bo = None if n_o == 0 else cls._bits(require_setting(settings, "outlier_bits", int), "outlier_bits")
        expected = cls._expected_tensors(b, bo, H, d - n_o, n_o)
        unknown = sorted(set(tensors) - set(expected))
        if unknown:
            raise CodecError(f"unexpected tensor(s) {unknown}; expected {sorted(expected)}")
        got = {name: require_tensor(tensors, name, shape) for name, shape in expected.items()}
        try:
            return cls(bits=b, outlier_bits=bo, side_dtype=require_setting(settings, "side_dtype", str), **got)
        except ValueError as exc:
            raise CodecError(str(exc)) from exc

    @classmethod
    def _expected_tensors(cls, b: int, bo: int | None, H: int, d_r: int, n_o: int) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for prefix, bits_i, d_i in (("", b, d_r), ("outlier_", bo, n_o)):
            if bits_i is None:
                continue
            if (bits_i - 1 if cls.uses_sketch else bits_i) > 0:
                out[prefix + "rotation"] = (H, d_i, d_i)
            if cls.uses_sketch:
                out[prefix + "sketch"] = (H, d_i, d_i)
        if bo is not None:
            out["outlier_index"] = (H, n_o)
        return out

    def label(self) -> str:
        name = self.kind.replace("turboquant_", "turboquant-")
        if self.outlier_index is None:
            return f"{name} b={self.bits}"
        return (f"{name} b={self.code_bits() / self.dim:g} "
                f"({self.outlier_channels}@{self.outlier_bits} + {self.dim - self.outlier_channels}@{self.bits})")

    def code_bits(self) -> int:
        """The index and sign bits of one token alone, no norms: what the paper's "bits" count
        (`b·d`; 32·3 + 96·2 = 288 = 2.25·128 for the split 32@3 + 96@2)."""
        if self.outlier_index is None:
            return self.bits * self.dim
        return self.bits * (self.dim - self.outlier_channels) + self.outlier_bits * self.outlier_channels


@dataclass(frozen=True)
class TurboQuantMSE(_TurboQuant):
    """TurboQuant_mse (Alg. 1; module docstring). Tensors: `rotation` (H, d_r, d_r) and, with a
    split, `outlier_index` (H, n_o) and `outlier_rotation` (H, n_o, n_o). Settings: `bits` b ∈
    {1, …, 4}, `outlier_bits`, `side_dtype` of the norm (float16).

    Bits per token and head: `8⌈d b/8⌉ + 16` — b + 0.125 per coordinate at d = 128, b + 0.25 at
    d = 64; with the split 32@3 + 96@2 (d = 128: the paper's "2.5-bit" example, 2.25 code bits)
    2.25 + 32/128 = 2.5, and 64@3 + 64@2 (2.5 code bits) 2.75."""

    kind: ClassVar[str] = "turboquant_mse"
    uses_sketch: ClassVar[bool] = False


@dataclass(frozen=True)
class TurboQuantProd(_TurboQuant):
    """TurboQuant_prod (Alg. 2; module docstring): the `(b−1)`-bit MSE code and QJL (m = d, i.i.d.
    Gaussian sketch) on its residual. Tensors: `rotation` (H, d_r, d_r) — absent for b = 1 —
    `sketch` (H, d_r, d_r), and the `outlier_*` counterparts with a split.

    Bits per token and head: `8⌈d(b−1)/8⌉ + 16 (if b > 1) + 8⌈d/8⌉ + 16` — b + 0.25 per coordinate
    at d = 128 (b > 1), b + 0.5 at d = 64; the split 32@3 + 96@2 is 2.25 + 64/128 = 2.75, and
    64@3 + 64@2 is 2.5 + 0.5 = 3.0."""

    kind: ClassVar[str] = "turboquant_prod"
    uses_sketch: ClassVar[bool] = True

    def mse_stage(self) -> TurboQuantMSE:
        """The `(b−1)`-bit TurboQuant_mse this code starts with (same rotations and split)."""
        if self.bits < 2 or (self.outlier_bits is not None and self.outlier_bits < 2):
            raise CodecError("mse_stage: a 1-bit TurboQuant_prod instance has no MSE stage")
        return TurboQuantMSE(bits=self.bits - 1, rotation=self.rotation, outlier_index=self.outlier_index,
                             outlier_bits=None if self.outlier_bits is None else self.outlier_bits - 1,
                             outlier_rotation=self.outlier_rotation, side_dtype=self.side_dtype)
