"""Widget 10 — front-token protection: attention-output error and perplexity vs the number of
front tokens whose keys the cache keeps exactly, n_protect ∈ {0, 1, 2, 4, 8, 16}
(front_token_protection, SPEC §6, empirical).

Attention-output error, per layer in isolation: one full-precision forward over each held-out
perplexity window records every layer's attention inputs (post-RoPE queries and keys, values, the
model's own mask — causal, and sliding-window on Gemma's local layers — and scaling). The layer's
attention is then recomputed with the keys the 1-bit cache hands the model (`KeyStore`
with the fitted codec and n protected tokens, `dequantized_keys`) and compared with exact
attention: `‖O_1bit − O_exact‖_F / ‖O_exact‖_F` over heads and positions, averaged over windows.
Every layer sees the same full-precision inputs, so errors do not compound across layers. The
protected keys are checked bit for bit against the originals.

Perplexity: the model run with a `QuantizedKeyCache` of the 1-bit codes and n exact front tokens on
the same windows (`_cache_points`; n = 0 is shared with widget 7).

Synthetic keys (no language model): the same error with Gaussian queries and values over
windows of synthetic held-out keys (no attention sink exists there), and no perplexity.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from impl.attention import causal_mask, masked_softmax
from impl.cache.store import KeyStore

from ...data.models import attention_inputs
from ..context import SYNTHETIC, StudyContext
from ..titles import WIDGET_TITLES
from ..widget import Widget, WidgetOutput, WidgetView, claim
from . import _cache_points as cp
from ._cache_points import Method
from ._keystats import SOURCE_LABEL, Annotation, new_figure, obj

NUMBER = 10
N_PROTECT = (0, 1, 2, 4, 8, 16)
# the two 1-bit codes of the write-up's protection panel, as functions of n_protect
CODECS = {"srht": lambda n: Method("srht", bits=1, n_protect=n),
          "learned_centred": lambda n: Method("ours", bits=1, n_protect=n)}
CODEC_LABEL = {"srht": "SRHT", "learned_centred": "learned+centred"}

_CODEC = obj(["attn_error", "attn_error_layers", "bits_per_coordinate", "ppl", "ppl_ratio", "bit_exact",
              "layer_increases", "mean_increases", "max_increase", "reduction", "outlier"],
             {"attn_error": {"type": "object", "additionalProperties": {"type": "number"}},
              "attn_error_layers": {"type": "object", "additionalProperties": {"type": "array",
                                                                              "items": {"type": "number"}}},
              "bits_per_coordinate": {"type": "object", "additionalProperties": {"type": "number"}},
              "ppl": {"type": ["object", "null"]}, "ppl_ratio": {"type": ["object", "null"]},
              "bit_exact": {"type": "boolean"}, "layer_increases": {"type": "integer"},
              "mean_increases": {"type": "integer"}, "max_increase": {"type": "number"},
              "reduction": {"type": "number"},
              "ppl_peak_n": {"type": ["integer", "null"]}, "ppl_peak": {"type": ["number", "null"]},
              "ppl_rises": {"type": ["integer", "null"]},
              "outlier": obj(["layer", "kind", "value"], {"layer": {"type": "integer"}, "value": {"type": "number"}})})
DATA_SCHEMA: dict[str, Any] = obj(
    ["n_protect", "n_protect_min", "n_protect_max", "error_metric", "sources", "headline"],
    {"n_protect": {"type": "array", "items": {"type": "integer"}},
     "n_protect_min": {"type": "integer"}, "n_protect_max": {"type": "integer"},
     "error_metric": {"type": "string"},
     "headline": {"type": "string"},
     "sources": {"type": "object", "minProperties": 1, "additionalProperties": obj(
         ["language_model", "layers", "windows", "window", "fp_ppl", "codecs"],
         {"language_model": {"type": "boolean"}, "fp_ppl": {"type": ["number", "null"]},
          "codecs": {"type": "object", "minProperties": 1, "additionalProperties": _CODEC}})}},
)


def nkey(n: int) -> str:
    return f"n{n}"


def nkeys_sorted(keys) -> list[str]:
    """n-keys ("n0", "n16", …) in increasing n (a JSON round trip sorts them as strings)."""
    return sorted(keys, key=lambda k: int(k[1:]))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scaling: float,
           softcap: float | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scaling [softcapped] + mask) v for q (B, Hq, Q, d), k and v (B, H, T, ·),
    query head h reading kv head h // (Hq/H); a boolean mask is True where attention is allowed,
    None means causal (bottom-right aligned)."""
    G = q.shape[1] // k.shape[1]
    kk = k.float().repeat_interleave(G, dim=1)
    vv = v.float().repeat_interleave(G, dim=1)
    logits = (q.float() @ kk.transpose(-1, -2)) * scaling
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if mask is None:
        mask = causal_mask(logits.shape[-2], logits.shape[-1])[None, None]
    return masked_softmax(logits, mask) @ vv


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    den = float(torch.linalg.vector_norm(exact.double()))
    return float(torch.linalg.vector_norm((approx - exact).double())) / den if den > 0 else 0.0


