"""Widget 2 — isotropic floor and SRHT: the mean 1-bit cosine after a data-independent rotation
(the SRHT `2^{−n/2} H_n D` and a Haar rotation) against d, on synthetic iid keys with
non-Gaussian coordinates and on the real keys of each key source, compared with the exact
finite-d value `sphere_expected_cos(d)` (a uniformly random direction) and the limit `√(2/π)`
(srht_achieves_isotropic_floor, isotropic_floor_pos, gaussian_moment_ratio_floor_eq).

The mean β of a uniform direction is also exact at finite d:
`E cos² = E‖g‖₁² / (d·E‖g‖²) = 2/π + (1 − 2/π)/d` (direction and norm of a Gaussian g are
independent), recorded as `sphere_beta`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from impl.hadamard import random_signs, srht
from impl.moments import (
    ISOTROPIC_COS,
    ISOTROPIC_FLOOR,
    sample_generalized_gaussian,
    sphere_expected_cos,
)
from impl.rotation import random_orthogonal
from impl.sign_quant import cos_sign

from ..context import StudyContext
from ..titles import WIDGET_TITLES
from ..widget import Widget, WidgetOutput, WidgetView, claim
from ._keystats import (
    SOURCE_LABEL,
    SUMMARY_SCHEMA,
    Annotation,
    fnum,
    new_figure,
    obj,
    preferred,
    real_sources,
    summary,
)

NUMBER = 2
LAWS = ("laplace", "uniform", "gaussian")
LAW_LABEL = {"laplace": "Laplace", "uniform": "uniform", "gaussian": "Gaussian"}
LAW_BETA = {"laplace": 0.5, "uniform": 0.75, "gaussian": 2.0 / math.pi}
ROTS = ("identity", "srht", "haar")
REAL_CONFIGS = ("identity_raw", "srht_raw", "haar_raw", "identity_centred", "srht_centred", "haar_centred")
CONFIG_LABEL = {"identity_raw": "raw", "srht_raw": "SRHT", "haar_raw": "Haar", "identity_centred": "centred",
                "srht_centred": "SRHT+centred", "haar_centred": "Haar+centred"}
BLOCK = 250  # synthetic vectors per rotation: a fresh SRHT / Haar matrix every BLOCK vectors
# Claim tolerance on synthetic keys at the largest d: |mean cos − sphere value| ≤ 4 s.e. + 0.002.
SYN_TOL = 0.002

_SYN_ENTRY = obj(["d", "identity", "srht", "haar", "se_identity", "se_srht", "se_haar"],
                 {k: {"type": "number"} for k in ("d", "identity", "srht", "haar", "se_identity", "se_srht", "se_haar")})
DATA_SCHEMA: dict[str, Any] = obj(
    ["reference", "synthetic", "real"],
    {
        "reference": obj(["sqrt_2_over_pi", "two_over_pi"], {"sqrt_2_over_pi": {"type": "number"},
                                                             "two_over_pi": {"type": "number"}}),
        "synthetic": obj(["samples", "dims", "sphere_cos", "sphere_beta", "laws"], {
            "samples": {"type": "integer", "minimum": 1},
            "dims": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
            "sphere_cos": {"type": "object", "additionalProperties": {"type": "number"}},
            "sphere_beta": {"type": "object", "additionalProperties": {"type": "number"}},
            "laws": obj(list(LAWS), {law: obj(["beta", "by_dim"], {
                "beta": {"type": "number"},
                "by_dim": {"type": "object", "additionalProperties": _SYN_ENTRY, "minProperties": 2}})
                for law in LAWS}),
        }),
        "real": {"type": "object", "additionalProperties": obj(
            ["d", "sphere_cos", "sphere_beta", "tokens", "heads", "cos", "beta"], {
                "d": {"type": "integer"}, "sphere_cos": {"type": "number"}, "sphere_beta": {"type": "number"},
                "tokens": {"type": "integer"}, "heads": {"type": "integer"},
                "cos": obj(list(REAL_CONFIGS), {c: SUMMARY_SCHEMA for c in REAL_CONFIGS}),
                "beta": obj(list(REAL_CONFIGS), {c: SUMMARY_SCHEMA for c in REAL_CONFIGS}),
            })},
    },
)


def sphere_beta(d: int) -> float:
    """Exact mean betaVec of a uniform direction in ℝ^d: 2/π + (1 − 2/π)/d."""
    return ISOTROPIC_FLOOR + (1.0 - ISOTROPIC_FLOOR) / d


def _law(name: str, n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    if name == "laplace":
        return sample_generalized_gaussian(1.0, (n, d), gen, dtype=torch.float64)
    if name == "uniform":
        return torch.rand(n, d, generator=gen, dtype=torch.float64) * 2.0 - 1.0
    return torch.randn(n, d, generator=gen, dtype=torch.float64)


def _rotated_cos(x: torch.Tensor, rot: str, gen: torch.Generator) -> torch.Tensor:
    """cosSign of every row after `rot`, a fresh rotation per block of BLOCK rows."""
    if rot == "identity":
        return cos_sign(x)
    d = x.shape[-1]
    out = []
    for block in x.split(BLOCK):
        if rot == "srht":
            out.append(cos_sign(srht(block, random_signs(d, gen, dtype=torch.float64))))
        else:
            out.append(cos_sign(block @ random_orthogonal(d, gen, dtype=torch.float64).T))
    return torch.cat(out)


def _synthetic(ctx: StudyContext) -> dict[str, Any]:
    n = ctx.budget.train_tokens                # quick 2048, full 8192 keys per law and d
    dims = [2**k for k in range(3, 11)]
    gen = torch.Generator().manual_seed(ctx.seed + 202)
    laws = {}
    for law in LAWS:
        by_dim = {}
        for d in dims:
            x = _law(law, n, d, gen)
            entry: dict[str, Any] = {"d": d}
            for rot in ROTS:
                c = _rotated_cos(x, rot, gen)
                entry[rot] = fnum(c.mean())
                entry[f"se_{rot}"] = fnum(c.std() / math.sqrt(n))
            by_dim[f"d{d}"] = entry
        laws[law] = {"beta": LAW_BETA[law], "by_dim": by_dim}
    return {"samples": n, "dims": dims, "sphere_cos": {f"d{d}": sphere_expected_cos(d) for d in dims},
            "sphere_beta": {f"d{d}": sphere_beta(d) for d in dims}, "laws": laws}


def _real(ctx: StudyContext, source: str) -> dict[str, Any]:
    keys = ctx.keys(source, "post_rope")["heldout"]          # (L, H, T, d)
    L, H, T, d = keys.shape
    gen = torch.Generator().manual_seed(ctx.seed + 2020)
    cos: dict[str, list[float]] = {c: [] for c in REAL_CONFIGS}
    beta: dict[str, list[float]] = {c: [] for c in REAL_CONFIGS}
    srht_fits = {center: ctx.rotation_fit(source, "post_rope", "srht", center).codecs for center in (False, True)}
    for layer in range(L):
        k = keys[layer].double()                                 # (H, T, d)
        mean = srht_fits[True][layer].mean.double()              # the train mean (centring uses train keys only)
        for h in range(H):
            for centred in (False, True):
                tag = "centred" if centred else "raw"
                x = k[h] - mean[h] if centred else k[h]
                R_srht = srht_fits[centred][layer].rotation[h].double()
                Q = random_orthogonal(d, gen, dtype=torch.float64)
                for rot, y in (("identity", x), ("srht", x @ R_srht.T), ("haar", x @ Q.T)):
                    c = cos_sign(y)
                    cos[f"{rot}_{tag}"].append(float(c.mean()))
                    beta[f"{rot}_{tag}"].append(float((c * c).mean()))
    return {"d": d, "sphere_cos": sphere_expected_cos(d), "sphere_beta": sphere_beta(d), "tokens": T, "heads": L * H,
            "cos": {c: summary(v) for c, v in cos.items()}, "beta": {c: summary(v) for c, v in beta.items()}}


def compute(ctx: StudyContext) -> WidgetOutput:
    syn = _synthetic(ctx)
    real = {source: _real(ctx, source) for source in ctx.key_sources}
    data = {"reference": {"sqrt_2_over_pi": ISOTROPIC_COS, "two_over_pi": ISOTROPIC_FLOOR}, "synthetic": syn,
            "real": real}
    models = real_sources(ctx)
    return WidgetOutput(
        data=data, claims=_claims(data, models),
        settings={"synthetic_samples_per_dim": syn["samples"], "synthetic_dims": syn["dims"],
                  "rotation_block": BLOCK, "real_view": "post_rope", "real_split": "heldout",
                  "real_srht": "the SRHT codecs of ctx.rotation_fit (seeded per layer); Haar seeded per head"},
        models=models, token_counts={s: ctx.token_counts(s) for s in ctx.key_sources},
        seeds=[ctx.seed, ctx.seed + 202, ctx.seed + 2020])


def _claims(data: dict[str, Any], models: list[str]) -> list[dict[str, Any]]:
    syn = data["synthetic"]
    dmax = max(syn["dims"])
    at = {law: syn["laws"][law]["by_dim"][f"d{dmax}"] for law in LAWS}
    sphere = syn["sphere_cos"][f"d{dmax}"]
    ok = all(abs(at[law][rot] - sphere) <= 4 * at[law][f"se_{rot}"] + SYN_TOL
             for law in LAWS for rot in ("srht", "haar"))
    out = [claim(
        "rotation_drives_cos_to_floor", "Any data-independent orthogonal rotation drives β toward 2/π and the cosine "
        "floor toward √(2/π) ≈ 0.7979 as d grows.", 0.7979,
        {"sqrt_2_over_pi": data["reference"]["sqrt_2_over_pi"], f"sphere_cos_d{dmax}": sphere,
         **{f"{law}_{rot}_d{dmax}": at[law][rot] for law in ("laplace", "uniform") for rot in ("srht", "haar")}},
        "reproduces" if ok else "does not reproduce",
        f"Synthetic iid Laplace / uniform / Gaussian keys, {syn['samples']} per d, a fresh SRHT or Haar rotation every "
        f"{BLOCK} keys: at d = {dmax} every rotated mean cosine lies within 4 s.e. + {SYN_TOL} of the exact "
        f"uniform-direction value {sphere:.4f} (→ √(2/π)).")]
    if models:
        measured, good = {}, True
        for s in models:
            r = data["real"][s]
            measured[s] = {"srht_centred_beta": r["beta"]["srht_centred"]["mean"],
                           "srht_raw_beta": r["beta"]["srht_raw"]["mean"],
                           "haar_centred_beta": r["beta"]["haar_centred"]["mean"], "sphere_beta": r["sphere_beta"],
                           "identity_raw_beta": r["beta"]["identity_raw"]["mean"]}
            good &= abs(r["beta"]["srht_centred"]["mean"] - r["sphere_beta"]) <= 0.02
        out.append(claim(
            "srht_floor_on_real_keys", "On real keys, a data-independent rotation (SRHT) lands β at the isotropic "
            "floor 2/π.", 0.637, measured, "reproduces" if good else "partly reproduces",
            "Held-out post-RoPE keys, mean per-vector β over all layers × heads after the fitted SRHT, with the train "
            "mean subtracted (centred) or not (raw), against the exact finite-d sphere value 2/π + (1 − 2/π)/d; "
            "'reproduces' when the centred SRHT β is within 0.02 of it for every model."))
    else:
        out.append(claim("srht_floor_on_real_keys", "On real keys, a data-independent rotation (SRHT) lands β at the "
                         "isotropic floor 2/π.", 0.637, None, "not measured",
                         "No real model was available in this run (synthetic keys only)."))
    return out


# ------------------------------------------------------------------------------------------ view
def view(result: dict[str, Any]) -> WidgetView:
    data = result["data"]
    syn = data["synthetic"]
    dims = syn["dims"]
    colors = {"laplace": "tab:red", "uniform": "tab:green", "gaussian": "tab:blue"}
    fig, axes = new_figure(3)

    ax = axes[0][0]
    for law in LAWS:
        bd = syn["laws"][law]["by_dim"]
        ax.plot(dims, [bd[f"d{d}"]["identity"] for d in dims], ls=":", color=colors[law],
                label=f"{LAW_LABEL[law]}, no rotation")
        ax.plot(dims, [bd[f"d{d}"]["srht"] for d in dims], ls="-", marker="o", ms=3, color=colors[law],
                label=f"{LAW_LABEL[law]}, SRHT")
        ax.plot(dims, [bd[f"d{d}"]["haar"] for d in dims], ls="--", marker="s", ms=3, color=colors[law],
                label=f"{LAW_LABEL[law]}, Haar")
    ax.plot(dims, [syn["sphere_cos"][f"d{d}"] for d in dims], color="black", lw=1.5,
            label="exact E cos (uniform direction)")
    ax.axhline(data["reference"]["sqrt_2_over_pi"], color="gray", ls="-.", label="√(2/π) ≈ 0.798")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("dimension d")
    ax.set_ylabel("mean 1-bit cosine")
    ax.set_title("synthetic iid keys")
    ax.set_ylim(0.68, 0.97)
    ax.legend(fontsize=5.5, ncol=3, loc="upper center")

    ax = axes[0][1]
    for law in LAWS:
        bd = syn["laws"][law]["by_dim"]
        for rot, ls, off in (("srht", "-", 0.97), ("haar", "--", 1.03)):
            ax.errorbar([d * off for d in dims], [bd[f"d{d}"][rot] - syn["sphere_cos"][f"d{d}"] for d in dims],
                        yerr=[2 * bd[f"d{d}"][f"se_{rot}"] for d in dims], ls=ls, marker="o", ms=3,
                        color=colors[law], label=f"{LAW_LABEL[law]}, {rot.upper() if rot == 'srht' else 'Haar'}")
    ax.axhline(0.0, color="black", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("dimension d")
    ax.set_ylabel("mean cos − exact uniform-direction value (± 2 s.e.)")
    ax.set_title("residual to the exact finite-d floor")
    ax.legend(fontsize=6)

    ax = axes[0][2]
    sources = list(data["real"])
    positions, boxes, labels = [], [], []
    for i, s in enumerate(sources):
        for j, c in enumerate(REAL_CONFIGS):
            positions.append(i * (len(REAL_CONFIGS) + 1) + j)
            boxes.append(data["real"][s]["cos"][c]["per_head"])
            labels.append(f"{SOURCE_LABEL.get(s, s)}\n{CONFIG_LABEL[c]}")
        ax.hlines(data["real"][s]["sphere_cos"], i * (len(REAL_CONFIGS) + 1) - 0.5,
                  i * (len(REAL_CONFIGS) + 1) + len(REAL_CONFIGS) - 0.5, color="black",
                  label="exact E cos at this d" if i == 0 else None)
    if boxes:
        ax.boxplot(boxes, positions=positions, widths=0.7, showfliers=True)
    ax.set_xticks(positions, labels, rotation=90, fontsize=6)
    ax.axhline(data["reference"]["sqrt_2_over_pi"], color="gray", ls="-.", label="√(2/π)")
    ax.set_ylabel("mean 1-bit cosine per head (held-out)")
    ax.set_title("key sources: distribution over layers × heads")
    ax.legend(fontsize=7)

    a = Annotation(result)
    dmax = max(dims)
    what = (f"Mean 1-bit cosine after a data-independent rotation (SRHT, Haar) against d, for iid Laplace, uniform and "
            f"Gaussian keys and for held-out real keys, against the exact value for a uniformly random direction "
            f"and its limit √(2/π) = {a.num('data.reference.sqrt_2_over_pi', '.4f')}.")
    p = f"data.synthetic.laws.{{}}.by_dim.d{dmax}"
    trend = (f"Whatever the coordinate law, both rotations land on the uniform-direction value: at d = "
             f"{a.int(p.format('laplace') + '.d')}, Laplace {a.num(p.format('laplace') + '.srht', '.4f')} / "
             f"{a.num(p.format('laplace') + '.haar', '.4f')} and uniform {a.num(p.format('uniform') + '.srht', '.4f')} / "
             f"{a.num(p.format('uniform') + '.haar', '.4f')} (SRHT / Haar; unrotated "
             f"{a.num(p.format('laplace') + '.identity', '.4f')} / {a.num(p.format('uniform') + '.identity', '.4f')}) "
             f"vs exact {a.num(f'data.synthetic.sphere_cos.d{dmax}', '.4f')}")
    reals = preferred(data["real"])
    if reals:
        s = reals[0]
        rp = f"data.real.{s}"
        trend += (f"; on held-out {SOURCE_LABEL.get(s, s)} keys (d = {a.int(rp + '.d')}) SRHT+centring gives mean cos "
                  f"{a.num(rp + '.cos.srht_centred.mean')} vs exact {a.num(rp + '.sphere_cos')}.")
    else:
        trend += "."
    # Outlier rule: among real sources and rotated configurations, the largest |mean over heads − exact value|.
    cells = [(abs(data["real"][s]["cos"][c]["mean"] - data["real"][s]["sphere_cos"]), s, c)
             for s in preferred(data["real"]) for c in ("srht_raw", "haar_raw", "srht_centred", "haar_centred")]
    if cells:
        _, s, c = max(cells)
        rp = f"data.real.{s}"
        outlier = (f"Furthest from the floor (rule: largest |mean cos − exact value| over the real models, or synthetic "
                   f"keys without a real model, and rotated configurations): {SOURCE_LABEL.get(s, s)} {CONFIG_LABEL[c]}, "
                   f"mean cos {a.num(rp + f'.cos.{c}.mean')} "
                   f"vs {a.num(rp + '.sphere_cos')}, heads ranging {a.num(rp + f'.cos.{c}.min')}–"
                   f"{a.num(rp + f'.cos.{c}.max')}"
                   + (" — uncentred keys are dominated by their mean, so each head's cosine is one draw for its rotated "
                      "mean key." if c.endswith("raw") else " — real residuals are not iid across coordinates."))
    else:
        outlier = "No real or synthetic key source was measured."
    return WidgetView(fig, what, trend, outlier, a.sources)


WIDGET = Widget(NUMBER, WIDGET_TITLES[NUMBER], DATA_SCHEMA, compute, view)
