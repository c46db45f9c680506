"""The key store of one layer: which tokens are kept exact, which are coded, and attention logits
read straight from the codes.

The store owns the policy; a codec (`impl.cache.codecs.base.KeyCodec`) owns the code. For keys
(B, H, T, d) appended in token order:

* the first `n_protect` tokens (attention sinks) are kept exact (front_token_protection);
* of the `n` tokens after them, the most recent `recent_count(n, window, flush_block)` are kept
  exact — `W + ((n − W) mod F)` once `n ≥ W`, all `n` before — and the others are coded, `F` tokens
  at a time (`F` a multiple of the codec's `token_block`). `F = 1` keeps exactly the last `W`
  tokens exact (a sliding window); KIVI's residual is `W = 0, F = R`: tokens are coded `R` at a
  time, so between 0 and `R − 1` stay exact.

Exact tokens are stored in `exact_dtype` (default: the dtype of the first keys, so they are
bit-exact). Logits come from the codes (`KeyCodec.scores`) for coded tokens and from the exact
keys for the rest; no full-precision copy of a coded token is kept.

`logits(q)` scores queries against the store as it stands (a decode step). `causal_logits(q)`
scores the queries of the last `append` as if each had been decoded in turn: query `t` sees the
tokens the policy had coded when `t` was appended, and the rest exact — so a prefill gives the
logits a token-by-token decode would. For that, an `append` made with `keep_call_keys` holds the
exact keys of its own tokens (and of the exact tail before it) until `release_call_keys()`; the
attention function releases them as soon as it has used them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from impl.cache.codecs.base import Codes, KeyCodec, bits_of, check_keys
from impl.validation import check_positive_int, check_tensor


def recent_count(n: int, window: int, flush_block: int) -> int:
    """Exact tail tokens after `n` tokens (after the protected ones): `W + ((n − W) mod F)` for
    `n ≥ W`, else `n`. The coded count `n − recent_count` is then a multiple of `F`."""
    if n <= window:
        return n
    return window + (n - window) % flush_block


class Growable:
    """A tensor that grows along dim 2 with amortised doubling (appending n rows costs O(n), not a copy
    of everything held); `view()` is the filled part."""

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
    """Exact memory of a key store. `bits_per_coordinate` = bits of the stored keys (codes, side
    values, exact tokens) per key coordinate held; `nbytes_allocated` includes spare capacity of the
    growable buffers; `codec_bytes` is the per-layer constants (mean, rotation, …), which do not
    grow with the context; `breakdown` maps each buffer to its bytes."""

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


def check_exact_dtype(dtype: object) -> torch.dtype | None:
    """None (the keys' own dtype) or a floating dtype: an integer dtype would silently truncate the
    keys that are meant to be kept exact."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"exact_dtype must be None or a floating-point torch dtype (exact keys are kept in it), "
                         f"got {dtype!r}")
    return dtype


