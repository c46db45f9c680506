"""Widget 4 — DC-mean centring mechanism: the share of key energy carried by the DC mean per
layer (`1 − ρ`), β per layer with and without centring, and the mean-domination collapse of SPEC
§3 on real keys (dc_centering_lifts_rotational_ceiling, l2Norm_uncentered_gt,
centered_energy_accounting).

The collapse: a rotation fitted to uncentred keys puts the dominant mean on a sign-lattice
diagonal; every key `c•s + v` with `|vᵢ| < c` then gets the mean's code `s` and scale `c`, and all
of its residual `v = k − m` is lost. Measured on held-out keys, at every layer and illustrated at
the layer with the largest DC fraction: the share of keys whose code equals the mean's code
`sgn(R m)`, the share of the most frequent code, the number of distinct codes, the mean Hamming
distance to the mean's code, and the fraction of the residual energy `Σ‖k − m‖²` the 1-bit code
loses — for the identity and the learned rotation without centring, against the learned rotation
with centring (`m` = the train mean in every case).
"""

from __future__ import annotations

from typing import Any

import torch

from impl.cache.packing import pack_signs
from impl.sign_quant import residual_energy, sign_vec

from ..context import StudyContext
from ..titles import WIDGET_TITLES
from ..widget import Widget, WidgetOutput, WidgetView, claim
from ._keystats import (
    Annotation,
    centre_key,
    mean,
    new_figure,
    num_array,
    obj,
    preferred,
    real_sources,
    view_configs,
    where,
)

NUMBER = 4
COLLAPSE_CONFIGS = (("identity", False), ("learned", False), ("learned", True))
COLLAPSE_KEYS = ("mean_code_share", "modal_code_share", "distinct_codes", "hamming", "lost_residual")

_COLLAPSE_ENTRY = obj(list(COLLAPSE_KEYS), {k: {"type": "number"} for k in COLLAPSE_KEYS})
_VIEW = obj(["layers", "summary"], {
    "layers": obj(["dc_fraction", "beta_v", "beta_c"], {
        "dc_fraction": num_array(1),
        "beta_v": {"type": "object", "additionalProperties": num_array(1)},
        "beta_c": {"type": "object", "additionalProperties": num_array(1)}}),
    "summary": obj(["dc_fraction_mean", "dc_fraction_max", "max_layer"], {
        "dc_fraction_mean": {"type": "number"}, "dc_fraction_max": {"type": "number"},
        "max_layer": {"type": "integer"}}),
})
DATA_SCHEMA: dict[str, Any] = obj(
    ["sources"],
    {"sources": {"type": "object", "minProperties": 1, "additionalProperties": obj(["views", "collapse"], {
        "views": {"type": "object", "required": ["post_rope"], "additionalProperties": _VIEW},
        "collapse": obj(["layer", "dc_fraction", "configs", "per_layer", "least_gain"], {
            "layer": {"type": "integer"}, "dc_fraction": {"type": "number"},
            "configs": obj([f"{r}_{centre_key(c)}" for r, c in COLLAPSE_CONFIGS],
                           {f"{r}_{centre_key(c)}": _COLLAPSE_ENTRY for r, c in COLLAPSE_CONFIGS}),
            "per_layer": {"type": "object", "additionalProperties": num_array(1)},
            "least_gain": obj(["layer", "beta_raw", "beta_c", "gain"], {
                "layer": {"type": "integer"}, "beta_raw": {"type": "number"}, "beta_c": {"type": "number"},
                "gain": {"type": "number"}}),
        })})}},
)


def _layers(ctx: StudyContext, source: str, view: str, configs: list[tuple[str, bool]]) -> dict[str, Any]:
    beta_v: dict[str, list[float]] = {}
    beta_c: dict[str, list[float]] = {}
    dc: list[float] = []
    for rotation, center in configs:
        q = ctx.quality(source, view, rotation, center, 0, "heldout")
        name = f"{rotation}_{centre_key(center)}"
        beta_v[name] = [mean(h.beta for h in row) for row in q]
        if center:
            beta_c[name] = [mean(h.beta_c for h in row) for row in q]
            if not dc:
                dc = [mean(1.0 - h.rho for h in row) for row in q]
    i = max(range(len(dc)), key=dc.__getitem__)
    return {"layers": {"dc_fraction": dc, "beta_v": beta_v, "beta_c": beta_c},
            "summary": {"dc_fraction_mean": mean(dc), "dc_fraction_max": dc[i], "max_layer": i}}


