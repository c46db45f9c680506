"""Widget 6 — rank-r residual correction: γ_r and β_eff against r (0 … d) for the deployed codec
(learned rotation + DC centring, post-RoPE keys), the basis fitted on train residuals and
measured on train, held-out and out-of-domain keys (beta_eff_formula, svd_topk_maximizes_gammaR,
residual_topk_eckart_young).

In the rotated frame `y = R(k − m)`, with `e = y − α s` the 1-bit residual and `B` the rank-r
basis (`impl.calibration.quality.codec_quality`): `β₁ᵦ = 1 − Σ‖e‖²/Σ‖y‖²` (energy-weighted),
`γ_r = Σ‖BBᵀe‖²/Σ‖e‖²`, and the measured `β_eff = 1 − Σ‖e − BBᵀe‖²/Σ‖y‖²`. The composition law
`β_eff = 1 − (1 − β₁ᵦ)(1 − γ_r)` is checked per head against (a) that float64 measurement and
(b) the reconstruction the 1-bit cache actually decodes (`TransformCodec.encode`/`decode`, scale and
coefficients stored in float16), `1 − Σ‖k − k̂‖²/Σ‖k − m‖²`. With the mean per-vector β in place of
the energy β the law is only approximate; that discrepancy is reported too.
"""

from __future__ import annotations

from typing import Any

import torch

from impl.residual import beta_eff

from ...data.corpus import SPLIT_NAMES
from ..context import StudyContext
from ..titles import WIDGET_TITLES
from ..widget import Widget, WidgetOutput, WidgetView, claim
from ._keystats import (
    Annotation,
    fnum,
    mean,
    new_figure,
    num_array,
    obj,
    real_sources,
    where,
)

NUMBER = 6
VIEW = "post_rope"
FRACTIONS = (("d16", 16), ("d8", 8), ("d4", 4), ("d2", 2))
CACHE_TOL = 2 * 2.0**-11   # float16 storage of α and the coefficients (see _claims)
LAW_TOL = 1e-10   # float64 accumulation over ≤ 10⁵ tokens: the law must hold to rounding

_SPLIT = obj(["gamma", "gamma_q10", "gamma_q90", "beta_eff", "beta_eff_formula", "beta_eff_vector_formula",
              "beta_energy", "beta_v"], {
    **{k: num_array(2) for k in ("gamma", "gamma_q10", "gamma_q90", "beta_eff", "beta_eff_formula",
                                 "beta_eff_vector_formula")},
    "beta_energy": {"type": "number"}, "beta_v": {"type": "number"}})
_FRACTION = obj(["r", "gamma", "beta_eff", "gamma_train"], {k: {"type": "number"} for k in
                                                             ("r", "gamma", "beta_eff", "gamma_train")})
DATA_SCHEMA: dict[str, Any] = obj(
    ["sources"],
    {"sources": {"type": "object", "minProperties": 1, "additionalProperties": obj(
        ["view", "d", "ranks", "splits", "by_fraction", "discrepancy", "cache"], {
            "view": {"type": "string"}, "d": {"type": "integer"},
            "ranks": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
            "splits": obj(list(SPLIT_NAMES), {s: _SPLIT for s in SPLIT_NAMES}),
            "by_fraction": obj([k for k, _ in FRACTIONS], {k: _FRACTION for k, _ in FRACTIONS}),
            "discrepancy": obj(["energy_max", "vector_max", "vector_mean", "cache_fp16_max"], {
                k: {"type": "number", "minimum": 0} for k in ("energy_max", "vector_max", "vector_mean",
                                                               "cache_fp16_max")}),
            "cache": obj(["beta_eff"], {"beta_eff": num_array(2)}),
        })}},
)


