"""Widget 9 — Pareto frontier: every operating point of the 1-bit key cache as key bits per
coordinate against held-out perplexity and against held-out β_eff; the non-dominated set in each
plane; the curve through the uniform-k points (learned+centred codec, the same correction rank k
in every layer, no protection) and the write-up's ringed sweet spot k = d/8.

The points are widget 7's grid plus the uniform-k ranks (`_cache_points`; computed once per run
and shared through ``ctx.memo``). β_eff is the shift-invariant held-out β_eff of
`_cache_points` (it compares centred and uncentred codecs on what softmax sees).

Frontier: a point is dominated when another has no more bits and no worse quality (perplexity
lower-or-equal, β_eff higher-or-equal) and differs in at least one. Knee of the uniform-k curve:
with bits normalised to [0, 1] and the quality gain over the k = 0 point normalised to [0, 1]
(log perplexity; β_eff), the point with the largest gain above the chord (Kneedle's rule).
"""

from __future__ import annotations

import math
from typing import Any

from tqdm.auto import tqdm

from ..context import SYNTHETIC, StudyContext
from ..titles import WIDGET_TITLES
from ..widget import Widget, WidgetOutput, WidgetView, claim
from . import _cache_points as cp
from ._keystats import SOURCE_LABEL, Annotation, new_figure, obj
from .w07_perplexity_memory import grid as w07_grid

NUMBER = 9
UNIFORM_FRACTIONS = (0.0, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)   # two cache runs beyond widget 7's grid
RING_FRACTION = 1 / 8
PLANES = ("ppl", "beta")

_POINT = obj(["codec", "rank", "k_over_d", "n_protect", "uniform_k", "bits_per_coordinate", "ppl", "ppl_ratio",
              "beta_eff", "beta_eff_shift", "on_frontier_ppl", "on_frontier_beta"],
             {"bits_per_coordinate": {"type": "number"}, "ppl": {"type": ["number", "null"]},
              "beta_eff_shift": {"type": "number"}, "uniform_k": {"type": "boolean"},
              "on_frontier_ppl": {"type": ["boolean", "null"]}, "on_frontier_beta": {"type": "boolean"}})
_KNEE = {"type": ["object", "null"], "required": ["id", "rank", "k_over_d", "margin"]}
DATA_SCHEMA: dict[str, Any] = obj(
    ["quality_metric", "fp16_bits", "ring_fraction", "uniform_fractions", "sources", "headline"],
    {
        "quality_metric": {"type": "string"},
        "fp16_bits": {"type": "number"},
        "ring_fraction": {"type": "number"},
        "uniform_fractions": {"type": "array", "items": {"type": "number"}},
        "headline": {"type": "string"},
        "sources": {"type": "object", "minProperties": 1, "additionalProperties": obj(
            ["language_model", "head_dim", "fp", "points", "frontier", "uniform_k", "ring", "knee", "summary"],
            {
                "language_model": {"type": "boolean"},
                "head_dim": {"type": "integer"},
                "fp": {"type": ["object", "null"]},
                "points": {"type": "object", "minProperties": 1, "additionalProperties": _POINT},
                "frontier": obj(list(PLANES), {"ppl": {"type": ["array", "null"], "items": {"type": "string"}},
                                               "beta": {"type": "array", "items": {"type": "string"}}}),
                "uniform_k": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "ring": {"type": "string"},
                "knee": obj(list(PLANES), {"ppl": _KNEE, "beta": _KNEE}),
                "summary": {"type": "object"},
            })},
    },
)


# ------------------------------------------------------------------------------------- frontier


def non_dominated(points: dict[str, tuple[float, float]]) -> list[str]:
    """Ids of the points (x, y) — both to be minimised — that no other point dominates, by x."""
    out = []
    for i, (x, y) in points.items():
        dominated = any(x2 <= x and y2 <= y and (x2 < x or y2 < y) for j, (x2, y2) in points.items() if j != i)
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: (points[i][0], points[i][1]))


def knee(curve: list[tuple[str, float, float]]) -> tuple[str, float] | None:
    """Kneedle on (id, bits, cost) sorted by bits, cost to be minimised: the id with the largest
    normalised gain above the chord, and that margin; None when the curve has < 3 points or no
    spread."""
    if len(curve) < 3:
        return None
    x0, x1 = curve[0][1], curve[-1][1]
    c0, c1 = curve[0][2], curve[-1][2]
    if x1 <= x0 or c0 == c1:
        return None
    best = max(curve[1:-1], key=lambda p: (c0 - p[2]) / (c0 - c1) - (p[1] - x0) / (x1 - x0))
    margin = (c0 - best[2]) / (c0 - c1) - (best[1] - x0) / (x1 - x0)
    return best[0], margin