class KeyStore:
    """The keys of one layer, shape (B, H, T, d) logically (see the module docstring).

    `codec`: the layer's `KeyCodec`; `n_protect`: exact front tokens; `window` W and `flush_block` F
    (default: the codec's `token_block`): the recent-token policy; `exact_dtype`: storage of exact
    tokens; `keep_call_keys`: hold each append's exact keys for `causal_logits` until released.
    """

    def __init__(self, codec: KeyCodec, n_protect: int = 0, window: int = 0, flush_block: int | None = None,
                 exact_dtype: torch.dtype | None = None, keep_call_keys: bool = False):
        if not isinstance(codec, KeyCodec):
            raise ValueError(f"codec must be a KeyCodec, got {type(codec).__name__}")
        self.codec = codec
        self.n_protect = check_positive_int(n_protect, "n_protect", minimum=0)
        self.window = check_positive_int(window, "window", minimum=0)
        block = codec.token_block if flush_block is None else check_positive_int(flush_block, "flush_block")
        if block % codec.token_block:
            raise ValueError(f"flush_block must be a multiple of the codec's token block ({codec.token_block}), got {block}")
        self.flush_block = block
        self.exact_dtype = check_exact_dtype(exact_dtype)
        self.keep_call_keys = bool(keep_call_keys)
        self._protected: Growable | None = None
        self._codes: dict[str, Growable] = {}
        self._coded = 0
        self._recent: Tensor | None = None
        self._call: tuple[int, Tensor] | None = None   # (first position, exact keys) of the last append
        self._call_tokens = 0
        self.batch: int | None = None

    # -- writing -------------------------------------------------------------------------
    def append(self, keys: Tensor) -> None:
        """Append keys of shape (B, H, T, d), T ≥ 1, in token order, and code the tokens the policy
        no longer keeps exact."""
        k = check_keys(keys, self.codec.heads, self.codec.dim)
        if k.shape[2] < 1:
            raise ValueError(f"keys must hold at least one token, got shape {tuple(keys.shape)}")
        if self.batch is None:
            self.batch = k.shape[0]
            if self.exact_dtype is None:
                self.exact_dtype = keys.dtype if keys.dtype.is_floating_point else torch.float32
            if self.codec.device != k.device:
                self.codec = self.codec.to(k.device)
        elif k.shape[0] != self.batch:
            raise ValueError(f"keys must have batch size {self.batch} (as before), got {k.shape[0]}")
        exact = keys.to(self.exact_dtype)
        if not bool(torch.isfinite(exact).all()):
            raise ValueError(f"keys overflow the exact dtype {self.exact_dtype} (largest finite value "
                             f"{torch.finfo(self.exact_dtype).max:.4g})")
        self._call = None
        self._call_tokens = k.shape[2]
        n_prot = max(0, min(self.n_protect - self.protected_length, k.shape[2]))
        if n_prot:
            if self._protected is None:
                self._protected = Growable(exact[:, :, :n_prot], capacity=self.n_protect)
            self._protected.append(exact[:, :, :n_prot])
        rest = exact[:, :, n_prot:]
        if not rest.shape[2]:
            return
        recent = rest if self._recent is None else torch.cat([self._recent, rest], dim=2)
        if self.keep_call_keys:
            self._call = (self.protected_length + self._coded, recent)
        n = self._coded + recent.shape[2]
        move = recent.shape[2] - recent_count(n, self.window, self.flush_block)
        if move > 0:
            codes = self.codec.encode(recent[:, :, :move])
            for name, t in codes.items():
                if name not in self._codes:
                    self._codes[name] = Growable(t)
                self._codes[name].append(t)
            self._coded += move
        self._recent = recent[:, :, move:].clone() if recent.shape[2] > move else None

    def release_call_keys(self) -> None:
        """Drop the exact keys held for `causal_logits` (done by the attention function)."""
        self._call = None

    # -- reading -------------------------------------------------------------------------
    @property
    def protected_length(self) -> int:
        return self._protected.length if self._protected is not None else 0

    @property
    def coded_length(self) -> int:
        return self._coded

    @property
    def recent_length(self) -> int:
        return self._recent.shape[2] if self._recent is not None else 0

    def __len__(self) -> int:
        return self.protected_length + self._coded + self.recent_length

    def protected_keys(self) -> Tensor | None:
        return self._protected.view() if self._protected is not None else None

    def recent_keys(self) -> Tensor | None:
        return self._recent

    def codes(self) -> Codes | None:
        """The codes of the coded tokens (views of the store's buffers), or None."""
        if not self._coded:
            return None
        return {name: g.view() for name, g in self._codes.items()}

    def dequantized_keys(self) -> Tensor:
        """All keys as attention sees them after the last append (float32, (B, H, T, d)): protected
        and recent keys exact, coded keys `k̂`. This materialises the context; the attention path
        uses `logits` / `causal_logits` instead."""
        parts = []
        if self._protected is not None:
            parts.append(self._protected.view().float())
        codes = self.codes()
        if codes is not None:
            parts.append(self.codec.decode(codes))
        if self._recent is not None:
            parts.append(self._recent.float())
        if not parts:
            raise ValueError("the store is empty")
        return torch.cat(parts, dim=2)

    def _queries(self, q: Tensor) -> Tensor:
        qc = check_tensor(q, "q", min_dim=5)
        if qc.dim() != 5 or qc.shape[1] != self.codec.heads or qc.shape[-1] != self.codec.dim:
            raise ValueError(f"q must have shape (B, H={self.codec.heads}, G, Q, d={self.codec.dim}), got {tuple(q.shape)}")
        if self.batch is not None and qc.shape[0] != self.batch:
            raise ValueError(f"q must have batch size {self.batch} (the store's), got {qc.shape[0]}")
        return qc if qc.dtype == torch.float64 else qc.float()

    def _parts(self, qf: Tensor, exact_offsets: bool) -> tuple[list[Tensor], Tensor]:
        """Logit blocks [protected, coded, recent] for queries (B, H, N, d), and the offset (B, H, N, 1)."""
        offset = self.codec.offset(qf).unsqueeze(-1)

        def exact(keys: Tensor) -> Tensor:
            out = qf @ keys.to(qf.dtype).transpose(-1, -2)
            return out if exact_offsets else out - offset

        parts = []
        if self._protected is not None:
            parts.append(exact(self._protected.view()))
        codes = self.codes()
        if codes is not None:
            s = self.codec.scores(qf, codes)
            parts.append(s + offset if exact_offsets else s)
        if self._recent is not None:
            parts.append(exact(self._recent))
        return parts, offset

    def logits(self, q: Tensor, *, exact_offsets: bool = False) -> Tensor:
        """`⟪q, k̂_t⟫ − offset` for every query and stored token: exact keys for protected and recent
        tokens, the codes for the rest (never decoded to full precision).

        ``q`` has shape (B, H, G, Q, d) (G query heads share each kv head); the result is
        (B, H, G, Q, T), float32. The codec's offset (e.g. `⟪q, m⟫`) is the same for every token,
        so softmax ignores it (softmax_shift); it is dropped — from the exact tokens too, so every
        token is on the same footing — unless ``exact_offsets``, which gives `⟪q, k̂_t⟫` itself.
        """
        qc = self._queries(q)
        B, H, G, Q, d = qc.shape
        if not len(self):
            raise ValueError("the store is empty")
        parts, _ = self._parts(qc.reshape(B, H, G * Q, d), exact_offsets)
        return torch.cat(parts, dim=-1).reshape(B, H, G, Q, -1)

    def causal_logits(self, q: Tensor, *, exact_offsets: bool = False) -> Tensor:
        """Logits of the queries of the last `append` (its last Q tokens), each against the store as
        it stood when that query's token was appended: coded tokens the policy had coded by then,
        exact keys for the rest (see the module docstring). Needs `keep_call_keys`; keys after a
        query's own position get logits too (the causal mask removes them). Shapes as `logits`."""
        qc = self._queries(q)
        B, H, G, Q, d = qc.shape
        if Q > self._call_tokens:
            raise ValueError(f"q holds {Q} query positions, but the last append added {self._call_tokens} tokens")
        if self._call is None:
            if self.keep_call_keys and self.recent_length == 0 and self._coded == 0:
                return self.logits(q, exact_offsets=exact_offsets)   # protected tokens only
            if not self.keep_call_keys:
                raise ValueError("causal_logits needs a store made with keep_call_keys=True")
            raise ValueError("causal_logits: the exact keys of the last append were released")
        qf = qc.reshape(B, H, G * Q, d)
        parts, offset = self._parts(qf, exact_offsets)
        out = torch.cat(parts, dim=-1)
        e0, call_exact = self._call
        P, T = self.protected_length, len(self)
        end = P + self._coded                                  # tokens [e0, end) are coded now
        if end > e0:
            ov = qf @ call_exact[:, :, : end - e0].to(qf.dtype).transpose(-1, -2)
            if not exact_offsets:
                ov = ov - offset
            t = torch.arange(T - Q, T, device=qf.device)       # query positions
            n_t = (t + 1 - P).clamp(min=0)
            coded_t = torch.tensor([n - recent_count(int(n), self.window, self.flush_block) for n in n_t.tolist()],
                                   device=qf.device)
            j = torch.arange(e0, end, device=qf.device)
            exact_mask = (j[None, :] >= P + coded_t[:, None])                      # (Q, ov)
            exact_mask = exact_mask.repeat(G, 1)                                   # rows are (G, Q) flattened
            out[..., e0:end] = torch.where(exact_mask, ov, out[..., e0:end])
        return out.reshape(B, H, G, Q, -1)

    # -- accounting ----------------------------------------------------------------------
    def memory(self) -> MemoryReport:
        """Exact memory of what the store holds between calls (the keys held for one call's
        `causal_logits` are not part of the cache and are released by the attention function)."""
        buffers: dict[str, Growable | Tensor | None] = {"protected": self._protected, **self._codes,
                                                         "recent": self._recent}
        used, allocated = {}, 0
        for name, b in buffers.items():
            if b is None:
                used[name] = 0
            elif isinstance(b, Growable):
                used[name] = b.nbytes_used
                allocated += b.nbytes_allocated
            else:
                used[name] = b.numel() * b.element_size()
                allocated += used[name]
        T = len(self)
        coords = (self.batch or 0) * self.codec.heads * T * self.codec.dim
        return MemoryReport(tokens=T, coordinates=coords, nbytes_used=sum(used.values()), nbytes_allocated=allocated,
                            codec_bytes=self.codec.parameter_bytes(), breakdown=used)

    def expected_bits_per_coordinate(self, tokens: int | None = None) -> float:
        """The memory formula: exact tokens at their dtype's width, coded tokens at the codec's
        `token_bits() / d`, averaged over the tokens held (no hidden copy) — or over `tokens` tokens,
        the bits the policy would hold at that length (0 for none). Exact tokens count at the keys'
        dtype before the first append (`exact_dtype` None), at float32 if that is unknown."""
        T = len(self) if tokens is None else check_positive_int(tokens, "tokens", minimum=0)
        if T == 0:
            return 0.0
        exact_dtype = self.exact_dtype if self.exact_dtype is not None else torch.float32
        protected = min(self.n_protect, T)
        n = T - protected
        recent = recent_count(n, self.window, self.flush_block)
        coded = n - recent
        return ((protected + recent) * bits_of(exact_dtype) + coded * self.codec.token_bits() / self.codec.dim) / T


