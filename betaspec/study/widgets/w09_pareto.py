"""Widget 9 — Pareto frontier: every key code — betaspec's learned+centred codes and the published
peers — as key bits per coordinate against the held-out perplexity ratio, per model and context
length, with the non-dominated set; the check "learned+centred codes beat every peer at equal or
fewer bits", computed from the data; the issue's quality targets; and the write-up's uniform-k
curve (the 1-bit learned+centred code with the same float16 correction rank k in every layer) with
its ringed sweet spot k = d/8.

The points are widget 7's (`_cache_points`, shared through ``ctx.memo``) plus the uniform-k ranks.
Bits per coordinate are the position-averaged bits (`_cache_points`, ``bits_position_mean``): what
the cache held when each predicted position was scored, so exact recent tokens are paid for.
Without a language model (synthetic keys) the quality axis is the shift-invariant held-out β_eff.

Frontier: a point is dominated when another has no more bits and no worse quality and differs in at
least one. Knee of the uniform-k curve: with bits normalised to [0, 1] and the quality gain over the
k = 0 point normalised to [0, 1] (log perplexity; β_eff), the point with the largest gain above the
chord (Kneedle's rule).
"""

from __future__ import annotations

import math
from typing import Any

from tqdm.auto import tqdm

from ..context import SYNTHETIC, StudyContext
from ..titles import WIDGET_TITLES
from ..widget import Widget, WidgetOutput, WidgetView, claim
from . import _cache_points as cp
from ._cache_points import Method
from ._keystats import SOURCE_LABEL, Annotation, new_figure, obj
from .w07_perplexity_memory import FAMILY_STYLE, contexts_for
from .w07_perplexity_memory import grid as w07_grid

NUMBER = 9
UNIFORM_FRACTIONS = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2)
RING_FRACTION = 1 / 8
TARGETS = ((1.3, 1.8), (2.3, 1.25), (3.3, 1.05))   # (bits ≤, perplexity ratio ≤): the key-cache issue's targets
BITS_TOL = 1e-9

_POINT = obj(["family", "label", "bits_per_coordinate", "ppl_ratio", "beta_eff_shift", "on_frontier"],
             {"bits_per_coordinate": {"type": "number"}, "ppl_ratio": {"type": ["number", "null"]},
              "beta_eff_shift": {"type": "number"}, "on_frontier": {"type": "boolean"}})
