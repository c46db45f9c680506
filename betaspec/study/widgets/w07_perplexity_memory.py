"""Widget 7 — cross-model perplexity and memory: held-out perplexity and key-cache bits per
coordinate for full-precision keys, 1-bit SRHT and 1-bit learned+centred keys, each with a rank-r
correction and n protected front tokens.

Every 1-bit point runs the model with `OneBitKeyCache` as its cache on the held-out perplexity
windows (the generic path; it equals the packed path to float tolerance), and reads the bits per
coordinate from that cache's memory report. The full-precision reference runs the same windows
with a plain `DynamicCache`, whose keys are measured the same way (the model's dtype, float32;
fp16 storage would be 16 bits). Codecs are fitted on the train keys of the post-RoPE view — the
keys the cache stores. Without a language model (synthetic keys only) the memory is measured on a
`OneBitKeyStore` and perplexity is not measured.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from ..context import SYNTHETIC, StudyContext
from ..titles import WIDGET_TITLES
from ..widget import Widget, WidgetOutput, WidgetView, claim
from . import _cache_points as cp
from ._keystats import SOURCE_LABEL, Annotation, new_figure, obj

NUMBER = 7
PROTECT = (0, 4)
RANK_FRACTIONS = (0.0, 1 / 16, 1 / 8, 1 / 4)
# Cost: 16 cache runs + 1 full-precision run per model. On an idle 2-core machine one SmolLM2 run is
# ≈ 1.7 s in quick mode (2 × 256 tokens) and ≈ 11 s in full mode (6 × 512); Gemma ≈ 1.7× that.
FORMULA_TOL = 1e-9

DATA_SCHEMA: dict[str, Any] = obj(
    ["view", "fp16_bits", "protect", "rank_fractions", "sources", "headline"],
    {
        "view": {"const": cp.VIEW},
        "fp16_bits": {"type": "number"},
        "protect": {"type": "array", "items": {"type": "integer"}},
        "rank_fractions": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number"}}},
        "headline": {"type": "string"},
        "sources": {"type": "object", "minProperties": 1, "additionalProperties": obj(
            ["language_model", "layers", "kv_heads", "head_dim", "fp", "points", "summary"],
            {
                "language_model": {"type": "boolean"},
                "fp": {"type": ["object", "null"]},
                "points": {"type": "object", "minProperties": 1, "additionalProperties": cp.POINT_SCHEMA},
                "summary": obj(["best", "worst", "max_formula_error", "deploy_bits_difference"], {
                    "best": {"type": "string"}, "worst": {"type": "string"},
                    "max_formula_error": {"type": "number"}, "deploy_bits_difference": {"type": "number"}}),
            })},
    },
)


def grid(ctx: StudyContext, source: str) -> list[tuple[str, int, int]]:
    """(codec, rank, n_protect) of every 1-bit operating point measured for `source`."""
    d = cp.shape_of(ctx, source)["head_dim"]
    out = []
    for codec in cp.CODECS:
        for rank in sorted({cp.rank_of(d, f) for f in RANK_FRACTIONS}):
            for n in PROTECT:
                out.append((codec, rank, n))
    return out


def _summary(points: dict[str, dict[str, Any]], lm: bool) -> dict[str, Any]:
    score = (lambda p: p["ppl_ratio"]) if lm else (lambda p: -p["beta_eff_shift"])
    ids = sorted(points, key=lambda i: (score(points[i]), points[i]["bits_per_coordinate"]))
    diffs = [abs(points[a]["bits_per_coordinate"] - points[b]["bits_per_coordinate"])
             for a in points for b in points
             if points[a]["codec"] != points[b]["codec"] and points[a]["rank"] == points[b]["rank"]
             and points[a]["n_protect"] == points[b]["n_protect"]]
    return {"best": ids[0], "worst": ids[-1],
            "max_formula_error": max(abs(p["bits_per_coordinate"] - p["bits_formula"]) for p in points.values()),
            "deploy_bits_difference": max(diffs) if diffs else 0.0}


def compute(ctx: StudyContext) -> WidgetOutput:
    data: dict[str, Any] = {"view": cp.VIEW, "fp16_bits": cp.FP16_BITS, "protect": list(PROTECT),
                            "rank_fractions": {codec: list(RANK_FRACTIONS) for codec in cp.CODECS},
                            "sources": {}}
    token_counts: dict[str, Any] = {}
    srcs = cp.sources(ctx)
    for source in srcs:
        lm = cp.is_lm(source)
        shape = cp.shape_of(ctx, source)
        entry: dict[str, Any] = {"language_model": lm, **shape}
        if lm:
            entry["fp"] = cp.fp_point(ctx, source)
            entry["ppl_windows"], entry["ppl_window"] = (int(x) for x in ctx.ppl_windows(source).shape)
        else:
            entry["fp"] = None
        points = {}
        for codec, rank, n in tqdm(grid(ctx, source), desc=f"widget 7 {source}", disable=not ctx.progress,
                                   leave=False):
            points[cp.point_id(codec, rank, n)] = cp.point(ctx, source, codec, rank, n)
        entry["points"] = points
        entry["summary"] = _summary(points, lm)
        data["sources"][source] = entry
        token_counts[source] = {**ctx.token_counts(source),
                                **({"perplexity": entry["fp"]["tokens_predicted"]} if lm else
                                   {"memory": next(iter(points.values()))["tokens"]})}
    data["headline"] = srcs[0]
    return WidgetOutput(data=data, claims=_claims(data), token_counts=token_counts,
                        models=[s for s in srcs if s != SYNTHETIC],
                        settings={"view": cp.VIEW, "codecs": {k: {"rotation": r, "center": c}
                                                              for k, (r, c) in cp.CODECS.items()},
                                  "protect": list(PROTECT), "rank_fractions": data["rank_fractions"],
                                  "scale_dtype": "float16",
                                  "perplexity": "held-out windows (ctx.ppl_windows), generic cache path"})


def _claims(data: dict[str, Any]) -> list[dict[str, Any]]:
    srcs = data["sources"]
    deploy = {s: e["summary"]["deploy_bits_difference"] for s, e in srcs.items()}
    formula = {s: e["summary"]["max_formula_error"] for s, e in srcs.items()}
    out = [
        claim("rotation_centring_free_at_deploy",
              "Rotation and DC-mean centring are free at deploy time (attention_score_gauge_invariance; the "
              "write-up's widget 7 cites it for the free-at-deploy property)",
              "free: no per-token cost", {"max_bits_difference_learned_vs_srht": deploy},
              "reproduces" if max(deploy.values()) <= FORMULA_TOL else "does not reproduce",
              "Bits per key coordinate reported by the cache for learned+centred and SRHT codecs at equal r and n; "
              "the mean and rotation are a per-layer constant (codec_bytes), not stored per token."),
        claim("cache_memory_formula",
              "The cache holds 1 + 16/d + r·16/d bits per key coordinate (protected tokens at their dtype): "
              "no hidden full-precision copy (key-cache issue)",
              "1 + 16/d + r·16/d (+ protected)", {"max_abs_error_bits": formula},
              "reproduces" if max(formula.values()) <= FORMULA_TOL else "does not reproduce",
              "OneBitKeyCache.memory() after the last held-out window (OneBitKeyStore for synthetic keys) against "
              "the formula, every operating point."),
    ]
    lms = {s: e for s, e in srcs.items() if e["language_model"]}
    if not lms:
        out.append(claim("learned_beats_srht_perplexity",
                         "Learned rotation + centring gives lower perplexity than the SRHT at equal memory (the "
                         "write-up's cross-model PPL panel)", "learned+centred below SRHT", None, "not measured",
                         "No language model is available (synthetic keys only): perplexity cannot be measured."))
        return out
    wins, total, detail = 0, 0, {}
    for s, e in lms.items():
        pts = e["points"]
        for pid, p in pts.items():
            if p["codec"] != "learned_centred":
                continue
            other = cp.point_id("srht", p["rank"], p["n_protect"])
            if other in pts:
                total += 1
                wins += p["ppl"] < pts[other]["ppl"]
                detail[f"{s}_r{p['rank']}_n{p['n_protect']}"] = {"learned_centred": p["ppl_ratio"],
                                                                 "srht": pts[other]["ppl_ratio"]}
    verdict = "reproduces" if wins == total else ("partly reproduces" if wins else "does not reproduce")
    out.append(claim("learned_beats_srht_perplexity",
                     "Learned rotation + centring gives lower perplexity than the SRHT at equal memory (the "
                     "write-up's cross-model PPL panel)", "learned+centred below SRHT",
                     {"wins": wins, "pairs": total, "ppl_ratio": detail}, verdict,
                     f"Held-out perplexity ratio to full-precision keys, learned+centred vs SRHT at equal (r, n), "
                     f"{', '.join(lms)}."))
    return out


# ------------------------------------------------------------------------------------------ view


def _label(a: Annotation, base: str, pid: str) -> str:
    p = a.result
    for part in base.split("."):
        p = p[part]
    codec = cp.CODEC_LABEL[p[pid]["codec"]]
    return f"{codec} (r = {a.int(f'{base}.{pid}.rank')}, n = {a.int(f'{base}.{pid}.n_protect')})"


def view(result: dict[str, Any]) -> WidgetView:
    data = result["data"]
    a = Annotation(result)
    srcs = data["sources"]
    head = data["headline"]
    hp = f"data.sources.{head}"
    lm = srcs[head]["language_model"]
    lc, sr = cp.point_id("learned_centred", 0, 0), cp.point_id("srht", 0, 0)
    fp16 = a.int("data.fp16_bits")
    if lm:
        what = (f"Held-out perplexity of {SOURCE_LABEL.get(head, head)} over "
                f"{a.int(hp + '.fp.tokens_predicted')} predicted tokens with 1-bit keys (SRHT or learned+centred, "
                f"rank-r correction, first n tokens exact) against full-precision keys (perplexity "
                f"{a.num(hp + '.fp.ppl', '.4g')}), and key bits per coordinate from the cache's own memory report "
                f"(fp16 = {fp16}).")
        parts = []
        for s, e in srcs.items():
            if not e["language_model"]:
                continue
            sp = f"data.sources.{s}.points"
            parts.append(f"{SOURCE_LABEL.get(s, s)}: learned+centred ×{a.num(f'{sp}.{lc}.ppl_ratio')}"
                         f" vs SRHT ×{a.num(f'{sp}.{sr}.ppl_ratio')} perplexity at "
                         f"{a.num(f'{sp}.{lc}.bits_per_coordinate', '.4g')} bits/coord (r = "
                         f"{a.int(f'{sp}.{lc}.rank')}, n = {a.int(f'{sp}.{lc}.n_protect')})")
        best = srcs[head]["summary"]["best"]
        trend = ("; ".join(parts) + f". Best point: {_label(a, hp + '.points', best)}, ×"
                 f"{a.num(f'{hp}.points.{best}.ppl_ratio')} at "
                 f"{a.num(f'{hp}.points.{best}.bits_per_coordinate', '.4g')} bits/coord.")
        worst_src = max((s for s in srcs if srcs[s]["language_model"]),
                        key=lambda s: srcs[s]["points"][srcs[s]["summary"]["worst"]]["ppl_ratio"])
        wp = f"data.sources.{worst_src}"
        worst = srcs[worst_src]["summary"]["worst"]
        wl = SOURCE_LABEL.get(worst_src, worst_src)
        outlier = (f"Rule: the 1-bit point with the largest perplexity ratio — {wl} "
                   f"{_label(a, wp + '.points', worst)}: ×{a.num(f'{wp}.points.{worst}.ppl_ratio')} at "
                   f"{a.num(f'{wp}.points.{worst}.bits_per_coordinate', '.4g')} bits/coord; reported bits differ from "
                   f"the memory formula by at most {a.num(hp + '.summary.max_formula_error', '.2g')}.")
    else:
        what = (f"Synthetic keys (no language model, so no perplexity): bits per key coordinate from a OneBitKeyStore "
                f"holding {a.int(f'{hp}.points.{lc}.tokens')} held-out keys, and held-out β_eff (shift-invariant) "
                f"for SRHT and learned+centred codecs with rank-r correction and n exact front tokens (fp16 = {fp16}).")
        best = srcs[head]["summary"]["best"]
        trend = (f"learned+centred β_eff {a.num(f'{hp}.points.{lc}.beta_eff_shift')} vs SRHT "
                 f"{a.num(f'{hp}.points.{sr}.beta_eff_shift')} at "
                 f"{a.num(f'{hp}.points.{lc}.bits_per_coordinate', '.4g')} bits/coord; best "
                 f"{_label(a, hp + '.points', best)}: β_eff {a.num(f'{hp}.points.{best}.beta_eff_shift')} at "
                 f"{a.num(f'{hp}.points.{best}.bits_per_coordinate', '.4g')} bits/coord.")
        worst = srcs[head]["summary"]["worst"]
        outlier = (f"Rule: the point with the lowest β_eff — {_label(a, hp + '.points', worst)}: "
                   f"{a.num(f'{hp}.points.{worst}.beta_eff_shift')}; reported bits differ from the memory formula "
                   f"by at most {a.num(hp + '.summary.max_formula_error', '.2g')}.")
    return WidgetView(figure=_figure(data), what=what, trend=trend, outlier=outlier, sources=a.sources)


_STYLE = {"srht": ("o", "tab:blue"), "learned_centred": ("s", "tab:orange")}


def _figure(data: dict[str, Any]):
    srcs = data["sources"]
    fig, axes = new_figure(len(srcs))
    for ax, (s, e) in zip(axes[0], srcs.items()):
        lm = e["language_model"]
        for pid, p in e["points"].items():
            marker, color = _STYLE[p["codec"]]
            y = p["ppl_ratio"] if lm else p["beta_eff_shift"]
            ax.scatter(p["bits_per_coordinate"], y, marker=marker, s=46,
                       facecolors=color if p["n_protect"] else "none", edgecolors=color, zorder=3)
            ax.annotate(f"r={p['rank']}", (p["bits_per_coordinate"], y), textcoords="offset points", xytext=(4, 3),
                        fontsize=7)
        for codec, (marker, color) in _STYLE.items():
            ax.scatter([], [], marker=marker, facecolors="none", edgecolors=color,
                       label=f"{cp.CODEC_LABEL[codec]}, n = 0")
            ax.scatter([], [], marker=marker, color=color, label=f"{cp.CODEC_LABEL[codec]}, n = {data['protect'][-1]}")
        ax.axvline(data["fp16_bits"], color="grey", ls="--", lw=1, label=f"fp16 keys ({data['fp16_bits']} bits)")
        if lm:
            ax.axhline(1.0, color="black", ls=":", lw=1, label=f"full-precision keys (ppl {e['fp']['ppl']:.3g})")
            ax.set_ylabel("held-out perplexity / full-precision perplexity")
            cp.set_ppl_scale(ax, [p["ppl_ratio"] for p in e["points"].values()] + [1.0])
        else:
            ax.axhline(1.0, color="black", ls=":", lw=1, label="exact keys (β_eff = 1)")
            ax.set_ylabel("held-out β_eff (shift-invariant)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("key-cache bits per coordinate (cache memory report)")
        ax.set_title(f"{SOURCE_LABEL.get(s, s)}" + ("" if lm else " — no perplexity"))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    return fig


WIDGET = Widget(NUMBER, WIDGET_TITLES[NUMBER], DATA_SCHEMA, compute, view)
