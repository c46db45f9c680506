"""Hugging Face transformers integration of the 1-bit key cache.

Two ways to use it, which compute the same attention:

* **Any decoder model** — pass ``OneBitKeyCache`` as the model's cache. Each layer's ``update``
  stores the keys packed (`impl.kvcache.OneBitKeyStore`) and hands the model's own attention
  (sdpa/eager) the dequantised keys `k̂`, built for that call only and never kept.
* **Packed attention** (Llama-family and Gemma-3, or any model whose attention calls
  ``ALL_ATTENTION_FUNCTIONS``) — ``with cache.attached(model): ...`` switches the model to the
  registered attention implementation ``"betaspec_1bit"``, which scores queries directly against
  the packed codes (`OneBitKeyStore.logits`); no full-precision key is materialised.

Values stay in the model's dtype: this is a key-cache method. The packed path drops the mean
term `⟪q, m⟫` of the logits, which softmax ignores (softmax_shift); the two paths therefore agree
to floating-point tolerance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from impl.cache.store import KeyCodec, MemoryReport, OneBitKeyStore

ATTN_IMPLEMENTATION = "betaspec_1bit"
_CACHE_ATTR = "_betaspec_cache"


class OneBitKeyLayer(DynamicLayer):
    """One decoder layer: keys in a `OneBitKeyStore`, values as a plain growing tensor."""

    is_croppable = False

    def __init__(self, codec: KeyCodec, n_protect: int = 0, scale_dtype: torch.dtype = torch.float16):
        super().__init__()
        self.codec = codec
        self.n_protect = n_protect
        self.scale_dtype = scale_dtype
        self.store = OneBitKeyStore(codec, n_protect=n_protect, scale_dtype=scale_dtype)
        self.materialize_keys = True

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        super().lazy_initialization(key_states, value_states)

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.store.append(key_states)
        self.values = torch.cat([self.values, value_states], dim=-2)
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
        self.store = OneBitKeyStore(self.codec, n_protect=self.n_protect, scale_dtype=self.scale_dtype)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the 1-bit key cache cannot be cropped (its codes are append-only)")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("the 1-bit key cache does not support beam search")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("the 1-bit key cache does not support expanding the batch after prefill")

    def batch_select_indices(self, indices: Tensor) -> None:
        raise NotImplementedError("the 1-bit key cache does not support selecting batch rows")


class OneBitKeyCache(Cache):
    """A transformers ``Cache`` that stores keys at one bit per coordinate (plus a scale, an
    optional rank-r correction, and the first ``n_protect`` tokens exactly).

    ``codecs`` has one `KeyCodec` per decoder layer (from calibration, or `srht_codecs`)."""

    def __init__(self, codecs: Sequence[KeyCodec], n_protect: int = 0, scale_dtype: torch.dtype = torch.float16):
        if not codecs:
            raise ValueError("codecs must hold one KeyCodec per decoder layer, got none")
        super().__init__(layers=[OneBitKeyLayer(c, n_protect, scale_dtype) for c in codecs])
        self.n_protect = n_protect

    def memory(self) -> MemoryReport:
        """Exact memory of the keys held, summed over layers (values are not counted)."""
        return MemoryReport.summed([layer.store.memory() for layer in self.layers])

    @contextlib.contextmanager
    def attached(self, model: torch.nn.Module) -> Iterator["OneBitKeyCache"]:
        """Run ``model`` with the packed attention over this cache inside the ``with`` block.

        The model's attention implementation is switched to ``"betaspec_1bit"``, every attention
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
            model.set_attn_implementation(previous)


def onebit_attention(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                     attention_mask: Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     **kwargs) -> tuple[Tensor, None]:
    """Attention whose scores come from the packed 1-bit keys of the layer's `OneBitKeyStore`.

    ``query`` (B, Hq, Q, d) post-RoPE; ``value`` (B, H, T, d) as returned by the cache; the mask
    is the 4-D boolean (True = attend) or additive mask transformers builds. GQA: query head
    `h` reads kv head `h // G`. Returns ``(output (B, Q, Hq, d), None)``.
    """
    cache = kwargs.get("betaspec_cache") or getattr(module, _CACHE_ATTR, None)
    if cache is None:
        raise RuntimeError(
            f"attention implementation {ATTN_IMPLEMENTATION!r} needs a OneBitKeyCache: run the model inside "
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
    logits = store.logits(query.reshape(B, H, G, Q, d)) * scaling          # (B, H, G, Q, T) float32
    softcap = kwargs.get("softcap")
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask[:, :, None]                                    # (B, 1, 1, Q, T)
        if mask.dtype == torch.bool:
            # finfo.min, not −inf: a fully masked row (left padding) must stay finite
            logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        else:
            logits = logits + mask.float()
    probs = torch.softmax(logits, dim=-1).to(value.dtype)
    out = probs @ value.unsqueeze(2)                                          # (B, H, G, Q, d)
    return out.reshape(B, Hq, Q, d).transpose(1, 2).contiguous(), None


def _onebit_mask(*args, **kwargs):
    kwargs["allow_is_causal_skip"] = False  # always build the 4-D mask: our attention applies it itself
    return sdpa_mask(*args, **kwargs)


def register_attention() -> None:
    """Register ``"betaspec_1bit"`` with transformers' attention and mask interfaces (idempotent)."""
    AttentionInterface.register(ATTN_IMPLEMENTATION, onebit_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, _onebit_mask)