def uniform_ranks(ctx: StudyContext, d: int) -> list[int]:
    return sorted({cp.rank_of(d, f) for f in UNIFORM_FRACTIONS})


def compute(ctx: StudyContext) -> WidgetOutput:
    data: dict[str, Any] = {
        "quality_metric": "held-out beta_eff_shift: 1 − Σ‖e_t − ē‖² / Σ‖k_t − k̄‖², e_t = k_t − k̂_t (keys and errors "
                          "up to a common shift, which softmax ignores), mean over layers and kv heads",
        "fp16_bits": cp.FP16_BITS, "ring_fraction": RING_FRACTION,
        "uniform_fractions": list(UNIFORM_FRACTIONS),
        "sources": {}}
    token_counts: dict[str, Any] = {}
    srcs = cp.sources(ctx)
    for source in srcs:
        lm = cp.is_lm(source)
        d = cp.shape_of(ctx, source)["head_dim"]
        ranks = uniform_ranks(ctx, d)
        todo = list(dict.fromkeys(w07_grid(ctx, source) + [("learned_centred", r, 0) for r in ranks]))
        points: dict[str, dict[str, Any]] = {}
        for codec, rank, n in tqdm(todo, desc=f"widget 9 {source}", disable=not ctx.progress, leave=False):
            p = cp.point(ctx, source, codec, rank, n)
            points[cp.point_id(codec, rank, n)] = {
                k: p[k] for k in ("codec", "rank", "k_over_d", "n_protect", "bits_per_coordinate", "ppl", "ppl_ratio",
                                  "beta_eff", "beta_eff_shift")}
        uniform = [cp.point_id("learned_centred", r, 0) for r in ranks]
        for pid, p in points.items():
            p["uniform_k"] = pid in uniform
        frontier = {
            "ppl": non_dominated({i: (p["bits_per_coordinate"], p["ppl"]) for i, p in points.items()}) if lm else None,
            "beta": non_dominated({i: (p["bits_per_coordinate"], -p["beta_eff_shift"]) for i, p in points.items()}),
        }
        for pid, p in points.items():
            p["on_frontier_ppl"] = (pid in frontier["ppl"]) if lm else None
            p["on_frontier_beta"] = pid in frontier["beta"]
        knees: dict[str, Any] = {}
        for plane in PLANES:
            if plane == "ppl" and not lm:
                knees[plane] = None
                continue
            cost = (lambda p: math.log(p["ppl"])) if plane == "ppl" else (lambda p: -p["beta_eff_shift"])
            k = knee([(i, points[i]["bits_per_coordinate"], cost(points[i])) for i in uniform])
            knees[plane] = None if k is None else {"id": k[0], "rank": points[k[0]]["rank"],
                                                   "k_over_d": points[k[0]]["k_over_d"], "margin": k[1]}
        ring = cp.point_id("learned_centred", cp.rank_of(d, RING_FRACTION), 0)
        summary = {"points": len(points), "uniform_points": len(uniform)}
        for plane in PLANES:
            f = frontier[plane]
            if f is None:
                continue
            summary[f"frontier_{plane}_size"] = len(f)
            summary[f"frontier_{plane}_uniform"] = sum(1 for i in f if i in uniform)
            summary[f"uniform_on_frontier_{plane}"] = sum(1 for i in uniform if i in f)
            summary[f"frontier_{plane}_first"] = f[0]
            summary[f"frontier_{plane}_last"] = f[-1]
            summary[f"frontier_{plane}_other"] = next((i for i in f if i not in uniform), None)
        fp = None
        if lm:
            f0 = cp.fp_point(ctx, source)
            fp = {"ppl": f0["ppl"], "bits_per_coordinate": f0["bits_per_coordinate"]}
        data["sources"][source] = {"language_model": lm, "head_dim": d, "fp": fp, "points": points,
                                   "frontier": frontier, "uniform_k": uniform, "ring": ring, "knee": knees,
                                   "summary": summary}
        token_counts[source] = ctx.token_counts(source)
    data["headline"] = srcs[0]
    return WidgetOutput(data=data, claims=_claims(data), token_counts=token_counts,
                        models=[s for s in srcs if s != SYNTHETIC],
                        settings={"view": cp.VIEW, "uniform_fractions": data["uniform_fractions"],
                                  "ring_fraction": RING_FRACTION, "points": "widget 7's grid + uniform-k ranks",
                                  "quality_metric": data["quality_metric"]})