def _collapse_head(y: torch.Tensor, resid_energy: float, mean_code: torch.Tensor | None) -> dict[str, float]:
    """Collapse statistics of one head's rotated keys y (T, d) (float64)."""
    T, d = y.shape
    codes = pack_signs(y)                                             # (T, ⌈d/8⌉) uint8, sgn 0 = +1
    uniq, counts = torch.unique(codes, dim=0, return_counts=True)
    s = sign_vec(y)
    lost = float(residual_energy(y).sum()) / resid_energy if resid_energy > 0 else 0.0
    out = {"modal_code_share": float(counts.max()) / T, "distinct_codes": float(uniq.shape[0]), "lost_residual": lost}
    if mean_code is not None:
        out["mean_code_share"] = float((s == mean_code).all(-1).double().mean())
        out["hamming"] = float((s != mean_code).double().mean())
    else:
        # Centred keys have no mean code: measure against the modal code instead.
        modal = s[(codes == uniq[counts.argmax()]).all(-1)][0]
        out["mean_code_share"] = out["modal_code_share"]
        out["hamming"] = float((s != modal).double().mean())
    return out


def _collapse(ctx: StudyContext, source: str, layers: dict[str, Any]) -> dict[str, Any]:
    view = "post_rope"
    keys = ctx.keys(source, view)["heldout"]                          # (L, H, T, d)
    L, H = keys.shape[:2]
    centred_fit = ctx.rotation_fit(source, view, "learned", True).codecs
    per_layer: dict[str, list[float]] = {}
    per_config_layer: dict[str, list[dict[str, float]]] = {}
    for rotation, center in COLLAPSE_CONFIGS:
        name = f"{rotation}_{centre_key(center)}"
        codecs = ctx.rotation_fit(source, view, rotation, center).codecs
        rows = []
        for layer in range(L):
            k = keys[layer].double()
            m = centred_fit[layer].mean.double()                      # the train mean
            y = codecs[layer].transform(k.unsqueeze(0))[0]            # R(k − m_codec), (H, T, d)
            heads = []
            for h in range(H):
                resid = float(((k[h] - m[h]) ** 2).sum())
                mean_code = None if center else torch.where(codecs[layer].rotation[h].double() @ m[h] >= 0, 1.0, -1.0)
                heads.append(_collapse_head(y[h], resid, mean_code))
            rows.append({key: mean(x[key] for x in heads) for key in COLLAPSE_KEYS})
        per_config_layer[name] = rows
        for key in ("mean_code_share", "lost_residual"):
            per_layer[f"{name}_{key}"] = [r[key] for r in rows]
    post = layers["post_rope"]
    at = post["summary"]["max_layer"]
    beta_raw = post["layers"]["beta_v"]["learned_raw"]
    beta_c = post["layers"]["beta_c"]["learned_centred"]
    gains = [c - r for c, r in zip(beta_c, beta_raw)]
    j = min(range(len(gains)), key=gains.__getitem__)
    return {"layer": at, "dc_fraction": post["layers"]["dc_fraction"][at],
            "configs": {name: rows[at] for name, rows in per_config_layer.items()}, "per_layer": per_layer,
            "least_gain": {"layer": j, "beta_raw": beta_raw[j], "beta_c": beta_c[j], "gain": gains[j]}}


def compute(ctx: StudyContext) -> WidgetOutput:
    sources = {}
    for source in ctx.key_sources:
        views = {view: _layers(ctx, source, view, configs) for view, configs in view_configs(ctx, source).items()}
        sources[source] = {"views": views, "collapse": _collapse(ctx, source, views)}
    data = {"sources": sources}
    models = real_sources(ctx)
    return WidgetOutput(
        data=data, claims=_claims(data, models),
        settings={"split": "heldout", "collapse_view": "post_rope", "mean": "train mean of each head",
                  "collapse_configs": [f"{r}_{centre_key(c)}" for r, c in COLLAPSE_CONFIGS]},
        models=models, token_counts={s: ctx.token_counts(s) for s in ctx.key_sources}, seeds=[ctx.seed])


