"""Widget 8 — per-layer β profile: the mean per-vector β of the keys each layer's cache codes,
raw (identity), after the SRHT and after the learned rotation with DC centring, on train,
held-out and out-of-domain keys; and whether sliding-window and global attention layers differ.

The write-up shows this profile for a Gemma-family model; here it is Gemma-3-270m when it is
available (15 sliding-window layers, global layers 5, 11 and 17), and every other requested
model too. Quick mode runs the default SmolLM2 only (all its layers are global, so the
sliding/global test does not apply) and says so. Keys are the post-RoPE keys the cache stores;
codecs are fitted on train keys. β per layer = mean over kv heads of the mean `betaVec` of
`R (k − m)` (m = 0 for raw and SRHT; the learned codec's β is SPEC's `β_v`).

Sliding vs global: the statistic is the difference of the mean held-out β of global and of
sliding layers; its two-sided p-value is the share of relabellings of the layers (the same
number of global layers) whose |difference| is at least the observed one — exact enumeration
when there are at most `MAX_EXACT` relabellings, otherwise `PERMUTATIONS` random ones.
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any

import torch

from impl.moments import beta_vec

from ...data.corpus import SPLIT_NAMES
from ..context import SYNTHETIC, StudyContext
from ..titles import WIDGET_TITLES
from ..widget import Widget, WidgetOutput, WidgetView
from ._keystats import SOURCE_LABEL, Annotation, new_figure, obj

NUMBER = 8
VIEW = "post_rope"
ROTATIONS: dict[str, tuple[str, bool]] = {"raw": ("identity", False), "srht": ("srht", False),
                                          "learned": ("learned", True)}
ROT_LABEL = {"raw": "raw", "srht": "SRHT", "learned": "learned+centred"}
PREFERRED = "gemma3"
MAX_EXACT = 50_000
PERMUTATIONS = 20_000

_TEST = {"type": ["object", "null"]}
DATA_SCHEMA: dict[str, Any] = obj(
    ["view", "headline", "note", "sources"],
    {"view": {"const": VIEW}, "headline": {"type": "string"}, "note": {"type": "string"},
     "sources": {"type": "object", "minProperties": 1, "additionalProperties": obj(
         ["layers", "kv_heads", "head_dim", "layer_types", "global_layers", "beta", "beta_heads", "summary",
          "sliding_vs_global"],
         {"layers": {"type": "integer", "minimum": 1},
          "layer_types": {"type": ["array", "null"], "items": {"enum": ["sliding", "global"]}},
          "global_layers": {"type": "array", "items": {"type": "integer"}},
          "beta": {"type": "object", "required": list(ROTATIONS), "additionalProperties": {
              "type": "object", "required": list(SPLIT_NAMES),
              "additionalProperties": {"type": "array", "items": {"type": "number"}}}},
          "summary": {"type": "object", "required": list(ROTATIONS), "additionalProperties": obj(
              ["mean", "min", "max", "argmin", "argmax", "outlier_layer", "outlier_beta", "outlier_deviation"])},
          "sliding_vs_global": {"type": ["object", "null"], "additionalProperties": obj(
              ["mean_global", "mean_sliding", "difference", "p_value", "relabellings", "exact"])}})}},
)


def layer_types(ctx: StudyContext, source: str, layers: int) -> list[str] | None:
    """"sliding"/"global" per layer from the model's config (``layer_types``), None for synthetic keys."""
    if source == SYNTHETIC:
        return None
    model, _ = ctx.model(source)
    types = getattr(model.config, "layer_types", None)
    if not types:
        return ["global"] * layers
    return ["sliding" if "sliding" in t else "global" for t in types[:layers]]