def _claims(data: dict[str, Any]) -> list[dict[str, Any]]:
    knees, on_front, detail = [], [], {}
    uniform_front, total_front = 0, 0
    for s, e in data["sources"].items():
        for plane in PLANES:
            f = e["frontier"][plane]
            if f is None:
                continue
            kn = e["knee"][plane]
            knees.append(kn is not None and kn["id"] == e["ring"])
            on_front.append(e["ring"] in f)
            uniform_front += sum(1 for i in f if i in e["uniform_k"])
            total_front += len(f)
            detail[f"{s}_{plane}"] = {"knee_k_over_d": None if kn is None else kn["k_over_d"],
                                      "ring_on_frontier": e["ring"] in f}
    if all(knees) and all(on_front):
        v1 = "reproduces"
    elif any(knees) or any(on_front):
        v1 = "partly reproduces"
    else:
        v1 = "does not reproduce"
    lm = any(e["language_model"] for e in data["sources"].values())
    planes = "perplexity and β_eff" if lm else "β_eff only (no language model: perplexity not measured)"
    out = [claim("pareto_sweet_spot_k_d8", "The sweet spot of the uniform-k frontier is k = d/8 (ringed)",
                 {"k_over_d": data["ring_fraction"]}, detail, v1,
                 f"Knee (Kneedle: largest normalised gain above the chord) of the held-out uniform-k curve, in "
                 f"{planes}; reproduces when the knee is k = d/8 and that point is non-dominated in every plane, "
                 f"partly when d/8 is the knee in some plane or non-dominated in some plane.")]
    share = uniform_front / total_front if total_front else 0.0
    v2 = "reproduces" if share == 1.0 else ("partly reproduces" if share >= 0.5 else "does not reproduce")
    out.append(claim("pareto_frontier_uniform_k", "The frontier runs through the uniform-k points",
                     "frontier = uniform-k curve", {"uniform_share_of_frontier": share,
                                                    "frontier_points": total_front}, v2,
                     f"Share of non-dominated points (bits vs held-out {planes}) that are uniform-k points "
                     f"(learned+centred, n = 0); partly when at least half."))
    if not lm:
        out.append(claim("pareto_perplexity_frontier", "Bits per key coordinate vs held-out perplexity frontier",
                         "figure", None, "not measured",
                         "No language model is available (synthetic keys only): perplexity cannot be measured."))
    return out


# ------------------------------------------------------------------------------------------ view


def _lab(a: Annotation, base: str, pid: str) -> str:
    codec = cp.CODEC_LABEL[a.result["data"]["sources"][base.split(".")[2]]["points"][pid]["codec"]]
    return f"{codec} r = {a.int(f'{base}.points.{pid}.rank')}, n = {a.int(f'{base}.points.{pid}.n_protect')}"