def _claims(data: dict[str, Any], models: list[str]) -> list[dict[str, Any]]:
    ineq = ("Centring lifts the rotational ceiling: sup_R cos θ(R v) ≥ sup_R cos θ(R(μe + v)) — read for a batch of "
            "keys, the best mean β of the centred residuals is at least that of the uncentred keys.")
    lift = "Centering a key before rotation raises the achievable β (the optimizer is freed from the O(d−1) subgroup)."
    if not models:
        return [claim("ceiling_inequality_batch", ineq, "sup_R mean β(R v) ≥ sup_R mean β(R(m + v))", None,
                      "not measured", "No real model was available in this run (synthetic keys only)."),
                claim("centring_lifts_key_level_beta", lift, "β rises with centring", None, "not measured",
                      "No real model was available in this run (synthetic keys only).")]
    m_ineq, m_lift, holds, lifts = {}, {}, [], []
    for s in models:
        lay = data["sources"][s]["views"]["post_rope"]["layers"]
        col = data["sources"][s]["collapse"]
        b_raw = mean(lay["beta_v"]["learned_raw"])
        b_v = mean(lay["beta_v"]["learned_centred"])
        b_c = mean(lay["beta_c"]["learned_centred"])
        lr = col["per_layer"]
        lost_raw = mean(lr["learned_raw_lost_residual"])
        lost_c = mean(lr["learned_centred_lost_residual"])
        m_ineq[s] = {"beta_uncentred_learned": b_raw, "beta_v_centred_learned": b_v,
                     "mean_code_share_uncentred": col["configs"]["learned_raw"]["mean_code_share"]}
        m_lift[s] = {"beta_uncentred_learned": b_raw, "beta_c_centred_learned": b_c,
                     "lost_residual_uncentred": lost_raw, "lost_residual_centred": lost_c}
        holds.append(b_v >= b_raw)
        lifts.append(b_c > b_raw and lost_c < lost_raw)
    out = [claim(
        "ceiling_inequality_batch", ineq, "sup_R mean β(R v) ≥ sup_R mean β(R(m + v))", m_ineq,
        "reproduces" if all(holds) else ("partly reproduces" if any(holds) else "does not reproduce"),
        "Held-out post-RoPE keys, mean over layers × heads, rotations learned on train keys (approximate sups): "
        "the uncentred rotation reaches the higher mean β by pinning the mean on a sign-lattice diagonal — the "
        "mean-domination collapse — so the batch inequality fails where it does (SPEC §3: false in batch form)."),
        claim(
        "centring_lifts_key_level_beta", lift, "β rises with centring", m_lift,
        "reproduces" if all(lifts) else ("partly reproduces" if any(lifts) else "does not reproduce"),
        "Held-out post-RoPE keys, mean over layers × heads: key-level β with the mean stored exactly (β_c) against "
        "the uncentred learned β, and the share of the residual energy Σ‖k − m‖² the 1-bit code loses, uncentred "
        "vs centred learned rotation; 'reproduces' when centring wins on both for every model.")]
    return out