DATA_SCHEMA: dict[str, Any] = obj(
    ["quality", "fp16_bits", "ring_fraction", "uniform_fractions", "targets", "sources", "headline"],
    {
        "quality": {"type": "string"},
        "fp16_bits": {"type": "number"},
        "ring_fraction": {"type": "number"},
        "uniform_fractions": {"type": "array", "items": {"type": "number"}},
        "targets": {"type": "array"},
        "headline": {"type": "string"},
        "sources": {"type": "object", "minProperties": 1, "additionalProperties": obj(
            ["language_model", "head_dim", "contexts", "uniform_k", "ring", "knee"],
            {
                "language_model": {"type": "boolean"},
                "head_dim": {"type": "integer"},
                "contexts": {"type": "object", "minProperties": 1, "additionalProperties": obj(
                    ["points", "frontier", "versus_peers", "targets"],
                    {"points": {"type": "object", "minProperties": 1, "additionalProperties": _POINT},
                     "frontier": {"type": "array", "items": {"type": "string"}},
                     "versus_peers": {"type": "object"}, "targets": {"type": "array"}})},
                "uniform_k": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "ring": {"type": "string"},
                "knee": {"type": ["object", "null"]},
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


def versus_peers(points: dict[str, dict[str, Any]], cost) -> dict[str, Any]:
    """For every peer point (any family but "ours"): the best learned+centred point with no more
    bits, and whether it has a lower cost. A peer point no learned+centred point matches in bits is
    not comparable; those of them on the frontier (``cheaper_on_frontier``) hold a part of it that no
    learned+centred point reaches, so they count against the claim too."""
    ours = {i: p for i, p in points.items() if p["family"] == "ours"}
    rows = {}
    for pid, p in points.items():
        if p["family"] == "ours":
            continue
        cands = [i for i, o in ours.items() if o["bits_per_coordinate"] <= p["bits_per_coordinate"] + BITS_TOL]
        if not cands:
            rows[pid] = {"comparable": False, "ours": None, "win": None}
            continue
        best = min(cands, key=lambda i: cost(ours[i]))
        rows[pid] = {"comparable": True, "ours": best, "win": cost(ours[best]) < cost(p)}
    comparable = [r for r in rows.values() if r["comparable"]]
    front = non_dominated({i: (p["bits_per_coordinate"], cost(p)) for i, p in points.items()})
    return {"rows": rows, "comparable": len(comparable), "wins": sum(1 for r in comparable if r["win"]),
            "losses": sorted(i for i, r in rows.items() if r["comparable"] and not r["win"]),
            "cheaper_on_frontier": sorted(i for i, r in rows.items() if not r["comparable"] and i in front)}


def target_rows(points: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per target (bits ≤ B, ratio ≤ X): the best learned+centred point and the best peer within B bits."""
    out = []
    for bits, ratio in TARGETS:
        row: dict[str, Any] = {"max_bits": bits, "max_ratio": ratio}
        for side, test in (("ours", lambda f: f == "ours"), ("peer", lambda f: f != "ours")):
            cands = [(p["ppl_ratio"], i) for i, p in points.items()
                     if test(p["family"]) and p["bits_per_coordinate"] <= bits + BITS_TOL and p["ppl_ratio"] is not None]
            best = min(cands) if cands else None
            row[side] = None if best is None else {"id": best[1], "ppl_ratio": best[0]}
        row["met"] = row["ours"] is not None and row["ours"]["ppl_ratio"] <= ratio
        row["below_every_peer"] = (row["ours"] is not None and (row["peer"] is None
                                                                or row["ours"]["ppl_ratio"] < row["peer"]["ppl_ratio"]))
        out.append(row)
    return out


def uniform_methods() -> list[Method]:
    return [Method("ours", bits=1, rank_fraction=f) for f in UNIFORM_FRACTIONS]


def compute(ctx: StudyContext) -> WidgetOutput:
    data: dict[str, Any] = {
        "quality": "held-out perplexity ratio to full-precision keys (real models); held-out β_eff_shift "
                   "(synthetic keys)",
        "fp16_bits": cp.FP16_BITS, "ring_fraction": RING_FRACTION, "uniform_fractions": list(UNIFORM_FRACTIONS),
        "targets": [{"max_bits": b, "max_ratio": r} for b, r in TARGETS], "sources": {}}
    token_counts: dict[str, Any] = {}
    srcs = cp.sources(ctx)
    for source in srcs:
        lm = cp.is_lm(source)
        d = cp.shape_of(ctx, source)["head_dim"]
        cost = (lambda p: p["ppl_ratio"]) if lm else (lambda p: -p["beta_eff_shift"])
        contexts = {}
        for context in contexts_for(ctx, source):
            todo = list(dict.fromkeys(w07_grid(ctx, source, context) + (uniform_methods() if context == "short" else [])))
            points = {}
            for m in tqdm(todo, desc=f"widget 9 {source} {context}", disable=not ctx.progress, leave=False):
                p = cp.point(ctx, source, m, context)
                points[m.id] = {k: p[k] for k in ("family", "label", "rank", "ppl", "ppl_ratio", "beta_eff_shift")}
                points[m.id]["bits_per_coordinate"] = p["bits_position_mean"]
            front = non_dominated({i: (p["bits_per_coordinate"], cost(p)) for i, p in points.items()})
            for i, p in points.items():
                p["on_frontier"] = i in front
            contexts[context] = {"points": points, "frontier": front, "versus_peers": versus_peers(points, cost),
                                 "targets": target_rows(points) if lm else []}
        uniform = [m.id for m in uniform_methods()]
        short = contexts["short"]["points"]
        kn = knee([(i, short[i]["bits_per_coordinate"], math.log(short[i]["ppl_ratio"]) if lm else cost(short[i]))
                   for i in uniform])
        ring = Method("ours", bits=1, rank_fraction=RING_FRACTION).id
        data["sources"][source] = {
            "language_model": lm, "head_dim": d, "contexts": contexts, "uniform_k": uniform, "ring": ring,
            "knee": None if kn is None else {"id": kn[0], "rank": short[kn[0]]["rank"], "margin": kn[1]}}
        token_counts[source] = ctx.token_counts(source)
    data["headline"] = srcs[0]
    return WidgetOutput(data=data, claims=_claims(data), token_counts=token_counts,
                        models=[s for s in srcs if s != SYNTHETIC],
                        settings={"view": cp.VIEW, "uniform_fractions": data["uniform_fractions"],
                                  "ring_fraction": RING_FRACTION, "points": "widget 7's methods + uniform-k ranks",
                                  "targets": data["targets"]})


def _claims(data: dict[str, Any]) -> list[dict[str, Any]]:
    srcs = data["sources"]
    lm = any(e["language_model"] for e in srcs.values())
    quality = "perplexity" if lm else "β_eff (no language model: perplexity not measured)"
    # 1. learned+centred codes against every peer at equal or fewer bits
    comparable = wins = 0
    losses: dict[str, list[str]] = {}
    cheaper: dict[str, list[str]] = {}
    for s, e in srcs.items():
        for c, ce in e["contexts"].items():
            vp = ce["versus_peers"]
            comparable += vp["comparable"]
            wins += vp["wins"]
            if vp["losses"]:
                losses[f"{s}_{c}"] = [ce["points"][i]["label"] for i in vp["losses"]]
            if vp["cheaper_on_frontier"]:
                cheaper[f"{s}_{c}"] = [ce["points"][i]["label"] for i in vp["cheaper_on_frontier"]]
    unbeaten = comparable - wins + sum(len(v) for v in cheaper.values())
    verdict = ("not measured" if comparable + unbeaten == 0 else "reproduces" if unbeaten == 0
               else "partly reproduces" if wins else "does not reproduce")
    out = [claim("learned_centred_beats_every_peer",
                 "Learned+centred codes beat every peer (KIVI, TurboQuant, QJL, the SRHT sign code) at equal or fewer "
                 "bits (key-cache issue)", "every peer point beaten by a learned+centred point with no more bits",
                 {"peer_points_comparable": comparable, "beaten": wins, "not_beaten": losses,
                  "cheaper_than_every_ours_on_frontier": cheaper}, verdict,
                 f"For each peer point, the best learned+centred point with no more bits per coordinate (the "
                 f"position-averaged bits of the cache's formula) and its held-out {quality}; a peer point cheaper "
                 f"than every learned+centred point that sits on the frontier counts as not beaten; every model and "
                 f"context measured.")]
    # 2. the targets (real models only)
    if lm:
        met = {f"{s}_{c}": [{"max_bits": r["max_bits"], "ours": r["ours"], "met": r["met"],
                             "below_every_peer": r["below_every_peer"]} for r in ce["targets"]]
               for s, e in srcs.items() for c, ce in e["contexts"].items() if ce["targets"]}
        flags = [r["met"] for rows in met.values() for r in rows]
        v = "reproduces" if all(flags) else ("partly reproduces" if any(flags) else "does not reproduce")
        out.append(claim("quality_targets", "Perplexity ratio ≤ ×1.8 at ≤ 1.3 bits, ≤ ×1.25 at ≤ 2.3 bits, ≤ ×1.05 at "
                         "≤ 3.3 bits (the key-cache issue's targets)", [list(t) for t in TARGETS], met, v,
                         "Best learned+centred point within each bit budget, held-out perplexity ratio, every model "
                         "and context."))
    # 3. the write-up's uniform-k sweet spot
    knees, on_front, detail = [], [], {}
    for s, e in srcs.items():
        kn = e["knee"]
        front = e["contexts"]["short"]["frontier"]
        knees.append(kn is not None and kn["id"] == e["ring"])
        on_front.append(e["ring"] in front)
        detail[s] = {"knee_rank": None if kn is None else kn["rank"], "ring_on_frontier": e["ring"] in front}
    v1 = ("reproduces" if all(knees) and all(on_front) else
          "partly reproduces" if any(knees) or any(on_front) else "does not reproduce")
    out.append(claim("pareto_sweet_spot_k_d8", "The sweet spot of the uniform-k frontier is k = d/8 (ringed)",
                     {"k_over_d": data["ring_fraction"]}, detail, v1,
                     f"Knee (Kneedle) of the uniform-k curve (1-bit learned+centred, float16 coefficients) in held-out "
                     f"{quality}, short context; reproduces when the knee is k = d/8 and that point is on the frontier "
                     f"of all methods, partly when one of the two holds."))
    uni = tot = 0
    for e in srcs.values():
        front = e["contexts"]["short"]["frontier"]
        uni += sum(1 for i in front if i in e["uniform_k"])
        tot += len(front)
    share = uni / tot if tot else 0.0
    v2 = "reproduces" if share == 1.0 else ("partly reproduces" if share >= 0.5 else "does not reproduce")
    out.append(claim("pareto_frontier_uniform_k", "The frontier runs through the uniform-k points",
                     "frontier = uniform-k curve", {"uniform_share_of_frontier": share, "frontier_points": tot}, v2,
                     "Share of the short-context frontier (every method) that is uniform-k points; partly when at "
                     "least half."))
    return out


# ------------------------------------------------------------------------------------------ view


def view(result: dict[str, Any]) -> WidgetView:
    data = result["data"]
    a = Annotation(result)
    head = data["headline"]
    e = data["sources"][head]
    b = f"data.sources.{head}.contexts.short"
    lm = e["language_model"]
    q = (lambda pid: "×" + a.num(f"{b}.points.{pid}.ppl_ratio")) if lm else \
        (lambda pid: "β_eff " + a.num(f"{b}.points.{pid}.beta_eff_shift"))
    pts = e["contexts"]["short"]["points"]
    front = e["contexts"]["short"]["frontier"]
    what = (f"{len(pts)} key codes on {SOURCE_LABEL.get(head, head)} (short context) and every other model and "
            f"context measured: bits per key coordinate (cache memory report) against held-out "
            + ("perplexity ratio" if lm else "β_eff (synthetic keys: no perplexity)")
            + "; black line: the non-dominated set; colours: the code family.")
    vp = e["contexts"]["short"]["versus_peers"]
    trend = (f"The frontier has {len(front)} points, from {pts[front[0]]['label']} ({q(front[0])} at "
             f"{a.num(f'{b}.points.{front[0]}.bits_per_coordinate', '.4g')} bits) to {pts[front[-1]]['label']} "
             f"({q(front[-1])} at {a.num(f'{b}.points.{front[-1]}.bits_per_coordinate', '.4g')} bits); learned+centred "
             f"beats {a.int(b + '.versus_peers.wins')} of {a.int(b + '.versus_peers.comparable')} comparable peer "
             f"points at equal or fewer bits.")
    if vp["losses"]:
        lid = vp["losses"][0]
        oid = vp["rows"][lid]["ours"]
        outlier = (f"Rule: the first peer point not beaten at equal or fewer bits — {pts[lid]['label']} "
                   f"({q(lid)} at {a.num(f'{b}.points.{lid}.bits_per_coordinate', '.4g')} bits) vs {pts[oid]['label']} "
                   f"({q(oid)} at {a.num(f'{b}.points.{oid}.bits_per_coordinate', '.4g')} bits).")
    else:
        kn = e["knee"]
        outlier = ("Rule: the first peer point not beaten at equal or fewer bits — every comparable one is beaten; "
                   "the uniform-k knee is "
                   + (f"k = {a.int(f'data.sources.{head}.knee.rank')}" if kn else "undefined")
                   + f" vs the write-up's k/d = {a.num('data.ring_fraction', '.4g')}.")
    return WidgetView(figure=_figure(data), what=what, trend=trend, outlier=outlier, sources=a.sources)


def _figure(data: dict[str, Any]):
    panels = [(s, c) for s, e in data["sources"].items() for c in e["contexts"]]
    fig, axes = new_figure(len(panels))
    for ax, (s, c) in zip(axes[0], panels):
        e = data["sources"][s]
        lm = e["language_model"]
        pts = e["contexts"][c]["points"]
        y = (lambda p: p["ppl_ratio"]) if lm else (lambda p: p["beta_eff_shift"])
        for fam, (marker, color) in FAMILY_STYLE.items():
            fp = [p for p in pts.values() if p["family"] == fam]
            if fp:
                ax.scatter([p["bits_per_coordinate"] for p in fp], [y(p) for p in fp], marker=marker, s=36,
                           color=color, alpha=0.85, label=cp.FAMILY_LABEL[fam], zorder=3)
        front = e["contexts"][c]["frontier"]
        ax.plot([pts[i]["bits_per_coordinate"] for i in front], [y(pts[i]) for i in front], color="black", lw=1.2,
                label="non-dominated frontier", zorder=2)
        if c == "short" and e["ring"] in pts:
            r = pts[e["ring"]]
            ax.scatter([r["bits_per_coordinate"]], [y(r)], s=240, facecolors="none", edgecolors="red", lw=1.4,
                       label=f"ring: 1-bit + k = d/{round(1 / data['ring_fraction'])}", zorder=4)
        if lm:
            for bits, ratio in TARGETS:
                ax.plot([bits], [ratio], marker="*", color="gold", markeredgecolor="black", ms=11, zorder=5)
            ax.plot([], [], marker="*", color="gold", markeredgecolor="black", ls="", label="issue targets")
            ax.axhline(1.0, color="black", ls=":", lw=1, label="full-precision keys")
            ax.set_ylabel("held-out perplexity / full-precision")
            cp.set_ppl_scale(ax, [p["ppl_ratio"] for p in pts.values()] + [1.0])
        else:
            ax.axhline(1.0, color="black", ls=":", lw=1, label="exact keys (β_eff = 1)")
            ax.set_ylabel("held-out β_eff (shift-invariant)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("key bits per coordinate")
        ax.set_title(f"{SOURCE_LABEL.get(s, s)} — {c} context")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    return fig


WIDGET = Widget(NUMBER, WIDGET_TITLES[NUMBER], DATA_SCHEMA, compute, view)