def tensors_held(obj: object, _seen: set[int] | None = None) -> list[Tensor]:
    """Every tensor reachable from `obj` through attributes, dicts, lists and tuples (each once)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return []
    out: list[Tensor] = []
    for item in items:
        out += tensors_held(item, seen)
    return out


def full_precision_rows(obj: object, keys: Tensor) -> int:
    """How many of the key rows `keys` (…, d) — e.g. the original keys of the tokens a store has
    coded — appear bit for bit in some floating tensor reachable from `obj`, compared in that
    tensor's dtype (a float16 copy of a float32 key counts). A store that keeps no full-precision
    copy of a coded token gives 0; this measures that claim rather than assuming it."""
    rows = keys.reshape(-1, keys.shape[-1])
    d = rows.shape[-1]
    found = torch.zeros(rows.shape[0], dtype=torch.bool)
    for t in tensors_held(obj):
        if not t.is_floating_point() or t.dim() < 1 or t.shape[-1] != d or t.numel() == 0:
            continue
        held = t.detach().reshape(-1, d).contiguous().cpu()
        stored = {row.numpy().tobytes() for row in held.view(torch.uint8)}
        want = rows.to(held.dtype).contiguous().cpu().view(torch.uint8)
        found |= torch.tensor([row.numpy().tobytes() in stored for row in want], dtype=torch.bool)
    return int(found.sum())
