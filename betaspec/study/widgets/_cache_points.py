"""Operating points of the 1-bit key cache, shared by widgets 7, 9 and 10.

An operating point is a codec (``srht``: the data-free SRHT, uncentred; ``learned_centred``: the
learned L¹-max rotation after DC-mean centring), a correction rank r and a protection count n.
For a real model it is measured by running the model on the context's held-out perplexity windows
with `OneBitKeyCache(codecs, n)` as its cache (`betaspec.keycache.runs.onebit_perplexity`), and its memory is
read from that cache's own report (`OneBitKeyCache.memory`) — not from a formula. For the
synthetic key source (no language model) the memory comes from a `OneBitKeyStore` holding
synthetic held-out keys, and perplexity is not measured.

Each point is computed once per run and kept in ``ctx.memo`` (widget 7 fills it; 9 and 10 reuse
it), so a widget that runs alone computes what it needs and one that runs after widget 7 adds
only its own points.

Quality on held-out keys (both from the cache's own encode/decode, scales in float16):

* ``beta_eff`` — `1 − Σ_t ‖k_t − k̂_t‖² / Σ_t ‖k_t − m‖²` per head (m the codec's mean, 0 when
  uncentred): the energy-weighted β_eff of the coded vector `R(k − m)` (beta_eff_formula);
* ``beta_eff_shift`` — `1 − Σ_t ‖e_t − ē‖² / Σ_t ‖k_t − k̄‖²` with `e_t = k_t − k̂_t`: the same
  with both keys and errors taken up to a common shift, which softmax cannot see
  (attention_score_gauge_invariance (b)). It compares centred and uncentred codecs fairly: an
  uncentred codec is not credited for coding the mean, nor charged for a constant error.

Both are averaged over layers and kv heads.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from impl.cache.packing import packed_width
from impl.cache.store import (
    KeyCodec,
    MemoryReport,
    OneBitKeyStore,
    decode_keys,
    encode_keys,
)

from ...data.models import perplexity
from ...keycache.runs import onebit_perplexity
from ..context import SYNTHETIC, StudyContext

VIEW = "post_rope"                     # the cache stores post-RoPE keys
CODECS: dict[str, tuple[str, bool]] = {"srht": ("srht", False), "learned_centred": ("learned", True)}
CODEC_LABEL = {"srht": "SRHT", "learned_centred": "learned+centred"}
FP16_BITS = 16
SCALE_DTYPE = torch.float16
_MEMO = "cache_points"


def point_id(codec: str, rank: int, n_protect: int) -> str:
    return f"{codec}_r{rank}_n{n_protect}"


def rank_of(d: int, fraction: float) -> int:
    """r = d·fraction (0 for fraction 0; at least 1 otherwise)."""
    return 0 if fraction == 0 else max(1, int(round(d * fraction)))


def sources(ctx: StudyContext) -> list[str]:
    """Real models when present; else the synthetic key source (no perplexity)."""
    return list(ctx.models) or ([SYNTHETIC] if ctx.synthetic_fallback else [])


def is_lm(source: str) -> bool:
    return source != SYNTHETIC


def shape_of(ctx: StudyContext, source: str) -> dict[str, int]:
    """Layers, kv heads and head dimension, read from the held-out keys (works for any model)."""
    L, H, _, d = ctx.keys(source, VIEW)["heldout"].shape
    return {"layers": int(L), "kv_heads": int(H), "head_dim": int(d)}


def codecs(ctx: StudyContext, source: str, codec: str, rank: int) -> list[KeyCodec]:
    rotation, center = CODECS[codec]
    return ctx.codecs(source, VIEW, rotation, center, rank)


def _memo(ctx: StudyContext) -> dict[Any, Any]:
    return ctx.memo.setdefault(_MEMO, {})


def bits_formula(d: int, rank: int, n_protect: int, tokens: int, protect_bits: int,
                 scale_bits: int = FP16_BITS) -> float:
    """The cache's memory formula: coded tokens `8⌈d/8⌉/d + s/d + r·s/d` bits per coordinate
    (= 1 + 16/d + 16r/d for d a multiple of 8), protected tokens at their dtype's width."""
    n = min(n_protect, tokens)
    coded = packed_width(d) * 8 / d + scale_bits / d + rank * scale_bits / d
    return (n * protect_bits + (tokens - n) * coded) / tokens


def fp_point(ctx: StudyContext, source: str) -> dict[str, Any]:
    """Perplexity with full-precision keys, and the bits per key coordinate those keys occupy in a
    plain `DynamicCache` (the model's dtype; fp16 would be 16)."""
    memo = _memo(ctx)
    key = ("fp", source)
    if key in memo:
        return memo[key]
    from ...data.offline import offline_transformers

    model, _ = ctx.model(source)
    windows = ctx.ppl_windows(source)
    tf = offline_transformers()
    caches: list[Any] = []

    def factory():
        caches.append(tf.DynamicCache())
        return caches[-1]

    t0 = time.perf_counter()
    res = perplexity(model, windows, cache_factory=factory, progress=False)
    seconds = time.perf_counter() - t0
    keys = [layer.keys for layer in caches[-1].layers]
    nbytes = sum(k.numel() * k.element_size() for k in keys)
    coords = sum(k.numel() for k in keys)
    out = {"ppl": float(res.ppl), "nll": float(res.nll), "tokens_predicted": int(res.n_tokens),
           "bits_per_coordinate": 8.0 * nbytes / coords, "key_bytes": int(nbytes), "fp16_key_bytes": int(2 * coords),
           "tokens": int(windows.shape[1]), "seconds": seconds}
    memo[key] = out
    return out