def permutation_test(values: list[float], is_global: list[bool], seed: int = 0) -> dict[str, Any] | None:
    """Difference of means (global − sliding) and its two-sided permutation p-value."""
    g = [v for v, t in zip(values, is_global) if t]
    s = [v for v, t in zip(values, is_global) if not t]
    if not g or not s:
        return None
    L, k = len(values), len(g)
    total = sum(values)
    observed = statistics.fmean(g) - statistics.fmean(s)

    def diff(idx) -> float:
        sg = sum(values[i] for i in idx)
        return sg / k - (total - sg) / (L - k)

    tol = 1e-12 * max(1.0, abs(observed))
    count_all = math.comb(L, k)
    if count_all <= MAX_EXACT:
        hits = sum(1 for idx in itertools.combinations(range(L), k) if abs(diff(idx)) >= abs(observed) - tol)
        n, exact, p = count_all, True, hits / count_all
    else:
        gen = torch.Generator().manual_seed(seed)
        hits = 0
        for _ in range(PERMUTATIONS):
            idx = torch.randperm(L, generator=gen)[:k].tolist()
            hits += abs(diff(idx)) >= abs(observed) - tol
        n, exact, p = PERMUTATIONS, False, (hits + 1) / (PERMUTATIONS + 1)
    return {"mean_global": statistics.fmean(g), "mean_sliding": statistics.fmean(s), "difference": observed,
            "p_value": p, "relabellings": n, "exact": exact}


def _summary(values: list[float]) -> dict[str, Any]:
    mean = statistics.fmean(values)
    out_layer = max(range(len(values)), key=lambda i: abs(values[i] - mean))
    return {"mean": mean, "min": min(values), "max": max(values),
            "argmin": min(range(len(values)), key=values.__getitem__),
            "argmax": max(range(len(values)), key=values.__getitem__),
            "std": statistics.pstdev(values), "outlier_layer": out_layer, "outlier_beta": values[out_layer],
            "outlier_deviation": values[out_layer] - mean}


def compute(ctx: StudyContext) -> WidgetOutput:
    models = list(ctx.models)
    srcs = models or [SYNTHETIC]
    headline = PREFERRED if PREFERRED in srcs else srcs[0]
    if PREFERRED in srcs:
        note = "Gemma-3-270m: sliding-window and global layers compared."
    elif srcs == [SYNTHETIC]:
        note = "No language model available: synthetic keys (no layer types)."
    else:
        why = "run in quick mode" if ctx.budget.quick else "available"
        note = (f"Gemma-3-270m not {why}: the profile is shown for "
                f"{', '.join(SOURCE_LABEL.get(s, s) for s in srcs)}, whose layers are all global — the "
                "sliding/global test does not apply.")
    data: dict[str, Any] = {"view": VIEW, "headline": headline, "note": note, "sources": {}}
    token_counts = {}
    for source in srcs:
        keys = ctx.keys(source, VIEW)
        L, H, _, d = keys["train"].shape
        beta: dict[str, dict[str, list[float]]] = {}
        heads: dict[str, dict[str, list[list[float]]]] = {}
        for name, (rotation, center) in ROTATIONS.items():
            codecs = ctx.codecs(source, VIEW, rotation, center, 0)
            beta[name], heads[name] = {}, {}
            for split in SPLIT_NAMES:
                per_head = []
                for layer, c in enumerate(codecs):
                    y = c.transform(keys[split][layer].unsqueeze(0))[0]          # (H, T, d)
                    per_head.append([float(x) for x in beta_vec(y).mean(-1)])
                heads[name][split] = per_head
                beta[name][split] = [statistics.fmean(h) for h in per_head]
        types = layer_types(ctx, source, L)
        is_global = [t == "global" for t in types] if types else None
        test = None
        if is_global is not None and any(is_global) and not all(is_global):
            test = {name: permutation_test(beta[name]["heldout"], is_global, ctx.seed) for name in ROTATIONS}
        data["sources"][source] = {
            "layers": L, "kv_heads": H, "head_dim": d, "layer_types": types,
            "global_layers": [i for i, g in enumerate(is_global or []) if g],
            "beta": beta, "beta_heads": heads,
            "summary": {name: _summary(beta[name]["heldout"]) for name in ROTATIONS},
            "lift": {"learned_minus_srht": _summary([a - b for a, b in zip(beta["learned"]["heldout"],
                                                                           beta["srht"]["heldout"])])},
            "sliding_vs_global": test,
        }
        token_counts[source] = ctx.token_counts(source)
    return WidgetOutput(data=data, claims=[], token_counts=token_counts, models=models,
                        settings={"view": VIEW, "rotations": {k: {"rotation": r, "center": c}
                                                              for k, (r, c) in ROTATIONS.items()},
                                  "test": "difference of mean held-out β (global − sliding), two-sided permutation "
                                          f"p-value (exact up to {MAX_EXACT} relabellings, else {PERMUTATIONS} random)",
                                  "note": note})


