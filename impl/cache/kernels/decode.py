"""One decode step of attention over a `KeyStore`, in one pass over the codes (online_softmax_merge).

For each query head (G per kv head, one query each) the attention output is

    o = Σ_t softmax(x)_t v_t,   x_t = cap(scaling · ⟪q, k̂_t⟫ − scaling · ⟪q, m⟫) + mask_t,

`cap(y) = c·tanh(y/c)` with a softcap `c` (Gemma-2), the identity without. Without a softcap the
offset `⟪q, m⟫` is the same for every token, so it changes nothing (softmax_shift) — exact tokens drop
it as coded ones do. `cap` is not shift-invariant, so with a softcap and a non-zero offset the logits
must keep it: `decode_attention` then takes the unfused path with exact offsets, and `attend_coded`
refuses the case. The context is summarised block by block as online-softmax states (`softmax.SoftmaxState`):
the protected and the recent exact tokens by torch (they are few), the coded tokens by the
compiled kernel (`cpu.decode_state` / `triton_kernels.decode_state`), which reads every code once
for all G query heads and never forms a key in floating point nor the whole logit row. The states
merge by `merge_softmax_blocks`; `o = N / Z`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from impl.attention import masked_softmax
from impl.cache.kernels.backend import backend_for, kernel_module
from impl.cache.kernels.fused import query_transform, transform_inputs
from impl.cache.kernels.softmax import (
    SoftmaxState,
    merge_softmax_blocks,
    softmax_block_state,
    softmax_output,
)
from impl.validation import check_tensor


class DecodeMask:
    """A mask for one query row per query head, as kept rows `keep` (B, Hm, T) bool (True = attend)
    or additive `bias` (B, Hm, T) float32 with −inf for masked tokens; Hm ∈ {1, H·G}."""

    def __init__(self, keep: Tensor | None, bias: Tensor | None):
        self.keep, self.bias = keep, bias

    @property
    def rows(self) -> Tensor | None:
        return self.keep if self.keep is not None else self.bias

    def block(self, lo: int, hi: int, B: int, H: int, G: int) -> Tensor | None:
        """The mask of tokens [lo, hi) shaped for logits (B, H, G, hi − lo)."""
        m = self.rows
        if m is None:
            return None
        m = m[..., lo:hi]
        return m.reshape(B, H, G, hi - lo) if m.shape[1] > 1 else m.reshape(B, 1, 1, hi - lo)


def decode_mask(mask: Tensor | None, B: int, Hq: int, T: int) -> DecodeMask:
    """Check the mask of `decode_attention` (ValueError naming ``mask``) and bring it to `DecodeMask`.

    Accepted: None; boolean (True = attend) or additive (transformers' 0 / large negative; anything
    at or below half the dtype's most negative value counts as −inf, the rule of
    `impl.attention.masked_softmax`), of shape (B, T) (key padding), (B, Hm, T) or (B, Hm, 1, T)
    (transformers' 4-D mask of a one-query step), with Hm ∈ {1, H·G} and B possibly 1."""
    if mask is None:
        return DecodeMask(None, None)
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    m = mask
    if m.dim() == 4:
        if m.shape[2] != 1:
            raise ValueError(f"mask must hold one query row (B, Hm, 1, T) for a decode step, got {tuple(mask.shape)}")
        m = m[:, :, 0]
    elif m.dim() == 2:
        m = m[:, None]
    elif m.dim() != 3:
        raise ValueError(f"mask must have shape (B, T), (B, Hm, T) or (B, Hm, 1, T), got {tuple(mask.shape)}")
    if m.shape[0] not in (1, B) or m.shape[1] not in (1, Hq) or m.shape[2] != T:
        raise ValueError(f"mask must have shape (B = {B} or 1, Hm = 1 or {Hq}, T = {T}) after dropping the query "
                         f"dimension, got {tuple(mask.shape)}")
    m = m.expand(B, m.shape[1], T)
    if m.dtype == torch.bool:
        return DecodeMask(m.contiguous(), None)
    if not m.dtype.is_floating_point:
        raise ValueError(f"mask must be boolean or floating-point (additive), got dtype {mask.dtype}")
    b = m.float()
    if bool(torch.isnan(b).any()):
        raise ValueError("mask must not contain NaN")
    b = torch.where(m <= torch.finfo(m.dtype).min / 2, torch.full_like(b, float("-inf")), b)
    return DecodeMask(None, b.contiguous())


def _check_step(H: int, d: int, batch: int | None, T: int, query: Tensor, values: Tensor, scaling: float,
                softcap: float | None) -> tuple[Tensor, int, int]:
    """Check a decode step's query (B, H, G, 1, d), values (B, H, T, dv), scaling and softcap
    (ValueError naming the argument); return the query in its compute dtype, B and G."""
    q = check_tensor(query, "query", min_dim=5)
    if q.dim() != 5 or q.shape[1] != H or q.shape[3] != 1 or q.shape[4] != d:
        raise ValueError(f"query must have shape (B, H = {H}, G, 1, d = {d}) (one decode step), got {tuple(query.shape)}")
    B, G = q.shape[0], q.shape[2]
    if batch is not None and B != batch:
        raise ValueError(f"query must have batch size {batch} (the store's), got {B}")
    if not isinstance(values, Tensor) or not values.dtype.is_floating_point:
        raise ValueError(f"values must be a floating-point tensor, got {getattr(values, 'dtype', type(values).__name__)}")
    if values.dim() != 4 or values.shape[:3] != (B, H, T):
        raise ValueError(f"values must have shape (B = {B}, H = {H}, T = {T}, dv), got {tuple(values.shape)}")
    if values.device != q.device:
        raise ValueError(f"values must be on the query's device {q.device}, got {values.device}")
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not math.isfinite(scaling):
        raise ValueError(f"scaling must be a finite number, got {scaling!r}")
    if softcap is not None and (isinstance(softcap, bool) or not isinstance(softcap, (int, float))
                                or not math.isfinite(softcap) or softcap <= 0):
        raise ValueError(f"softcap must be None or a positive number, got {softcap!r}")
    return q, B, G


def _check_store(store):
    from impl.cache.store import KeyStore

    if not isinstance(store, KeyStore):
        raise ValueError(f"store must be a KeyStore, got {type(store).__name__}")
    if len(store) == 0:
        raise ValueError("store: the store is empty")
    return store


def _kernel_backend(store, q: Tensor) -> str:
    from impl.cache.codecs.transform import TransformCodec

    if not isinstance(store.codec, TransformCodec) or store.coded_length == 0 or q.dtype != torch.float32:
        return "torch"
    return backend_for(q.device)


def _needs_offsets(codec, q: Tensor, softcap: float | None) -> bool:
    """Whether the logits must keep the offset `⟪q, m⟫`: a softcap (not shift-invariant) and a
    non-zero offset for some query; q (B, H, G, 1, d)."""
    return softcap is not None and bool((codec.offset(q.reshape(q.shape[0], q.shape[1], -1, q.shape[-1])) != 0).any())


def fused_decode_available(store, query: Tensor) -> bool:
    """Whether `decode_attention` runs the compiled CPU kernel for this store and query: a
    `TransformCodec`, CPU tensors, numba installed (the condition under which
    `impl.cache.hf.packed_attention` takes it for a one-query step)."""
    from impl.cache.codecs.transform import TransformCodec

    return (isinstance(store.codec, TransformCodec) and isinstance(query, Tensor) and query.device.type == "cpu"
            and backend_for(query.device) == "numba")


def reference_decode_attention(store, query: Tensor, values: Tensor, scaling: float, mask: Tensor | None = None,
                               softcap: float | None = None) -> Tensor:
    """The same output by the unfused path: `store.logits` (the full logit row), scaling, softcap,
    `masked_softmax`, then the weighted sum of values; float32 (float64 for float64 queries)
    computed, returned in values' dtype, shape (B, H, G, 1, dv)."""
    _check_store(store)
    H, T = store.codec.heads, len(store)
    q, B, G = _check_step(H, store.codec.dim, store.batch, T, query, values, scaling, softcap)
    m = decode_mask(mask, B, H * G, T).block(0, T, B, H, G)
    logits = store.logits(q, exact_offsets=softcap is not None) * scaling         # (B, H, G, 1, T)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    probs = masked_softmax(logits, m.unsqueeze(-2) if m is not None else None)
    out = probs @ values.to(probs.dtype).unsqueeze(2)
    return out.to(values.dtype)


def decode_attention(store, query: Tensor, values: Tensor, scaling: float, mask: Tensor | None = None,
                     softcap: float | None = None) -> Tensor:
    """Attention of one decode step over the keys of `store`, from the codes in one pass (module
    docstring; online_softmax_merge).

    ``query`` (B, H, G, 1, d): G query heads per kv head (GQA), post-RoPE; ``values`` (B, H, T, dv)
    with T = len(store); ``scaling`` multiplies the logits; ``mask`` the query row's mask — None,
    boolean (True = attend) or additive, shaped (B, T), (B, Hm, T) or (B, Hm, 1, T), Hm ∈ {1, H·G}
    (`decode_mask`); ``softcap`` c: logits ↦ c·tanh(logits / c) before the mask. A row with every
    token masked gives 0. Returns (B, H, G, 1, dv) in values' dtype.

    The compiled kernel runs for a `TransformCodec` store on CPU (numba) or CUDA (Triton) with
    float32-computable queries (`attend_coded`); any other case takes `reference_decode_attention`."""
    _check_store(store)
    q, _, _ = _check_step(store.codec.heads, store.codec.dim, store.batch, len(store), query, values, scaling, softcap)
    if _kernel_backend(store, q) == "torch" or _needs_offsets(store.codec, q, softcap):
        return reference_decode_attention(store, query, values, scaling, mask, softcap)
    return attend_coded(store.codec, query, values, scaling, store.codes(), protected=store.protected_keys(),
                        recent=store.recent_keys(), mask=mask, softcap=softcap)


def attend_coded(codec, query: Tensor, values: Tensor, scaling: float, codes: dict[str, Tensor], *,
                 protected: Tensor | None = None, recent: Tensor | None = None, mask: Tensor | None = None,
                 softcap: float | None = None) -> Tensor:
    """`decode_attention` over explicit parts, in token order: exact ``protected`` keys (B, H, P, d),
    the `TransformCodec` ``codes`` of C coded tokens, exact ``recent`` keys (B, H, R, d); values
    (B, H, P + C + R, dv). The coded block is read by the compiled kernel of the query's device
    (RuntimeError when there is none); the exact blocks by torch; the states are merged by
    `merge_softmax_blocks`. Arguments otherwise as `decode_attention`."""
    H, d = codec.heads, codec.dim
    packed = codes.get("codes") if isinstance(codes, dict) else None
    if not isinstance(packed, Tensor) or packed.dim() != 4 or packed.shape[1] != H:
        raise ValueError(f"codes['codes'] must be a (B, H={H}, C, W) tensor, got "
                         f"{tuple(packed.shape) if isinstance(packed, Tensor) else type(packed).__name__}")
    if isinstance(query, Tensor) and query.dim() >= 1 and packed.shape[0] != query.shape[0]:
        raise ValueError(f"codes['codes'] holds batch {packed.shape[0]}, the query batch {query.shape[0]}")
    C = packed.shape[2]
    P = protected.shape[2] if protected is not None else 0
    R = recent.shape[2] if recent is not None else 0
    q, B, G = _check_step(H, d, None, P + C + R, query, values, scaling, softcap)
    name = backend_for(q.device)
    if name == "torch" or q.dtype != torch.float32:
        raise RuntimeError(f"attend_coded: no compiled kernel for float32 queries on {q.device} "
                           f"(backend {name!r}, query dtype {q.dtype}); use decode_attention")
    T = P + C + R
    dmask = decode_mask(mask, B, H * G, T)
    qf = q.reshape(B, H, G, d)
    offset = codec.offset(qf).unsqueeze(-1)                                       # ⟪q, m⟫ (B, H, G, 1)
    if softcap is not None and bool((offset != 0).any()):
        raise ValueError("softcap with a non-zero offset ⟪q, m⟫ needs the logits with their offset (a softcap is not "
                         "shift-invariant); the kernel drops it: use decode_attention, which takes the unfused path")

    def exact_state(keys: Tensor, lo: int) -> SoftmaxState:
        hi = lo + keys.shape[2]
        x = (qf @ keys.float().transpose(-1, -2) - offset) * scaling               # (B, H, G, n)
        if softcap is not None:
            x = torch.tanh(x / softcap) * softcap
        m = dmask.block(lo, hi, B, H, G)
        if m is not None:
            x = x.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else x + m
        return softmax_block_state(x, values[:, :, None, lo:hi].float())

    inputs = transform_inputs(codec, qf, codes, query_transform(qf))
    flat_values = values.reshape(B * H, T, values.shape[-1])
    s = kernel_module(name).decode_state(inputs, flat_values, P, dmask.keep, dmask.bias, H, float(scaling),
                                         None if softcap is None else float(softcap))
    state = SoftmaxState(s.max.reshape(B, H, G), s.denom.reshape(B, H, G), s.numer.reshape(B, H, G, -1))
    if P:
        state = merge_softmax_blocks(exact_state(protected, 0), state)
    if R:
        state = merge_softmax_blocks(state, exact_state(recent, P + C))
    return softmax_output(state).to(values.dtype).unsqueeze(-2)