def cache_point(ctx: StudyContext, source: str, codec: str, rank: int, n_protect: int) -> dict[str, Any]:
    """Perplexity (real models) and memory of one operating point, from the cache itself."""
    memo = _memo(ctx)
    key = ("cache", source, codec, rank, n_protect)
    if key in memo:
        return memo[key]
    cs = codecs(ctx, source, codec, rank)
    shape = shape_of(ctx, source)
    t0 = time.perf_counter()
    if is_lm(source):
        model, _ = ctx.model(source)
        res, mem = onebit_perplexity(model, ctx.ppl_windows(source), cs, n_protect=n_protect,
                                     scale_dtype=SCALE_DTYPE, progress=False)
        protect_bits = torch.finfo(next(model.parameters()).dtype).bits
        ppl, nll, predicted = float(res.ppl), float(res.nll), int(res.n_tokens)
    else:
        keys = ctx.keys(source, VIEW)["heldout"][:, :, : ctx.budget.ppl_window]
        stores = []
        for layer, c in enumerate(cs):
            store = OneBitKeyStore(c, n_protect=n_protect, scale_dtype=SCALE_DTYPE)
            store.append(keys[layer].unsqueeze(0))
            stores.append(store)
        mem = MemoryReport.summed([s.memory() for s in stores])
        protect_bits = torch.finfo(keys.dtype).bits
        ppl = nll = predicted = None
    out = {
        "ppl": ppl, "nll": nll, "tokens_predicted": predicted,
        "bits_per_coordinate": float(mem.bits_per_coordinate),
        "bits_formula": bits_formula(shape["head_dim"], rank, n_protect, int(mem.tokens), protect_bits),
        "key_bytes": int(mem.nbytes_used), "fp16_key_bytes": int(2 * mem.coordinates),
        "codec_bytes": int(mem.codec_bytes), "tokens": int(mem.tokens), "protect_bits": int(protect_bits),
        "breakdown": {k: int(v) for k, v in mem.breakdown.items()},
        "seconds": time.perf_counter() - t0,
    }
    memo[key] = out
    return out


def beta_point(ctx: StudyContext, source: str, codec: str, rank: int) -> dict[str, float]:
    """Held-out `beta_eff` and `beta_eff_shift` of a codec (see the module docstring)."""
    memo = _memo(ctx)
    key = ("beta", source, codec, rank)
    if key in memo:
        return memo[key]
    keys = ctx.keys(source, VIEW)["heldout"]
    eff, shift = [], []
    for layer, c in enumerate(codecs(ctx, source, codec, rank)):
        k = keys[layer].unsqueeze(0)                                       # (1, H, T, d)
        k_hat = decode_keys(c, encode_keys(c, k, SCALE_DTYPE))
        k64, e = k[0].double(), (k - k_hat)[0].double()                    # (H, T, d)
        y2 = ((k64 - c.mean.double()[:, None, :]) ** 2).sum((1, 2))
        e2 = (e ** 2).sum((1, 2))
        es2 = ((e - e.mean(1, keepdim=True)) ** 2).sum((1, 2))
        ks2 = ((k64 - k64.mean(1, keepdim=True)) ** 2).sum((1, 2))
        eff += (1 - e2 / y2).tolist()
        shift += (1 - es2 / ks2).tolist()
    out = {"beta_eff": sum(eff) / len(eff), "beta_eff_shift": sum(shift) / len(shift)}
    memo[key] = out
    return out


def point(ctx: StudyContext, source: str, codec: str, rank: int, n_protect: int) -> dict[str, Any]:
    """One operating point: its settings, the cache measurements and the held-out quality; with
    the perplexity ratio to full-precision keys for real models."""
    d = shape_of(ctx, source)["head_dim"]
    rotation, center = CODECS[codec]
    out: dict[str, Any] = {"codec": codec, "rotation": rotation, "center": center, "rank": rank,
                           "k_over_d": rank / d, "n_protect": n_protect}
    out.update(cache_point(ctx, source, codec, rank, n_protect))
    out.update(beta_point(ctx, source, codec, rank))
    out["ppl_ratio"] = out["ppl"] / fp_point(ctx, source)["ppl"] if is_lm(source) else None
    return out


POINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["codec", "rank", "n_protect", "ppl", "ppl_ratio", "bits_per_coordinate", "bits_formula", "key_bytes",
                 "fp16_key_bytes", "tokens", "beta_eff", "beta_eff_shift"],
    "properties": {
        "codec": {"enum": list(CODECS)},
        "rank": {"type": "integer", "minimum": 0},
        "n_protect": {"type": "integer", "minimum": 0},
        "ppl": {"type": ["number", "null"]},
        "ppl_ratio": {"type": ["number", "null"]},
        "bits_per_coordinate": {"type": "number", "exclusiveMinimum": 0},
        "bits_formula": {"type": "number", "exclusiveMinimum": 0},
        "key_bytes": {"type": "integer", "minimum": 0},
        "fp16_key_bytes": {"type": "integer", "minimum": 0},
        "tokens": {"type": "integer", "minimum": 1},
        "beta_eff": {"type": "number"},
        "beta_eff_shift": {"type": "number"},
    },
}


def set_ppl_scale(ax, values) -> None:
    """Log scale when the values span more than a factor 3, else linear with plain tick labels."""
    v = [float(x) for x in values if x is not None and x > 0]
    if v and max(v) / min(v) > 3:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