# ------------------------------------------------------------------------------------------ view
def view(result: dict[str, Any]) -> WidgetView:
    data = result["data"]
    sources = list(data["sources"])
    fig, axes = new_figure(2 + len(sources), width=4.6, height=4.2)
    ax = axes[0][0]
    for s in sources:
        for v, entry in data["sources"][s]["views"].items():
            dc = entry["layers"]["dc_fraction"]
            ax.plot(range(len(dc)), dc, marker="o", ms=3, ls="-" if v == "post_rope" else "--", label=where(s, v))
    ax.set_xlabel("layer")
    ax.set_ylabel("DC fraction of key energy, 1 − ρ (held-out)")
    ax.set_ylim(0, 1)
    ax.set_title("energy carried by the DC mean")
    ax.legend(fontsize=7)

    styles = {"identity_raw": ("gray", ":"), "srht_raw": ("tab:purple", ":"), "learned_raw": ("tab:red", "-"),
              "identity_centred": ("gray", "--"), "srht_centred": ("tab:purple", "--"),
              "learned_centred": ("tab:blue", "-")}
    for ax, s in zip(axes[0][1:], sources):
        lay = data["sources"][s]["views"]["post_rope"]["layers"]
        for name, ys in lay["beta_v"].items():
            color, ls = styles.get(name, ("black", "-"))
            ax.plot(range(len(ys)), ys, color=color, ls=ls, label=f"β, {name.replace('_', ' ')}")
        if "learned_centred" in lay["beta_c"]:
            ys = lay["beta_c"]["learned_centred"]
            ax.plot(range(len(ys)), ys, color="tab:green", lw=2, label="β_c, learned centred (mean stored)")
        ax.axhline(2 / 3.141592653589793, color="black", lw=0.8, ls="-.", label="2/π")
        ax.set_xlabel("layer")
        ax.set_ylabel("held-out β (mean over heads)")
        ax.set_ylim(0.3, 1.01)
        ax.set_title(f"{where(s, 'post_rope')}: β per layer", fontsize=10)
        ax.legend(fontsize=6)

    ax = axes[0][-1]
    names = [f"{r}_{centre_key(c)}" for r, c in COLLAPSE_CONFIGS]
    width = 0.8 / max(1, len(sources))
    bar = width / 3
    for i, s in enumerate(sources):
        col = data["sources"][s]["collapse"]["configs"]
        xs = [j + i * width for j in range(3)]
        ax.bar(xs, [col[n]["mean_code_share"] for n in names], width=bar, color=f"C{2 * i}",
               label=f"{where(s)}: keys with exactly the mean's code")
        ax.bar([x + bar for x in xs], [1.0 - col[n]["hamming"] for n in names], width=bar, color=f"C{2 * i}",
               alpha=0.45, label=f"{where(s)}: bits equal to the mean's code")
        ax.bar([x + 2 * bar for x in xs], [col[n]["lost_residual"] for n in names], width=bar, color=f"C{2 * i + 1}",
               hatch="//", label=f"{where(s)}: share of Σ‖k − m‖² lost")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(3)], ["identity,\nuncentred", "learned,\nuncentred",
                                                           "learned,\ncentred"])
    top = max([1.0] + [data["sources"][s]["collapse"]["configs"][n]["lost_residual"] for s in sources for n in names])
    ax.set_ylim(0, 1.08 * top)
    ax.axhline(1.0, color="black", lw=0.6, ls=":")
    ax.set_ylabel("fraction of held-out keys / of residual energy")
    ax.set_title("mean-domination collapse at the largest-DC layer\n(centred: against the modal code)", fontsize=9)
    ax.legend(fontsize=6)

    a = Annotation(result)
    what = ("Share of key energy carried by the DC mean (1 − ρ) per layer, held-out β per layer with and without "
            "centring, and the mean-domination collapse at the layer with the largest DC share: the codes of a "
            "rotation fitted without centring against one fitted with it.")
    parts = []
    for s in sources:
        p = f"data.sources.{s}"
        c = f"{p}.collapse.configs"
        parts.append(
            f"{where(s, 'post_rope')}: the mean carries {a.pct(p + '.views.post_rope.summary.dc_fraction_mean')} of "
            f"key energy on average, {a.pct(p + '.collapse.dc_fraction')} at layer {a.int(p + '.collapse.layer')}, "
            f"where the learned rotation fitted without centring gives {a.pct(c + '.learned_raw.mean_code_share')} "
            f"of held-out keys exactly the mean's code (mean Hamming distance {a.num(c + '.learned_raw.hamming')}) "
            f"and loses {a.pct(c + '.learned_raw.lost_residual')} of the residual energy, against "
            f"{a.pct(c + '.learned_centred.lost_residual')} with centring")
    trend = "; ".join(parts) + "."
    # Outlier rule: the (source, layer) where centring gains least in key-level β (β_c − uncentred β, minimum).
    s = min(preferred(sources), key=lambda x: data["sources"][x]["collapse"]["least_gain"]["gain"])
    g = f"data.sources.{s}.collapse.least_gain"
    outlier = (f"Smallest gain from centring (rule: min over layers of the real models, or synthetic keys without a real model, "
               f"of β_c − uncentred learned β): "
               f"{where(s, 'post_rope')} layer {a.int(g + '.layer')}, β_c {a.num(g + '.beta_c')} vs uncentred "
               f"{a.num(g + '.beta_raw')} (gain {a.num(g + '.gain', '+.3f')}).")
    return WidgetView(fig, what, trend, outlier, a.sources)


WIDGET = Widget(NUMBER, WIDGET_TITLES[NUMBER], DATA_SCHEMA, compute, view)