def view(result: dict[str, Any]) -> WidgetView:
    data = result["data"]
    a = Annotation(result)
    head = data["headline"]
    e = data["sources"][head]
    b = f"data.sources.{head}"
    lm = e["language_model"]
    plane = "ppl" if lm else "beta"
    qual = "held-out perplexity" if lm else "held-out β_eff"
    ring = e["ring"]
    what = (f"{a.int(b + '.summary.points')} operating points of the 1-bit key cache on "
            f"{SOURCE_LABEL.get(head, head)}: key bits per coordinate vs held-out "
            + ("perplexity and vs held-out β_eff" if lm else "β_eff (synthetic keys: no perplexity")
            + ("" if lm else ")")
            + f"; black: the non-dominated set; dashed: the {a.int(b + '.summary.uniform_points')} uniform-k points "
              f"(learned+centred, the same rank k in every layer); ringed: k = {a.int(f'{b}.points.{ring}.rank')}.")
    first, last = e["summary"][f"frontier_{plane}_first"], e["summary"][f"frontier_{plane}_last"]
    q = (lambda pid: "×" + a.num(f"{b}.points.{pid}.ppl_ratio")) if lm else \
        (lambda pid: "β_eff " + a.num(f"{b}.points.{pid}.beta_eff_shift"))
    trend = (f"The {qual} frontier has {a.int(f'{b}.summary.frontier_{plane}_size')} points, from "
             f"{_lab(a, b, first)} ({q(first)} at {a.num(f'{b}.points.{first}.bits_per_coordinate', '.4g')} bits) to "
             f"{_lab(a, b, last)} ({q(last)} at {a.num(f'{b}.points.{last}.bits_per_coordinate', '.4g')} bits); the "
             f"ringed point: {q(ring)}, β_eff {a.num(f'{b}.points.{ring}.beta_eff_shift')} at "
             f"{a.num(f'{b}.points.{ring}.bits_per_coordinate', '.4g')} bits/coord.")
    kn = e["knee"][plane]
    other = e["summary"].get(f"frontier_{plane}_other")
    if kn is not None:
        outlier = (f"Rule: the knee of the uniform-k curve (largest normalised gain above the chord) — k = "
                   f"{a.int(f'{b}.knee.{plane}.rank')} (k/d = {a.num(f'{b}.knee.{plane}.k_over_d', '.4g')}) vs the "
                   f"write-up's ringed sweet spot k/d = {a.num('data.ring_fraction', '.4g')}")
    else:
        outlier = "Rule: the knee of the uniform-k curve — undefined (fewer than three distinct points)"
    if other is not None:
        outlier += (f"; off-curve frontier point: {_lab(a, b, other)} ({q(other)} at "
                    f"{a.num(f'{b}.points.{other}.bits_per_coordinate', '.4g')} bits).")
    else:
        outlier += "; every frontier point is a uniform-k point."
    return WidgetView(figure=_figure(data), what=what, trend=trend, outlier=outlier, sources=a.sources)


def _figure(data: dict[str, Any]):
    srcs = data["sources"]
    panels = [(s, plane) for s, e in srcs.items() for plane in PLANES if e["frontier"][plane] is not None]
    fig, axes = new_figure(len(panels))
    for ax, (s, plane) in zip(axes[0], panels):
        e = srcs[s]
        pts = e["points"]
        y = (lambda p: p["ppl"]) if plane == "ppl" else (lambda p: p["beta_eff_shift"])
        others = [p for i, p in pts.items() if not p["uniform_k"]]
        ax.scatter([p["bits_per_coordinate"] for p in others], [y(p) for p in others], s=22, color="grey",
                   alpha=0.7, label="operating points (SRHT, protected)", zorder=2)
        f = e["frontier"][plane]
        ax.plot([pts[i]["bits_per_coordinate"] for i in f], [y(pts[i]) for i in f], color="black", lw=1.2,
                marker=".", label="non-dominated frontier", zorder=3)
        u = e["uniform_k"]
        ax.plot([pts[i]["bits_per_coordinate"] for i in u], [y(pts[i]) for i in u], color="tab:orange", ls="--",
                marker="o", ms=5, label="uniform-k (learned+centred, n = 0)", zorder=4)
        for i in u:
            ax.annotate(f"k={pts[i]['rank']}", (pts[i]["bits_per_coordinate"], y(pts[i])), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
        r = pts[e["ring"]]
        ax.scatter([r["bits_per_coordinate"]], [y(r)], s=260, facecolors="none", edgecolors="red", lw=1.5,
                   label=f"ring: k = d/{round(1 / data['ring_fraction'])}", zorder=5)
        ax.axvline(data["fp16_bits"], color="grey", ls=":", lw=1, label=f"fp16 keys ({data['fp16_bits']} bits)")
        if plane == "ppl":
            ax.axhline(e["fp"]["ppl"], color="black", ls=":", lw=1, label=f"full-precision keys ({e['fp']['ppl']:.3g})")
            cp.set_ppl_scale(ax, [p["ppl"] for p in pts.values()] + [e["fp"]["ppl"]])
            ax.set_ylabel("held-out perplexity")
        else:
            ax.axhline(1.0, color="black", ls=":", lw=1, label="exact keys (β_eff = 1)")
            ax.set_ylabel("held-out β_eff (shift-invariant)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("key bits per coordinate")
        ax.set_title(f"{SOURCE_LABEL.get(s, s)} — {'perplexity' if plane == 'ppl' else 'β_eff'}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    return fig


WIDGET = Widget(NUMBER, WIDGET_TITLES[NUMBER], DATA_SCHEMA, compute, view)
