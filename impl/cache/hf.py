"""Hugging Face transformers integration of the key cache (any codec).

Two ways to use it:

* **Any decoder model** — pass `QuantizedKeyCache` as the model's cache. Each layer's ``update``
  stores the keys (`impl.cache.store.KeyStore`) and hands the model's own attention (sdpa/eager)
  the keys as the store holds them after the call — exact where the policy keeps them exact,
  dequantised `k̂` elsewhere — built for that call only and never kept. In a prefill every query
  then sees the store as it stands at the end of the prefill.
* **Packed attention** (Llama-family and Gemma-3, or any model whose attention calls
  ``ALL_ATTENTION_FUNCTIONS``) — ``with cache.attached(model): ...`` switches the model to the
  registered attention implementation ``"betaspec_packed"``, which scores queries straight from
  the codes (`KeyStore.causal_logits`): no full-precision copy of a coded key is made, and in a
  prefill each query sees the store as it stood when its token was appended — the logits a
  token-by-token decode gives. This is the path the study measures.

Values stay in the model's dtype: this is a key-cache method. The packed path drops each codec's
token-independent offset (e.g. `⟪q, m⟫`), which softmax ignores (softmax_shift).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from impl.attention import masked_softmax
from impl.cache.codecs.base import KeyCodec
from impl.cache.kernels import decode_attention, fused_decode_available
from impl.cache.store import Growable, KeyStore, MemoryReport, check_exact_dtype
from impl.validation import check_positive_int

ATTN_IMPLEMENTATION = "betaspec_packed"
_CACHE_ATTR = "_betaspec_cache"


class QuantizedKeyLayer(DynamicLayer):
    """One decoder layer: keys in a `KeyStore`, values in a buffer that grows by amortised doubling
    (`Growable`: appending a decode step's value writes one row instead of copying all of them, as
    the `torch.cat` of a `DynamicLayer` does)."""

    is_croppable = False

    def __init__(self, codec: KeyCodec, n_protect: int = 0, window: int = 0, flush_block: int | None = None,
                 exact_dtype: torch.dtype | None = None):
        super().__init__()
        self._policy = dict(n_protect=n_protect, window=window, flush_block=flush_block, exact_dtype=exact_dtype)
        self.codec = codec
        self.materialize_keys = True
        self.store = self._new_store()
        self._values: Growable | None = None

    def _new_store(self) -> KeyStore:
        return KeyStore(self.codec, keep_call_keys=not self.materialize_keys, **self._policy)

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.store.keep_call_keys = not self.materialize_keys
        self.store.append(key_states)
        if self._values is None:
            self._values = Growable(value_states)
        self._values.append(value_states)
        self.values = self._values.view()
        if self.materialize_keys:
            keys = self.store.dequantized_keys().to(key_states.dtype)
        else:
            keys = key_states  # the packed attention reads the store; these are not used
        return keys, self.values

    def get_seq_length(self) -> int:
        return len(self.store)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return len(self.store) + query_length, 0

    def reset(self) -> None:
        super().reset()
        self.store = self._new_store()
        self._values = None

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the quantized key cache cannot be cropped (its codes are append-only)")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("the quantized key cache does not support beam search")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("the quantized key cache does not support expanding the batch after prefill")

    def batch_select_indices(self, indices: Tensor) -> None:
        raise NotImplementedError("the quantized key cache does not support selecting batch rows")


class QuantizedKeyCache(Cache):
    """A transformers ``Cache`` that stores keys with a `KeyCodec` per decoder layer.

    ``codecs``: one codec per layer (from calibration, or data-free); ``n_protect``: the first
    tokens kept exact (attention sinks); ``window`` and ``flush_block``: the recent tokens kept
    exact (see `impl.cache.store`); ``exact_dtype``: their storage dtype (default: the model's)."""

    def __init__(self, codecs: Sequence[KeyCodec], n_protect: int = 0, window: int = 0,
                 flush_block: int | None = None, exact_dtype: torch.dtype | None = None):
        if not codecs:
            raise ValueError("codecs must hold one KeyCodec per decoder layer, got none")
        bad = [i for i, c in enumerate(codecs) if not isinstance(c, KeyCodec)]
        if bad:
            raise ValueError(f"codecs must be KeyCodec instances; entries {bad} are not")
        check_positive_int(n_protect, "n_protect", minimum=0)
        check_positive_int(window, "window", minimum=0)
        if flush_block is not None:
            check_positive_int(flush_block, "flush_block")
        check_exact_dtype(exact_dtype)
        super().__init__(layers=[QuantizedKeyLayer(c, n_protect, window, flush_block, exact_dtype) for c in codecs])
        self.n_protect = n_protect

    def memory(self) -> MemoryReport:
        """Exact memory of the keys held, summed over layers (values are not counted)."""
        return MemoryReport.summed([layer.store.memory() for layer in self.layers])

    def expected_bits_per_coordinate(self) -> float:
        """The memory formula (`KeyStore.expected_bits_per_coordinate`), averaged over layers by
        coordinates held."""
        stores = [layer.store for layer in self.layers]
        coords = [(s.batch or 0) * s.codec.heads * len(s) * s.codec.dim for s in stores]
        total = sum(coords)
        return sum(c * s.expected_bits_per_coordinate() for c, s in zip(coords, stores)) / total if total else 0.0

    @contextlib.contextmanager
    def attached(self, model: torch.nn.Module) -> Iterator["QuantizedKeyCache"]:
        """Run ``model`` with the packed attention over this cache inside the ``with`` block.

        The model's attention implementation is switched to ``"betaspec_packed"``, every attention
        module is given a reference to this cache, and keys are no longer materialised by
        ``update``. Everything is restored on exit, also after an error."""
        register_attention()
        modules = [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups")]
        if not modules:
            raise ValueError("model has no attention modules with `layer_idx` and `num_key_value_groups`")
        previous = model.config._attn_implementation
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
        for m in modules:
            setattr(m, _CACHE_ATTR, self)
        for layer in self.layers:
            layer.materialize_keys = False
        try:
            yield self
        finally:
            for m in modules:
                if getattr(m, _CACHE_ATTR, None) is self:
                    delattr(m, _CACHE_ATTR)
            for layer in self.layers:
                layer.materialize_keys = True
                layer.store.release_call_keys()
            model.set_attn_implementation(previous)


def packed_attention(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                     attention_mask: Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     **kwargs) -> tuple[Tensor, None]:
    """Attention whose scores come from the codes of the layer's `KeyStore` (`causal_logits`).

    ``query`` (B, Hq, Q, d) post-RoPE; ``value`` (B, H, T, d) as returned by the cache; the mask
    is the 4-D boolean (True = attend) or additive mask transformers builds (`masked_softmax`: a
    fully masked row attends to nothing). GQA: query head `h` reads kv head `h // G`.
    Returns ``(output (B, Q, Hq, d), None)``.
    """
    cache = kwargs.get("betaspec_cache")
    if cache is None:
        cache = getattr(module, _CACHE_ATTR, None)
    if cache is None:
        raise RuntimeError(
            f"attention implementation {ATTN_IMPLEMENTATION!r} needs a QuantizedKeyCache: run the model inside "
            "`with cache.attached(model):`"
        )
    store = cache.layers[module.layer_idx].store
    B, Hq, Q, d = query.shape
    H = store.codec.heads
    if Hq % H:
        raise ValueError(f"query heads ({Hq}) must be a multiple of the cache's kv heads ({H})")
    G = Hq // H
    if scaling is None:
        scaling = d ** -0.5
    softcap = kwargs.get("softcap")
    if Q == 1 and fused_decode_available(store, query):
        # a decode step on CPU: logits, softmax and values in one pass over the codes (numba)
        try:
            out = decode_attention(store, query.reshape(B, H, G, 1, d), value, scaling, attention_mask,
                                   softcap)                                        # (B, H, G, 1, dv)
        finally:
            store.release_call_keys()
        return out.reshape(B, Hq, 1, -1).transpose(1, 2).contiguous(), None
    try:
        # a softcap is not shift-invariant: then the logits keep the codec's offset ⟪q, m⟫
        logits = store.causal_logits(query.reshape(B, H, G, Q, d), exact_offsets=softcap is not None) * scaling
    finally:
        store.release_call_keys()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    mask = attention_mask[:, :, None] if attention_mask is not None else None      # (B, 1, 1, Q, T)
    probs = masked_softmax(logits, mask).to(value.dtype)
    out = probs @ value.unsqueeze(2)                                                # (B, H, G, Q, d)
    return out.reshape(B, Hq, Q, -1).transpose(1, 2).contiguous(), None


def _packed_mask(*args, **kwargs):
    kwargs["allow_is_causal_skip"] = False  # always build the 4-D mask: our attention applies it itself
    return sdpa_mask(*args, **kwargs)


def register_attention() -> None:
    """Register ``"betaspec_packed"`` with transformers' attention and mask interfaces (idempotent)."""
    AttentionInterface.register(ATTN_IMPLEMENTATION, packed_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, _packed_mask)
