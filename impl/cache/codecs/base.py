"""The key-codec interface: what every key code — ours and the published peers — provides to the cache.

Following transformers' split between a cache layer and its quantizer, the store (`impl.cache.store`)
owns the policy (which tokens are kept exact, when tokens are coded, growth, memory) and a codec
owns the code of one decoder layer's keys, for its `heads` kv heads of dimension `dim`:

* `encode(keys)` — keys (B, H, T, d), `T` a multiple of `token_block` — to `Codes`, a dict of
  tensors whose dimension 2 runs over tokens (or over groups of `token_block` tokens);
* `decode(codes)` — the dequantised keys `k̂` (float32, (B, H, T, d));
* `scores(q, codes)` — `s` with `s + offset(q)[..., None] = ⟪q, k̂_t⟫` for queries (B, H, Q, d),
  computed from the codes without materialising `k̂`; `offset(q)` (B, H, Q) is the part that is the
  same for every token (e.g. `⟪q, m⟫` for a codec that subtracts a mean; 0 by default), which
  softmax ignores (softmax_shift) — the store keeps or drops it;
* `token_bits()` — the bits one coded token of one head occupies, every stored value counted
  (codes, scales, zero points, norms, coefficients), as a closed form: the cache's memory report
  must equal it;
* `parameters()` / `settings()` and the class method `from_parameters` — what an artifact stores.

`Codes` fields are plain tensors so the store can grow them along dimension 2 without knowing
what they mean; `code_fields()` names them, with the dimension-2 granularity of each (1 for
per-token values, `token_block` for per-group values).
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from impl.validation import check_tensor

Codes = dict[str, Tensor]


class CodecError(ValueError):
    """A codec was built or used with inconsistent settings or tensors; the message names them."""


def check_keys(keys: Tensor, heads: int, dim: int, name: str = "keys") -> Tensor:
    """Keys of shape (B, H, T, d) with the codec's H and d, finite, in float32/float64."""
    k = check_tensor(keys, name, min_dim=4)
    if not k.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {k.dtype}")
    if k.dim() != 4 or k.shape[1] != heads or k.shape[3] != dim:
        raise ValueError(f"{name} must have shape (B, H={heads}, T, d={dim}), got {tuple(keys.shape)}")
    return k


def check_queries(q: Tensor, heads: int, dim: int, name: str = "q") -> Tensor:
    """Queries of shape (B, H, Q, d), finite, as float32 (float64 kept)."""
    qc = check_tensor(q, name, min_dim=4)
    if not qc.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {qc.dtype}")
    if qc.dim() != 4 or qc.shape[1] != heads or qc.shape[3] != dim:
        raise ValueError(f"{name} must have shape (B, H={heads}, Q, d={dim}), got {tuple(q.shape)}")
    return qc if qc.dtype == torch.float64 else qc.float()


def check_finite_after_rounding(x: Tensor, what: str, dtype: torch.dtype) -> None:
    """Raise when rounding to `dtype` overflowed: `what` names the stored value."""
    if not bool(torch.isfinite(x).all()):
        big = torch.finfo(dtype).max
        raise ValueError(f"keys: the {what} overflows {dtype} (largest finite value {big:.4g}); the keys are "
                         f"too large for this storage dtype — rescale them or store side values in float32")