# ------------------------------------------------------------------------------------------ view


def view(result: dict[str, Any]) -> WidgetView:
    data = result["data"]
    a = Annotation(result)
    head = data["headline"]
    e = data["sources"][head]
    b = f"data.sources.{head}"
    s = f"{b}.summary"
    what = (f"Mean per-vector β of the post-RoPE keys of each of the {a.int(b + '.layers')} layers of "
            f"{SOURCE_LABEL.get(head, head)} (held-out; train and out-of-domain drawn faintly): raw, after the SRHT, "
            f"and after the learned rotation with DC centring.")
    trend = (f"Across layers, raw β {a.num(s + '.raw.min')}–{a.num(s + '.raw.max')}, SRHT "
             f"{a.num(s + '.srht.min')}–{a.num(s + '.srht.max')}, learned+centred {a.num(s + '.learned.min')}–"
             f"{a.num(s + '.learned.max')} (mean {a.num(s + '.learned.mean')}; lift over SRHT "
             f"{a.num(b + '.lift.learned_minus_srht.mean', '+.3f')} on average).")
    test = e["sliding_vs_global"]
    if test is not None:
        t = f"{b}.sliding_vs_global.learned"
        trend += (f" Global vs sliding layers (learned+centred): {a.num(t + '.mean_global')} vs "
                  f"{a.num(t + '.mean_sliding')}, difference {a.num(t + '.difference', '+.3f')}, permutation p = "
                  f"{a.num(t + '.p_value', '.3g')}.")
    else:
        trend += " " + data["note"]
    kind = ""
    ol = e["summary"]["learned"]["outlier_layer"]
    if e["layer_types"] and isinstance(ol, int) and 0 <= ol < len(e["layer_types"]):
        kind = " (sliding-window)" if e["layer_types"][ol] == "sliding" else f" ({e['layer_types'][ol]})"
    outlier = (f"Rule: the layer farthest from the mean learned+centred β — layer "
               f"{a.int(s + '.learned.outlier_layer')}{kind}: {a.num(s + '.learned.outlier_beta')} "
               f"({a.num(s + '.learned.outlier_deviation', '+.3f')} from the mean).")
    return WidgetView(figure=_figure(data), what=what, trend=trend, outlier=outlier, sources=a.sources)


_COLOR = {"raw": "tab:grey", "srht": "tab:blue", "learned": "tab:orange"}


def _figure(data: dict[str, Any]):
    srcs = data["sources"]
    fig, axes = new_figure(len(srcs), width=6.0)
    for ax, (s, e) in zip(axes[0], srcs.items()):
        x = list(range(len(e["beta"]["raw"]["heldout"])))
        for gl in e["global_layers"] if e["layer_types"] and not all(t == "global" for t in e["layer_types"]) else []:
            ax.axvspan(gl - 0.5, gl + 0.5, color="tab:green", alpha=0.12, lw=0)
        for name, splits in e["beta"].items():
            ax.plot(x, splits["heldout"], color=_COLOR[name], marker="o", ms=3, lw=1.6,
                    label=f"{ROT_LABEL[name]} (held-out)")
            for split, ls in (("train", "--"), ("ood", ":")):
                ax.plot(x, splits[split], color=_COLOR[name], ls=ls, lw=0.8, alpha=0.5)
        ax.plot([], [], color="black", ls="--", lw=0.8, label="train")
        ax.plot([], [], color="black", ls=":", lw=0.8, label="out-of-domain")
        ax.axhline(2 / math.pi, color="black", lw=0.8, ls="-.", label="isotropic floor 2/π")
        if e["global_layers"] and e["layer_types"] and not all(t == "global" for t in e["layer_types"]):
            ax.axvspan(-10, -9, color="tab:green", alpha=0.12, label="global-attention layer")
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_xlabel("layer")
        ax.set_ylabel("mean per-vector β (mean over kv heads)")
        ax.set_title(f"{SOURCE_LABEL.get(s, s)} — post-RoPE keys")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2)
    return fig


WIDGET = Widget(NUMBER, WIDGET_TITLES[NUMBER], DATA_SCHEMA, compute, view)