def protected_keys(codec, keys: torch.Tensor, n_protect: int,
                   exact_dtype: torch.dtype = cp.EXACT_DTYPE) -> tuple[torch.Tensor, bool]:
    """The keys the cache hands the attention for `keys` (B, H, T, d) with `n_protect` exact front
    tokens stored in `exact_dtype` (the widget's perplexity cache stores them in float16), and
    whether those are bit-exact copies of the originals rounded to `exact_dtype`."""
    store = KeyStore(codec, n_protect=n_protect, exact_dtype=exact_dtype)
    store.append(keys)
    out = store.dequantized_keys().to(keys.dtype)
    n = min(n_protect, keys.shape[2])
    exact = True
    if n:
        want = keys[:, :, :n].to(exact_dtype)
        exact = bool(torch.equal(store.protected_keys(), want)) and bool(torch.equal(out[:, :, :n], want.to(keys.dtype)))
    return out, exact


def _layer_inputs(ctx: StudyContext, source: str) -> Iterator[dict[int, dict[str, Any]]]:
    """Per window (yielded one at a time): per layer the attention inputs (real model: captured
    from a full-precision forward; synthetic: held-out keys with Gaussian queries and values)."""
    if cp.is_lm(source):
        model, _ = ctx.model(source)
        windows = ctx.ppl_windows(source)
        for i in range(windows.shape[0]):
            with torch.no_grad(), attention_inputs(model) as sink:
                model(windows[i: i + 1], use_cache=False, logits_to_keep=1)
            yield dict(sink)
        return
    keys = ctx.keys(source, cp.VIEW)["heldout"]                              # (L, H, T, d)
    L, H, T, d = keys.shape
    W = min(ctx.budget.ppl_window, T)
    n_windows = max(1, min(ctx.budget.ppl_windows, T // W))
    gen = torch.Generator().manual_seed(ctx.seed + 10)
    for i in range(n_windows):
        layers = {}
        for layer in range(L):
            layers[layer] = {"q": torch.randn(1, H, W, d, generator=gen), "k": keys[layer, :, i * W:(i + 1) * W][None],
                             "v": torch.randn(1, H, W, d, generator=gen), "mask": None, "scaling": d ** -0.5,
                             "softcap": None}
        yield layers


def _attention_errors(ctx: StudyContext, source: str) -> tuple[dict[str, dict[str, list[float]]], dict[str, bool],
                                                                  dict[str, int]]:
    """Per codec: per n-key the per-layer error averaged over windows; whether every protected key
    was bit-exact; and the number of windows, layers and tokens per window."""
    cs = {codec: cp.method_codecs(ctx, source, method(0)) for codec, method in CODECS.items()}
    L = len(next(iter(cs.values())))
    sums = {codec: {nkey(n): [0.0] * L for n in N_PROTECT} for codec in cs}
    bit_exact = {codec: True for codec in cs}
    windows, width = 0, 0
    for window in _layer_inputs(ctx, source):
        windows += 1
        for layer, x in window.items():
            width = int(x["k"].shape[2])
            exact = attend(x["q"], x["k"], x["v"], x["mask"], x["scaling"], x["softcap"])
            for codec, codecs in cs.items():
                for n in N_PROTECT:
                    k_hat, ok = protected_keys(codecs[layer], x["k"], n)
                    bit_exact[codec] &= ok
                    sums[codec][nkey(n)][layer] += relative_error(
                        attend(x["q"], k_hat, x["v"], x["mask"], x["scaling"], x["softcap"]), exact)
    errs = {codec: {k: [v / windows for v in vals] for k, vals in per.items()} for codec, per in sums.items()}
    return errs, bit_exact, {"windows": windows, "layers": L, "window": width}


def _increases(errs: dict[str, list[float]]) -> dict[str, Any]:
    keys = [nkey(n) for n in N_PROTECT]
    L = len(errs[keys[0]])
    layer_inc, max_inc = 0, 0.0
    for layer in range(L):
        for a, b in zip(keys, keys[1:]):
            if errs[b][layer] > errs[a][layer]:
                layer_inc += 1
                max_inc = max(max_inc, errs[b][layer] - errs[a][layer])
    means = [sum(errs[k]) / L for k in keys]
    mean_inc = sum(1 for a, b in zip(means, means[1:]) if b > a)
    # outlier: the layer with the largest increase, if any; else the layer protection helps least
    first, last = keys[0], keys[-1]
    if layer_inc:
        layer = max(range(L), key=lambda i: max(errs[b][i] - errs[a][i] for a, b in zip(keys, keys[1:])))
        outlier = {"layer": layer, "kind": "largest increase", "value":
                   max(errs[b][layer] - errs[a][layer] for a, b in zip(keys, keys[1:]))}
    else:
        red = [1 - errs[last][i] / errs[first][i] if errs[first][i] > 0 else 0.0 for i in range(L)]
        layer = min(range(L), key=lambda i: red[i])
        outlier = {"layer": layer, "kind": "smallest reduction", "value": red[layer]}
    return {"layer_increases": layer_inc, "mean_increases": mean_inc, "max_increase": max_inc, "outlier": outlier,
            "reduction": 1 - means[-1] / means[0] if means[0] > 0 else 0.0}


def _ppl_shape(ppl: dict[str, float] | None) -> dict[str, Any]:
    """Where perplexity peaks over n_protect and how often it rises from one n to the next."""
    if ppl is None:
        return {"ppl_peak_n": None, "ppl_peak": None, "ppl_rises": None}
    keys = [nkey(n) for n in N_PROTECT]
    peak = max(keys, key=lambda k: ppl[k])
    return {"ppl_peak_n": int(peak[1:]), "ppl_peak": ppl[peak],
            "ppl_rises": sum(1 for a, b in zip(keys, keys[1:]) if ppl[b] > ppl[a])}


def compute(ctx: StudyContext) -> WidgetOutput:
    data: dict[str, Any] = {
        "n_protect": list(N_PROTECT), "n_protect_min": min(N_PROTECT), "n_protect_max": max(N_PROTECT),
        "error_metric": "per layer ‖O_1bit − O_exact‖_F / ‖O_exact‖_F of the layer's attention output on its own "
                        "full-precision inputs (held-out windows), averaged over windows; attn_error: mean over layers",
        "sources": {}}
    token_counts: dict[str, Any] = {}
    srcs = cp.sources(ctx)
    for source in srcs:
        lm = cp.is_lm(source)
        all_errs, all_exact, shape = _attention_errors(ctx, source)
        entry: dict[str, Any] = {"language_model": lm, **shape,
                                 "fp_ppl": cp.fp_point(ctx, source)["ppl"] if lm else None, "codecs": {}}
        for codec, method in CODECS.items():
            errs, exact = all_errs[codec], all_exact[codec]
            with_ppl = lm
            bits, ppl, ratio = {}, {} if with_ppl else None, {} if with_ppl else None
            for n in tqdm(N_PROTECT, desc=f"widget 10 {source} {codec}", disable=not ctx.progress, leave=False):
                if with_ppl:
                    p = cp.point(ctx, source, method(n))
                    ppl[nkey(n)], ratio[nkey(n)] = p["ppl"], p["ppl_ratio"]
                else:
                    p = cp.cache_point(ctx, source, method(n))
                bits[nkey(n)] = p["bits_per_coordinate"]
            L = len(errs[nkey(0)])
            entry["codecs"][codec] = {"attn_error": {k: sum(v) / L for k, v in errs.items()},
                                      "attn_error_layers": errs, "bits_per_coordinate": bits, "ppl": ppl,
                                      "ppl_ratio": ratio, "bit_exact": exact, **_increases(errs),
                                      **_ppl_shape(ppl)}
        data["sources"][source] = entry
        token_counts[source] = {"windows": entry["windows"], "window": entry["window"], **ctx.token_counts(source)}
    data["headline"] = srcs[0]
    return WidgetOutput(data=data, claims=_claims(data), token_counts=token_counts,
                        models=[s for s in srcs if s != SYNTHETIC],
                        settings={"view": cp.VIEW, "n_protect": list(N_PROTECT), "rank": 0,
                                  "codecs": {k: m(0).as_dict() for k, m in CODECS.items()},
                                  "perplexity": "every codec and n_protect, held-out windows",
                                  "error_metric": data["error_metric"]})


def _claims(data: dict[str, Any]) -> list[dict[str, Any]]:
    exact = {f"{s}_{c}": e["codecs"][c]["bit_exact"] for s, e in data["sources"].items() for c in e["codecs"]}
    inc = {f"{s}_{c}": {"layer_increases": e["codecs"][c]["layer_increases"],
                        "mean_increases": e["codecs"][c]["mean_increases"],
                        "max_increase": e["codecs"][c]["max_increase"]}
           for s, e in data["sources"].items() for c in e["codecs"]}
    layer_total = sum(v["layer_increases"] for v in inc.values())
    mean_total = sum(v["mean_increases"] for v in inc.values())
    verdict = ("reproduces" if layer_total == 0 else "partly reproduces" if mean_total == 0 else "does not reproduce")
    return [
        claim("front_token_protection_bit_exact",
              "Keeping the first n_protect tokens' keys exact leaves those keys bit-exact (front_token_protection; "
              "here: bit-exact in the cache's float16 storage)", "bit-exact", exact,
              "reproduces" if all(exact.values()) else "does not reproduce",
              "The cache's protected keys and the keys it hands the attention compared with torch.equal, every layer, "
              "window, codec and n_protect."),
        claim("front_token_protection_no_increase",
              "Protection must not increase the attention-output error (front_token_protection)",
              "error non-increasing in n_protect", inc, verdict,
              "Per-layer relative attention-output error on held-out windows between consecutive n_protect values; "
              "reproduces when no layer's error ever rises, partly when only single layers rise but the mean over "
              "layers never does."),
    ]


# ------------------------------------------------------------------------------------------ view


def view(result: dict[str, Any]) -> WidgetView:
    data = result["data"]
    a = Annotation(result)
    head = data["headline"]
    e = data["sources"][head]
    lc = f"data.sources.{head}.codecs.learned_centred"
    sr = f"data.sources.{head}.codecs.srht"
    order = nkeys_sorted(e["codecs"]["learned_centred"]["attn_error"])  # JSON sorts keys: order by n
    n0, nmax = order[0], order[-1]
    lm = e["language_model"]
    what = (f"Relative attention-output error of each layer of {SOURCE_LABEL.get(head, head)} with 1-bit keys "
            f"(each layer on its own full-precision inputs; {a.int(f'data.sources.{head}.windows')} held-out windows "
            f"of {a.int(f'data.sources.{head}.window')} tokens)"
            + (" and held-out perplexity" if lm else " (synthetic Gaussian queries and values; no perplexity)")
            + f" vs the number of front tokens kept exact, n_protect from {a.int('data.n_protect_min')} to "
              f"{a.int('data.n_protect_max')}.")
    trend = (f"learned+centred: mean error {a.num(f'{lc}.attn_error.{n0}', '.4f')} → "
             f"{a.num(f'{lc}.attn_error.{nmax}', '.4f')} ({a.pct(f'{lc}.reduction')} lower); SRHT "
             f"{a.num(f'{sr}.attn_error.{n0}', '.4f')} → {a.num(f'{sr}.attn_error.{nmax}', '.4f')}")
    if lm:
        trend += (f"; perplexity (learned+centred) {a.num(f'{lc}.ppl.{n0}', '.4g')} → "
                  f"{a.num(f'{lc}.ppl.{nmax}', '.4g')}"
                  f" (full precision {a.num(f'data.sources.{head}.fp_ppl', '.4g')}) at "
                  f"{a.num(f'{lc}.bits_per_coordinate.{n0}', '.4g')} → "
                  f"{a.num(f'{lc}.bits_per_coordinate.{nmax}', '.4g')} bits/coord")
        peak = e["codecs"]["learned_centred"].get("ppl_peak_n")
        if e["codecs"]["learned_centred"].get("ppl_rises") and peak not in (0, None):
            trend += (f", peaking at {a.num(f'{lc}.ppl_peak', '.4g')} with n_protect = "
                      f"{a.int(f'{lc}.ppl_peak_n')}: protection does not lower perplexity monotonically.")
        else:
            trend += "."
    else:
        trend += "."
    oc = max(e["codecs"], key=lambda c: (e["codecs"][c]["layer_increases"], c == "learned_centred"))
    op = f"data.sources.{head}.codecs.{oc}"
    o = e["codecs"][oc]
    if o["layer_increases"]:
        outlier = (f"Rule: a layer whose error rises with more protection — {CODEC_LABEL[oc]} has "
                   f"{a.int(op + '.layer_increases')} rises; largest in layer {a.int(op + '.outlier.layer')} "
                   f"(+{a.num(op + '.outlier.value', '.2e')}).")
    else:
        outlier = (f"Rule: no layer's error ever rises with protection, so the layer it helps least — "
                   f"{CODEC_LABEL[oc]} layer {a.int(op + '.outlier.layer')}: only "
                   f"{a.pct(op + '.outlier.value')} lower at the largest n_protect.")
    return WidgetView(figure=_figure(data), what=what, trend=trend, outlier=outlier, sources=a.sources)


_COLOR = {"srht": "tab:blue", "learned_centred": "tab:orange"}


def _protect_axis(ax, xs: list[float], ns: list[int]) -> None:
    """The shared n_protect x-axis (log₂, n = 0 drawn at 0.5), grid and legend of a panel."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(n) for n in ns])
    ax.set_xlabel("n_protect (front tokens kept exact)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def _figure(data: dict[str, Any]):
    srcs = data["sources"]
    ncols = sum(2 if e["language_model"] else 1 for e in srcs.values())
    fig, axes = new_figure(ncols)
    col = 0
    ns = [int(k[1:]) for k in nkeys_sorted(next(iter(srcs.values()))["codecs"]["learned_centred"]["attn_error"])]
    xs = [max(n, 0.5) for n in ns]  # n = 0 drawn at 0.5 on the log axis
    for s, e in srcs.items():
        ax = axes[0][col]
        for c, ce in e["codecs"].items():
            for layer_err in zip(*[ce["attn_error_layers"][nkey(n)] for n in ns]):
                ax.plot(xs, layer_err, color=_COLOR[c], alpha=0.15, lw=0.8)
            ax.plot(xs, [ce["attn_error"][nkey(n)] for n in ns], color=_COLOR[c], marker="o", lw=2,
                    label=f"{CODEC_LABEL[c]} (mean over layers)")
        _protect_axis(ax, xs, ns)
        ax.set_ylabel("relative attention-output error")
        ax.set_yscale("log")
        ax.set_title(f"{SOURCE_LABEL.get(s, s)} — attention error (thin: layers)")
        col += 1
        if e["language_model"]:
            ax = axes[0][col]
            for c, ce in e["codecs"].items():
                if ce["ppl"] is not None:
                    ax.plot(xs, [ce["ppl"][nkey(n)] for n in ns], color=_COLOR[c], marker="o",
                            label=f"1-bit {CODEC_LABEL[c]}, r = 0")
            ax.axhline(e["fp_ppl"], color="black", ls=":", label=f"full-precision keys ({e['fp_ppl']:.3g})")
            _protect_axis(ax, xs, ns)
            cp.set_ppl_scale(ax, [v for ce in e["codecs"].values() if ce["ppl"] for v in ce["ppl"].values()]
                             + [e["fp_ppl"]])
            ax.set_ylabel("held-out perplexity")
            ax.set_title(f"{SOURCE_LABEL.get(s, s)} — perplexity")
            col += 1
    return fig


WIDGET = Widget(NUMBER, WIDGET_TITLES[NUMBER], DATA_SCHEMA, compute, view)
