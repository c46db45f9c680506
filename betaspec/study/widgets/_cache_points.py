"""Operating points of the quantized key cache, shared by widgets 7, 9 and 10.

An operating point is a `Method` — a codec family with its settings, and the cache policy (exact
front tokens, recent window) — measured on one context length:

* ``"ours"``: betaspec's code on the learned+centred transform (`TransformCodec` fitted by the
  study context on the train keys): `b` bits, optional per-channel scale, Gaussian or fitted levels,
  rank-r correction with float16/int8/int4 coefficients, least-squares or unbiased scale;
* ``"srht"``: the same code on the uncalibrated SRHT (no centring) — the data-free baseline;
* the published peers, written from their papers (`impl.cache.codecs`): ``"kivi"`` (per-channel
  asymmetric b-bit keys in groups of G tokens, fp16 scale and zero point, a full-precision residual
  of R tokens coded R at a time), ``"turboquant_mse"``, ``"turboquant_prod"`` and ``"qjl"``.

For a real model a point is measured by running the model on held-out windows with a
`QuantizedKeyCache` through the packed attention (`betaspec.keycache.runs.cache_perplexity`): each
query scores the keys as the cache held them when its token was appended, as a token-by-token
decode would, so recent windows and protected tokens count exactly as they would in generation.
Exact tokens are stored in float16 for every method (the width a deployed fp16 cache gives them).
Its memory is read from that cache's own report after the last window (`QuantizedKeyCache.memory`)
and compared with the codecs' closed-form formula (`expected_bits_per_coordinate`); and the
cache's tensors are searched for full-precision copies of the coded keys (`full_precision_rows`).
Because exact recent and front tokens make the bits depend on the length, the frontier uses
``bits_position_mean``: the bits per coordinate the cache held when each predicted position was
scored (t + 1 keys for position t), averaged over the positions — so a method whose queries were
served by exact recent keys pays for them, as it would in a decode of that length.
For the synthetic key source (no language model) the memory comes from a `KeyStore` holding
synthetic held-out keys, and perplexity is not measured.

Each point is computed once per run and kept in ``ctx.memo``.

Quality on held-out keys (from the codec's own encode/decode): ``beta_eff`` —
`1 − Σ_t ‖k_t − k̂_t‖² / Σ_t ‖k_t − m‖²` per head (m the codec's mean, 0 for codecs without one) —
and ``beta_eff_shift`` — `1 − Σ_t ‖e_t − ē‖² / Σ_t ‖k_t − k̄‖²` with `e_t = k_t − k̂_t`, keys and errors
up to a common shift, which softmax cannot see (attention_score_gauge_invariance (b)); both
averaged over layers and kv heads.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from impl.cache.codecs import peer_codecs
from impl.cache.codecs.transform import COEF_BITS, SCALE_RULES
from impl.calibration.fit import LEVEL_SOURCES, OBJECTIVES
from impl.cache.codecs.base import KeyCodec
from impl.cache.store import KeyStore, MemoryReport, full_precision_rows

from ...data.models import collect_keys, perplexity
from ...keycache.runs import CachePolicy, cache_perplexity
from ..context import SYNTHETIC, StudyContext

VIEW = "post_rope"                     # the cache stores post-RoPE keys
FP16_BITS = 16
EXACT_DTYPE = torch.float16            # exact (protected, recent) tokens, for every method
CONTEXTS = ("short", "long")
_MEMO = "cache_points"

FAMILY_LABEL = {"ours": "learned+centred", "srht": "SRHT (uncalibrated)", "kivi": "KIVI",
                "turboquant_mse": "TurboQuant-MSE", "turboquant_prod": "TurboQuant-prod", "qjl": "QJL"}


@dataclass(frozen=True)
class Method:
    """One way to run the key cache (see the module docstring). `rank_fraction` gives the correction
    rank r = round(d·fraction) (at least 1 when > 0) for the model's head dimension d; `sketch` is
    QJL's m/d."""

    family: str
    bits: int = 1
    rank_fraction: float = 0.0
    coef_bits: int = 16
    channel_scale: bool = False
    levels: str = "gaussian"
    objective: str | None = None
    scale_rule: str = "ls"
    group: int = 32
    residual: int = 128
    sketch: float = 2.0
    n_protect: int = 0
    window: int = 0
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILY_LABEL:
            raise ValueError(f"family must be one of {sorted(FAMILY_LABEL)}, got {self.family!r}")
        for name, allowed in (("levels", LEVEL_SOURCES), ("objective", (None, *OBJECTIVES)), ("scale_rule", SCALE_RULES),
                              ("coef_bits", COEF_BITS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        # one id per codec: the default objective (L1-max at 1 bit, the b-bit distortion above) is None
        if self.objective == ("l1" if self.bits == 1 else "distortion"):
            object.__setattr__(self, "objective", None)

    @property
    def id(self) -> str:
        f = self.family
        if f in ("ours", "srht"):
            parts = [f, f"b{self.bits}"]
            if self.rank_fraction:
                parts.append(f"r{self.rank_fraction:g}" + ("" if self.coef_bits == 16 else f"i{self.coef_bits}"))
            if self.channel_scale:
                parts.append("cs")
            if self.levels != "gaussian" and self.bits > 1:
                parts.append(self.levels)
            if self.objective is not None:
                parts.append(self.objective)
            if self.scale_rule != "ls":
                parts.append(self.scale_rule)
        elif f == "kivi":
            parts = [f, f"b{self.bits}", f"g{self.group}", f"R{self.residual}"]
        elif f == "qjl":
            parts = [f, f"m{self.sketch:g}d"]
        else:
            parts = [f, f"b{self.bits}"]
        if self.n_protect:
            parts.append(f"n{self.n_protect}")
        if self.window:
            parts.append(f"w{self.window}")
        return "_".join(parts).replace(".", "p")

    def label(self, d: int | None = None) -> str:
        base = FAMILY_LABEL[self.family]
        f = self.family
        if f in ("ours", "srht"):
            s = f"{base} {self.bits}-bit"
            if self.rank_fraction:
                r = f"d/{round(1 / self.rank_fraction)}" if d is None else str(rank_of(d, self.rank_fraction))
                s += f" + r={r}" + (" fp16" if self.coef_bits == 16 else f" int{self.coef_bits}")
            for flag, text in ((self.channel_scale, "channel scale"), (self.levels == "fitted" and self.bits > 1, "fitted levels"),
                               (self.objective == "l1", "L1 objective"), (self.scale_rule == "unbiased", "unbiased scale"),
                               (self.scale_rule == "query", "query-weighted scale")):
                if flag:
                    s += f", {text}"
        elif f == "kivi":
            s = f"{base}-{self.bits} (G={self.group}, R={self.residual})"
        elif f == "qjl":
            s = f"{base} m={self.sketch:g}d"
        else:
            s = f"{base} {self.bits}-bit"
        if self.n_protect:
            s += f", {self.n_protect} sink(s) exact"
        if self.window:
            s += f", last {self.window} exact"
        return s

    def policy(self) -> CachePolicy:
        if self.family == "kivi":   # KIVI's residual: 1…R exact tokens, coded R at a time (`KiviCodec`)
            return CachePolicy(n_protect=self.n_protect, window=max(self.window, 1), flush_block=self.residual,
                               exact_dtype=EXACT_DTYPE)
        return CachePolicy(n_protect=self.n_protect, window=self.window, exact_dtype=EXACT_DTYPE)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("notes")
        return out


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


def _memo(ctx: StudyContext) -> dict[Any, Any]:
    return ctx.memo.setdefault(_MEMO, {})


def method_codecs(ctx: StudyContext, source: str, method: Method) -> list[KeyCodec]:
    """The per-layer codecs of `method` for `source` (fitted on the train keys where it needs a fit)."""
    memo = _memo(ctx)
    key = ("codecs", source, replace(method, n_protect=0, window=0))
    if key in memo:
        return memo[key]
    shape = shape_of(ctx, source)
    d = shape["head_dim"]
    m = method
    if m.family in ("ours", "srht"):
        rotation, center = ("learned", True) if m.family == "ours" else ("srht", False)
        out = ctx.codecs(source, VIEW, rotation, center, rank_of(d, m.rank_fraction), coef_bits=m.coef_bits,
                         scale_rule=m.scale_rule, bits=m.bits, levels=m.levels, objective=m.objective,
                         channel_scale=m.channel_scale)
    elif m.family == "kivi":
        out = peer_codecs("kivi", shape["layers"], shape["kv_heads"], d, seed=ctx.seed, bits=m.bits, group=m.group)
    elif m.family == "qjl":
        out = peer_codecs("qjl", shape["layers"], shape["kv_heads"], d, seed=ctx.seed, m=int(round(m.sketch * d)))
    else:
        out = peer_codecs(m.family, shape["layers"], shape["kv_heads"], d, seed=ctx.seed, bits=m.bits)
    memo[key] = out
    return out


def context_windows(ctx: StudyContext, source: str, context: str) -> torch.Tensor:
    """Held-out windows for perplexity: the short context (`ppl_windows` × `ppl_window`) or the long
    one (`long_windows` × `long_window`, within the model's context)."""
    if context == "short":
        return ctx.ppl_windows(source)
    if context == "long":
        b = ctx.budget
        return ctx.windows(source, "heldout", b.long_windows, b.long_window)
    raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")


def fp_point(ctx: StudyContext, source: str, context: str = "short") -> dict[str, Any]:
    """Perplexity with full-precision keys, and the bits per key coordinate those keys occupy in a
    plain `DynamicCache` (the model's dtype; fp16 would be 16)."""
    memo = _memo(ctx)
    key = ("fp", source, context)
    if key in memo:
        return memo[key]
    from ...data.offline import offline_transformers

    model, _ = ctx.model(source)
    windows = context_windows(ctx, source, context)
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
           "tokens": int(windows.shape[1]), "windows": int(windows.shape[0]), "seconds": seconds}
    memo[key] = out
    return out


def _copies_in_cache(model, cache, window: torch.Tensor) -> dict[str, int]:
    """Full-precision copies of coded keys found in the cache after it ran `window`: the window's
    original keys (a plain forward) searched in every tensor the cache holds."""
    keys = collect_keys(model, window[None], view=VIEW, progress=False)           # (L, H, T, d)
    found = coded = 0
    for layer, lk in zip(cache.layers, keys):
        store = layer.store
        P, C = store.protected_length, store.coded_length
        rows = lk[:, P:P + C].reshape(-1, lk.shape[-1])
        coded += rows.shape[0]
        found += full_precision_rows(layer, rows)
    return {"coded_rows": int(coded), "full_precision_copies": int(found)}


def cache_point(ctx: StudyContext, source: str, method: Method, context: str = "short") -> dict[str, Any]:
    """Perplexity (real models) and memory of one operating point, from the cache itself."""
    memo = _memo(ctx)
    key = ("cache", source, method, context)
    if key in memo:
        return memo[key]
    cs = method_codecs(ctx, source, method)
    policy = method.policy()
    t0 = time.perf_counter()
    copies: dict[str, int] | None = None
    if is_lm(source):
        model, _ = ctx.model(source)
        windows = context_windows(ctx, source, context)
        res, mem, cache = cache_perplexity(model, windows, cs, policy, packed=True, progress=False)
        formula = cache.expected_bits_per_coordinate()
        stores = [layer.store for layer in cache.layers]
        width = int(windows.shape[1])
        if context == "short":
            copies = _copies_in_cache(model, cache, windows[-1])
        ppl, nll, predicted = float(res.ppl), float(res.nll), int(res.n_tokens)
    else:
        keys = ctx.keys(source, VIEW)["heldout"][:, :, : ctx.budget.ppl_window]
        stores = []
        for layer, c in enumerate(cs):
            store = KeyStore(c, n_protect=policy.n_protect, window=policy.window, flush_block=policy.flush_block,
                             exact_dtype=EXACT_DTYPE)
            store.append(keys[layer].unsqueeze(0))
            stores.append(store)
        mem = MemoryReport.summed([s.memory() for s in stores])
        formula = sum(s.expected_bits_per_coordinate() for s in stores) / len(stores)
        width = int(keys.shape[2])
        ppl = nll = predicted = None
    # each predicted position t scored t + 1 keys: the bits the cache held then, averaged over them
    position_mean = sum(st.expected_bits_per_coordinate(n) for st in stores for n in range(1, width)) / (
        len(stores) * (width - 1))
    out = {
        "ppl": ppl, "nll": nll, "tokens_predicted": predicted,
        "bits_per_coordinate": float(mem.bits_per_coordinate), "bits_formula": float(formula),
        "bits_position_mean": float(position_mean),
        "key_bytes": int(mem.nbytes_used), "fp16_key_bytes": int(2 * mem.coordinates),
        "codec_bytes": int(mem.codec_bytes), "tokens": int(mem.tokens),
        "breakdown": {k: int(v) for k, v in mem.breakdown.items()},
        "copies": copies, "seconds": time.perf_counter() - t0,
    }
    memo[key] = out
    return out


def beta_point(ctx: StudyContext, source: str, method: Method) -> dict[str, float]:
    """Held-out `beta_eff` and `beta_eff_shift` of a method's codecs (see the module docstring)."""
    memo = _memo(ctx)
    key = ("beta", source, replace(method, n_protect=0, window=0))
    if key in memo:
        return memo[key]
    keys = ctx.keys(source, VIEW)["heldout"]
    block = max(c.token_block for c in method_codecs(ctx, source, method))
    T = keys.shape[2] - keys.shape[2] % block
    eff, shift = [], []
    for layer, c in enumerate(method_codecs(ctx, source, method)):
        k = keys[layer, :, :T].unsqueeze(0)                                # (1, H, T, d)
        k_hat = c.decode(c.encode(k))
        k64, e = k[0].double(), (k - k_hat)[0].double()                    # (H, T, d)
        mean = getattr(c, "mean", None)
        centre = mean.double()[:, None, :] if mean is not None else 0.0
        y2 = ((k64 - centre) ** 2).sum((1, 2))
        e2 = (e ** 2).sum((1, 2))
        es2 = ((e - e.mean(1, keepdim=True)) ** 2).sum((1, 2))
        ks2 = ((k64 - k64.mean(1, keepdim=True)) ** 2).sum((1, 2))
        eff += (1 - e2 / y2).tolist()
        shift += (1 - es2 / ks2).tolist()
    out = {"beta_eff": sum(eff) / len(eff), "beta_eff_shift": sum(shift) / len(shift)}
    memo[key] = out
    return out


def point(ctx: StudyContext, source: str, method: Method, context: str = "short") -> dict[str, Any]:
    """One operating point: its method, the cache measurements and the held-out quality; with the
    perplexity ratio to full-precision keys for real models."""
    d = shape_of(ctx, source)["head_dim"]
    out: dict[str, Any] = {"method": method.as_dict(), "family": method.family, "label": method.label(d),
                           "rank": rank_of(d, method.rank_fraction) if method.family in ("ours", "srht") else 0,
                           "n_protect": method.n_protect, "window": method.window, "context": context}
    out.update(cache_point(ctx, source, method, context))
    out.update(beta_point(ctx, source, method))
    out["ppl_ratio"] = out["ppl"] / fp_point(ctx, source, context)["ppl"] if is_lm(source) else None
    return out


POINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["method", "family", "label", "rank", "n_protect", "window", "context", "ppl", "ppl_ratio",
                 "bits_per_coordinate", "bits_formula", "bits_position_mean", "key_bytes", "fp16_key_bytes", "tokens",
                 "beta_eff",
                 "beta_eff_shift", "copies"],
    "properties": {
        "family": {"enum": list(FAMILY_LABEL)},
        "label": {"type": "string"},
        "rank": {"type": "integer", "minimum": 0},
        "n_protect": {"type": "integer", "minimum": 0},
        "window": {"type": "integer", "minimum": 0},
        "context": {"enum": list(CONTEXTS)},
        "ppl": {"type": ["number", "null"]},
        "ppl_ratio": {"type": ["number", "null"]},
        "bits_per_coordinate": {"type": "number", "exclusiveMinimum": 0},
        "bits_formula": {"type": "number", "exclusiveMinimum": 0},
        "bits_position_mean": {"type": "number", "exclusiveMinimum": 0},
        "key_bytes": {"type": "integer", "minimum": 0},
        "fp16_key_bytes": {"type": "integer", "minimum": 0},
        "tokens": {"type": "integer", "minimum": 1},
        "beta_eff": {"type": "number"},
        "beta_eff_shift": {"type": "number"},
        "copies": {"type": ["object", "null"]},
    },
}


def set_ppl_scale(ax, values) -> None:
    """Log scale when the values span more than a factor 3, else linear with plain tick labels."""
    v = [float(x) for x in values if x is not None and x > 0]
    if v and max(v) / min(v) > 3:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