class KeyCodec(abc.ABC):
    """The code of one layer's keys (see the module docstring)."""

    kind: ClassVar[str]
    """Registry name of the codec family (`impl.cache.codecs.CODECS`)."""

    token_block: int = 1
    """Tokens encoded together (KIVI: its group size G; 1 for per-token codes)."""

    heads: int
    dim: int

    # -- the code ------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, keys: Tensor) -> Codes:
        """Code keys (B, H, T, d), `T` a multiple of `token_block`."""

    @abc.abstractmethod
    def decode(self, codes: Codes) -> Tensor:
        """The dequantised keys `k̂`, float32, (B, H, T, d)."""

    @abc.abstractmethod
    def scores(self, q: Tensor, codes: Codes) -> Tensor:
        """`s` with `s + offset(q)[..., None] = ⟪q, k̂_t⟫`; `q` (B, H, Q, d) → s (B, H, Q, T)."""

    def offset(self, q: Tensor) -> Tensor:
        """The token-independent part of `⟪q, k̂_t⟫` (B, H, Q); zero unless a codec overrides it."""
        qc = check_queries(q, self.heads, self.dim)
        return qc.new_zeros(qc.shape[:-1])

    @abc.abstractmethod
    def code_fields(self) -> dict[str, int]:
        """Field name → tokens per entry along dimension 2 (1, or `token_block`)."""

    @abc.abstractmethod
    def token_bits(self) -> float:
        """Bits one coded token of one kv head occupies, every stored value counted."""

    # -- what an artifact stores ---------------------------------------------------------
    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-able settings (everything but tensors) that rebuild the codec with `parameters()`."""

    @abc.abstractmethod
    def parameters(self) -> dict[str, Tensor]:
        """The codec's fitted tensors (per-layer constants, not per token)."""

    @classmethod
    @abc.abstractmethod
    def from_parameters(cls, settings: dict[str, Any], tensors: dict[str, Tensor]) -> "KeyCodec":
        """Rebuild from `settings()` and `parameters()`; CodecError naming the field otherwise."""

    @abc.abstractmethod
    def to(self, device: torch.device | str) -> "KeyCodec":
        """The same codec with its tensors on `device`."""

    # -- derived -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        params = self.parameters()
        return next(iter(params.values())).device if params else torch.device("cpu")

    def bits_per_coordinate(self) -> float:
        """`token_bits() / d`: the bits per key coordinate of a coded token."""
        return self.token_bits() / self.dim

    def parameter_bytes(self) -> int:
        """Bytes of the per-layer constants (they do not grow with the context)."""
        return sum(t.numel() * t.element_size() for t in self.parameters().values())

    def label(self) -> str:
        """A short human-readable description, e.g. ``"kivi b=2 G=32"``."""
        s = self.settings()
        return f"{self.kind} " + " ".join(f"{k}={v}" for k, v in s.items() if k not in ("heads", "dim"))


def bits_of(dtype: torch.dtype) -> int:
    """Storage bits of one element of `dtype` (bool counts 8)."""
    if dtype == torch.bool:
        return 8
    if dtype.is_floating_point:
        return torch.finfo(dtype).bits
    return torch.iinfo(dtype).bits


def float_dtype(name: str | torch.dtype, field: str) -> torch.dtype:
    """A storage dtype for side values from its name; CodecError otherwise."""
    table = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if isinstance(name, torch.dtype):
        if name in table.values():
            return name
    elif name in table:
        return table[name]
    raise CodecError(f"{field} must be one of {sorted(table)}, got {name!r}")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def require_tensor(tensors: dict[str, Tensor], name: str, shape: tuple[int, ...]) -> Tensor:
    """`tensors[name]` with the given shape; CodecError naming the field otherwise."""
    if name not in tensors:
        raise CodecError(f"tensor {name!r} is missing")
    t = tensors[name]
    if not isinstance(t, Tensor) or tuple(t.shape) != tuple(shape):
        got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise CodecError(f"tensor {name!r} has shape {got}, expected {tuple(shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise CodecError(f"tensor {name!r} holds NaN or Inf")
    return t


def require_setting(settings: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """`settings[name]` of the given Python type; CodecError naming the field otherwise."""
    if name not in settings:
        raise CodecError(f"setting {name!r} is missing")
    v = settings[name]
    if isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise CodecError(f"setting {name!r} must be {kind}, got {v!r}")
    if not isinstance(v, kind):
        raise CodecError(f"setting {name!r} must be {kind}, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise CodecError(f"setting {name!r} must be finite, got {v!r}")
    return v