def ranks_for(d: int) -> list[int]:
    """0, 1, 2, d/16, d/8, d/4, d/2, 3d/4, d (deduplicated, sorted)."""
    return sorted({r for r in (0, 1, 2, d // 16, d // 8, d // 4, d // 2, 3 * d // 4, d) if 0 <= r <= d})


def _q(xs: list[float], p: float) -> float:
    return fnum(torch.tensor(xs, dtype=torch.float64).quantile(p))


def _source(ctx: StudyContext, source: str) -> dict[str, Any]:
    d = ctx.head_dim(source)
    ranks = ranks_for(d)
    keys = ctx.keys(source, VIEW)
    splits: dict[str, dict[str, Any]] = {s: {k: [] for k in ("gamma", "gamma_q10", "gamma_q90", "beta_eff",
                                                             "beta_eff_formula", "beta_eff_vector_formula")}
                                         for s in SPLIT_NAMES}
    energy_max = vector_max = 0.0
    vector_all: list[float] = []
    cache_curve, cache_max = [], 0.0
    for r in ranks:
        codecs = ctx.codecs(source, VIEW, "learned", True, r)
        for split in SPLIT_NAMES:
            q = [h for row in ctx.quality(source, VIEW, "learned", True, r, split) for h in row]
            law = [beta_eff(h.beta_energy, h.gamma) for h in q]
            vec = [beta_eff(h.beta, h.gamma) for h in q]
            energy_max = max(energy_max, max(abs(h.beta_eff - x) for h, x in zip(q, law)))
            dv = [abs(h.beta_eff - x) for h, x in zip(q, vec)]
            vector_max = max(vector_max, max(dv))
            vector_all += dv
            sp = splits[split]
            gam = [h.gamma for h in q]
            sp["gamma"].append(mean(gam))
            sp["gamma_q10"].append(_q(gam, 0.1))
            sp["gamma_q90"].append(_q(gam, 0.9))
            sp["beta_eff"].append(mean([h.beta_eff for h in q]))
            sp["beta_eff_formula"].append(mean(law))
            sp["beta_eff_vector_formula"].append(mean(vec))
            if r == 0:
                sp["beta_energy"] = mean([h.beta_energy for h in q])
                sp["beta_v"] = mean([h.beta for h in q])
            if split == "heldout":
                per_head = []
                for layer, codec in enumerate(codecs):
                    k = keys["heldout"][layer].unsqueeze(0)                           # (1, H, T, d)
                    k_hat = codec.decode(codec.encode(k)).double()[0]
                    k64 = k[0].double()
                    resid = ((k64 - codec.mean.double()[:, None, :]) ** 2).sum((-1, -2))
                    err = ((k64 - k_hat) ** 2).sum((-1, -2))
                    per_head += [float(1.0 - e / t) if t > 0 else 0.0 for e, t in zip(err, resid)]
                cache_max = max(cache_max, max(abs(c - x) for c, x in zip(per_head, law)))
                cache_curve.append(mean(per_head))
    held, train = splits["heldout"], splits["train"]
    by_fraction = {}
    for name, div in FRACTIONS:
        i = ranks.index(d // div)
        by_fraction[name] = {"r": d // div, "gamma": held["gamma"][i], "beta_eff": held["beta_eff"][i],
                             "gamma_train": train["gamma"][i]}
    return {"view": VIEW, "d": d, "ranks": ranks, "splits": splits, "by_fraction": by_fraction,
            "discrepancy": {"energy_max": fnum(energy_max), "vector_max": fnum(vector_max),
                            "vector_mean": mean(vector_all), "cache_fp16_max": fnum(cache_max)},
            "cache": {"beta_eff": cache_curve}}


def compute(ctx: StudyContext) -> WidgetOutput:
    data = {"sources": {source: _source(ctx, source) for source in ctx.key_sources}}
    models = real_sources(ctx)
    return WidgetOutput(
        data=data, claims=_claims(data),
        settings={"view": VIEW, "codec": "learned rotation + DC centring", "basis": "top-r right singular vectors of "
                  "the train 1-bit residuals (ctx.codecs)", "ranks": {s: ranks_for(ctx.head_dim(s))
                                                                      for s in ctx.key_sources},
                  "law_tolerance": LAW_TOL, "cache_tolerance": CACHE_TOL,
                  "cache_storage": "scale and coefficients float16"},
        models=models, token_counts={s: ctx.token_counts(s) for s in ctx.key_sources}, seeds=[ctx.seed])


def _claims(data: dict[str, Any]) -> list[dict[str, Any]]:
    disc = {s: e["discrepancy"] for s, e in data["sources"].items()}
    worst = max(e["cache_fp16_max"] for e in disc.values())
    return [claim(
        "beta_eff_composition", "The effective quality after rank-r correction is β_eff = 1 − (1 − β₁ᵦ)(1 − γ_r).",
        "β_eff = 1 − (1 − β₁ᵦ)(1 − γ_r)", disc, "reproduces" if worst <= CACHE_TOL else "does not reproduce",
        f"Per held-out head and every r, β_eff measured by decoding through the cache (encode → decode, α and the "
        f"coefficients stored in float16), 1 − Σ‖k − k̂‖²/Σ‖k − m‖², against the law composed from the code's energy "
        f"β₁ᵦ and the basis' γ_r: max |difference| {worst:.1e} (tolerance {CACHE_TOL:.1e}: float16 rounding moves "
        f"each stored value by ≤ 2⁻¹¹ of itself, so the error energy by ≤ 2·2⁻¹¹ of the coded energy). The same law "
        f"against the float64 sums that define β₁ᵦ and γ_r holds by construction (energy_max, an identity); with the "
        f"mean per-vector β it is approximate (vector_max).")]


# ------------------------------------------------------------------------------------------ view
def view(result: dict[str, Any]) -> WidgetView:
    data = result["data"]
    sources = list(data["sources"])
    fig, axes = new_figure(3, width=5.0, height=4.2)
    ax_g, ax_b, ax_e = axes[0]
    for i, s in enumerate(sources):
        e = data["sources"][s]
        col = f"C{i}"
        x = [r / e["d"] for r in e["ranks"]]
        h, t = e["splits"]["heldout"], e["splits"]["train"]
        ax_g.plot(x, h["gamma"], color=col, marker="o", ms=3, label=f"{where(s, e['view'])} (d = {e['d']}), held-out")
        ax_g.fill_between(x, h["gamma_q10"], h["gamma_q90"], color=col, alpha=0.15)
        ax_g.plot(x, t["gamma"], color=col, ls="--", label=f"{where(s, e['view'])}, train")
        ax_b.plot(x, h["beta_eff_formula"], color=col, label=f"{where(s, e['view'])}: law 1 − (1 − β₁ᵦ)(1 − γ_r)")
        ax_b.plot(x, h["beta_eff"], "o", color=col, ms=4, mfc="none", label="measured (float64)")
        ax_b.plot(x, e["cache"]["beta_eff"], "x", color=col, ms=4, label="measured through the fp16 cache")
        ax_b.plot(x, h["beta_eff_vector_formula"], ":", color=col, label="law with mean per-vector β")
        ax_b.plot(x, e["splits"]["ood"]["beta_eff"], "s", color=col, ms=3, alpha=0.5, label="measured, OOD")
        bars = ("energy_max", "vector_max", "cache_fp16_max")
        ax_e.bar([j + 0.8 * i / len(sources) for j in range(3)],
                 [max(e["discrepancy"][b], 1e-18) for b in bars], width=0.8 / len(sources),
                 color=col, label=where(s, e["view"]))
    for ax in (ax_g, ax_b):
        for _, div in FRACTIONS:
            ax.axvline(1 / div, color="gray", lw=0.6, ls=":")
        ax.set_xlabel("rank r / d  (dotted: d/16, d/8, d/4, d/2)")
    ax_g.set_ylabel("γ_r (share of residual energy captured)")
    ax_g.set_title("γ_r vs r (band: 10–90% of heads, held-out)")
    ax_g.legend(fontsize=6)
    ax_b.set_ylabel("β_eff (held-out, mean over heads)")
    ax_b.set_title("β_eff: law vs measured")
    ax_b.legend(fontsize=5)
    ax_e.set_yscale("log")
    ax_e.set_xticks([0.4 - 0.4 / max(1, len(sources)) + j for j in range(3)],
                    ["law, energy β₁ᵦ\n(float64)", "law, mean\nper-vector β", "law vs fp16\ncache decode"], fontsize=8)
    ax_e.set_ylabel("max |β_eff measured − law| over heads, r, splits")
    ax_e.set_title("composition law discrepancy")
    ax_e.legend(fontsize=7)

    a = Annotation(result)
    what = ("γ_r (share of the 1-bit residual's energy on the top-r directions fitted on train keys) and β_eff against "
            "rank r on held-out keys for the learned+centred codec, with β_eff = 1 − (1 − β₁ᵦ)(1 − γ_r) checked "
            "against the measured reconstruction error.")
    parts = []
    for s in sources:
        p = f"data.sources.{s}"
        bf = f"{p}.by_fraction"
        parts.append(
            f"{where(s, data['sources'][s]['view'])}: β_eff {a.num(p + '.splits.heldout.beta_energy')} at r = 0 → "
            + " / ".join(a.num(f"{bf}.{k}.beta_eff") for k, _ in FRACTIONS)
            + " at r = " + ", ".join(a.int(f"{bf}.{k}.r") for k, _ in FRACTIONS)
            + f" (γ_r {' / '.join(a.num(f'{bf}.{k}.gamma') for k, _ in FRACTIONS)}; train γ at d/8 "
            f"{a.num(bf + '.d8.gamma_train')})")
    trend = "Held-out " + "; ".join(parts) + "."
    # Outlier rule: the largest discrepancy from the law, over key sources, for each way of measuring.
    s = max(sources, key=lambda x: data["sources"][x]["discrepancy"]["vector_max"])
    se = max(sources, key=lambda x: data["sources"][x]["discrepancy"]["energy_max"])
    sc = max(sources, key=lambda x: data["sources"][x]["discrepancy"]["cache_fp16_max"])
    outlier = (f"Largest departures from the law (rule: max |measured − law| over heads, ranks and splits): with the "
               f"energy β₁ᵦ {a.sci(f'data.sources.{se}.discrepancy.energy_max')} ({where(se)}, float64 rounding); "
               f"with the mean per-vector β instead {a.sci(f'data.sources.{s}.discrepancy.vector_max')} (mean "
               f"{a.sci(f'data.sources.{s}.discrepancy.vector_mean')}, {where(s)}) — the law needs the "
               f"energy-weighted β; decoding through the float16 cache departs by "
               f"{a.sci(f'data.sources.{sc}.discrepancy.cache_fp16_max')} ({where(sc)}).")
    return WidgetView(fig, what, trend, outlier, a.sources)


WIDGET = Widget(NUMBER, WIDGET_TITLES[NUMBER], DATA_SCHEMA, compute, view)
