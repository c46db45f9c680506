"""Study widgets 7–11 (perplexity and memory, per-layer β, Pareto frontier, front-token protection,
FFN weight β): each computes, validates and views on a tiny budget — synthetic keys, and a tiny
random Llama / Gemma-3 standing in for a real model — and its numbers are internally consistent."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from betaspec.data.models import tiny_gemma3, tiny_llama
from betaspec.study.context import StudyBudget, StudyContext
from betaspec.study.envelope import load_result, validate
from betaspec.study.jsonpath import get_path, set_path
from betaspec.study.runner import run_widget
from betaspec.study.titles import WIDGET_TITLES
from betaspec.study.widgets import (
    _cache_points,
    w07_perplexity_memory,
    w08_layer_profile,
    w09_pareto,
    w10_front_tokens,
    w11_ffn_weights,
)

MODULES = {7: w07_perplexity_memory, 8: w08_layer_profile, 9: w09_pareto, 10: w10_front_tokens, 11: w11_ffn_weights}
BUDGET = StudyBudget(quick=True, train_tokens=192, heldout_tokens=96, window=48, steps=4, batch_size=192, lr=2e-2,
                     ppl_windows=2, ppl_window=24, long_windows=1, long_window=64, synthetic_layers=2,
                     synthetic_heads=2, synthetic_dim=16)


@dataclass
class TinyModelContext(StudyContext):
    """A context whose one 'real model' is a tiny random Llama or Gemma-3 on random token windows."""

    arch: str = "llama"

    @property
    def models(self) -> list[str]:
        return ["tiny"]

    def model(self, name: str):
        if name not in self._models:
            self._models[name] = (tiny_llama(0) if self.arch == "llama" else tiny_gemma3(0), None)
        return self._models[name]

    def windows(self, name: str, split: str, n: int, length: int) -> torch.Tensor:
        key = (name, split, n, length)
        if key not in self._windows:
            gen = torch.Generator().manual_seed(("train", "heldout", "ood").index(split))
            self._windows[key] = torch.randint(0, 256, (n, length), generator=gen)
        return self._windows[key]


def _run(ctx: StudyContext, numbers, out: Path) -> dict[int, dict]:
    return {n: load_result(run_widget(MODULES[n].WIDGET, ctx, out)) for n in numbers}


@pytest.fixture(scope="module")
def synthetic_results(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(w11_ffn_weights, "QUICK_HET", {"clusters": (1, 4), "subsamples": (16, 64, 256), "seeds": (0,),
                                              "steps": 15})
    mp.setattr(w11_ffn_weights, "ROWS", 1024)
    mp.setattr(w11_ffn_weights, "DIM", 16)
    try:
        tmp = tmp_path_factory.mktemp("synthetic")
        ctx = StudyContext(budget=BUDGET, requested_models=(), progress=False, artifacts_dir=tmp / "artifacts")
        yield ctx, _run(ctx, MODULES, tmp / "results")
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def llama_results(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(w11_ffn_weights, "QUICK_HET", {"clusters": (1, 4), "subsamples": (16, 64), "seeds": (0,), "steps": 10})
    mp.setattr(w11_ffn_weights, "ROWS", 512)
    mp.setattr(w11_ffn_weights, "DIM", 16)
    try:
        tmp = tmp_path_factory.mktemp("llama")
        ctx = TinyModelContext(budget=BUDGET, requested_models=(), progress=False, artifacts_dir=tmp / "artifacts")
        yield ctx, _run(ctx, (7, 9, 10, 11), tmp / "results")
    finally:
        mp.undo()


# ------------------------------------------------------------------------------------------ common


def _check_view(module, result: dict) -> None:
    v = module.WIDGET.view(result)
    assert v.figure is not None and v.figure.axes
    lines = (v.what, v.trend, v.outlier)
    for line in lines:
        assert line.strip()
        assert "{" not in line and "nan" not in line.lower().split()
    assert v.sources
    figure = module._figure
    module._figure = lambda data: None   # the text alone is checked below; drawing each time is slow
    try:
        for path in v.sources:
            value = get_path(result, path)
            assert isinstance(value, (int, float)) and not isinstance(value, bool), path
            assert math.isfinite(value), path
            # the text follows the number: perturb it and the annotation must change
            perturbed = copy.deepcopy(result)
            set_path(perturbed, path, value * 1.37 + 3 if value else 0.731)
            w = module.WIDGET.view(perturbed)
            assert (w.what, w.trend, w.outlier) != lines, path
    finally:
        module._figure = figure


@pytest.mark.parametrize("number", sorted(MODULES))
def test_synthetic_widget_validates_and_views(synthetic_results, number):
    _, results = synthetic_results
    res = results[number]
    module = MODULES[number]
    assert res["widget"] == number and res["title"] == WIDGET_TITLES[number]
    validate(res, module.DATA_SCHEMA)
    assert res["quick"] is True
    _check_view(module, res)


@pytest.mark.parametrize("number", (7, 9, 10, 11))
def test_model_widget_validates_and_views(llama_results, number):
    _, results = llama_results
    res = results[number]
    validate(res, MODULES[number].DATA_SCHEMA)
    assert res["models"] == ["tiny"]
    _check_view(MODULES[number], res)


def test_perplexity_claims_are_not_measured_without_a_language_model(synthetic_results):
    _, results = synthetic_results
    verdicts = {c["id"]: c["verdict"] for n in (7, 9, 11) for c in results[n]["claims"]}
    assert verdicts["learned_beats_srht_perplexity"] == "not measured"
    assert verdicts["no_full_precision_copy"] == "not measured"
    assert "quality_targets" not in verdicts
    assert verdicts["ffn_weight_beta_lift_under_learned_r"] == "not measured"
    for n in (7, 9, 10):
        for e in results[n]["data"]["sources"].values():
            assert e["language_model"] is False


# ------------------------------------------------------------------------------------------ widget 7


def _code_bits(m: dict, d: int) -> float:
    """Bits per coordinate of one coded token, from each paper's storage (not the codec objects)."""
    fam, b = m["family"], m["bits"]
    if fam in ("ours", "srht"):
        r = round(d * m["rank_fraction"]) if m["rank_fraction"] else 0
        r = max(1, r) if m["rank_fraction"] else 0
        coef = 0 if r == 0 else (16 * r if m["coef_bits"] == 16 else 8 * math.ceil(r * m["coef_bits"] / 8) + 16)
        return (8 * math.ceil(d * b / 8) + 16 + coef) / d
    if fam == "kivi":
        return (8 * math.ceil(d * b / 8) + 32 * d / m["group"]) / d
    if fam == "turboquant_mse":
        return (8 * math.ceil(d * b / 8) + 16) / d
    if fam == "turboquant_prod":
        return (8 * math.ceil(d * (b - 1) / 8) + (16 if b > 1 else 0) + 8 * math.ceil(d / 8) + 16) / d
    assert fam == "qjl"
    return (8 * math.ceil(round(m["sketch"] * d) / 8) + 16) / d


def _expected_bits(m: dict, d: int, tokens: int) -> float:
    """The cache's bits at `tokens` tokens: exact tokens at float16, the rest coded."""
    flush = m["residual"] if m["family"] == "kivi" else 1
    P = min(m["n_protect"], tokens)
    n = tokens - P
    w = m["window"]
    recent = n if n <= w else w + (n - w) % flush
    return ((P + recent) * 16 + (n - recent) * _code_bits(m, d)) / tokens


@pytest.mark.parametrize("which", ["synthetic", "llama"])
def test_w07_bits_equal_each_papers_storage(synthetic_results, llama_results, which):
    _, results = synthetic_results if which == "synthetic" else llama_results
    data = results[7]["data"]
    for e in data["sources"].values():
        d = e["head_dim"]
        for context, pts in e["points"].items():
            for p in pts.values():
                expected = _expected_bits(p["method"], d, p["tokens"])
                assert p["bits_per_coordinate"] == pytest.approx(expected, rel=1e-12), p["label"]
                assert p["bits_formula"] == pytest.approx(expected, rel=1e-12)
                assert p["key_bytes"] * 8 == pytest.approx(p["bits_per_coordinate"] * p["fp16_key_bytes"] / 2, rel=1e-12)
                width = p["tokens"]
                mean = sum(_expected_bits(p["method"], d, n) for n in range(1, width)) / (width - 1)
                assert p["bits_position_mean"] == pytest.approx(mean, rel=1e-12)


def test_w07_perplexity_ratios_fp_reference_and_no_hidden_copy(llama_results):
    ctx, results = llama_results
    e = results[7]["data"]["sources"]["tiny"]
    for context, pts in e["points"].items():
        fp = e["fp"][context]
        assert fp["bits_per_coordinate"] == 32.0       # float32 keys in a plain DynamicCache
        for p in pts.values():
            assert p["ppl_ratio"] == pytest.approx(p["ppl"] / fp["ppl"], rel=1e-12)
            assert p["ppl"] == pytest.approx(math.exp(p["nll"]), rel=1e-9)
            if context == "short":
                assert p["copies"]["full_precision_copies"] == 0
                # KIVI codes nothing before its residual of R = 128 tokens fills (windows are 24 long)
                assert (p["copies"]["coded_rows"] > 0) == (p["family"] != "kivi")
        assert set(pts) == {m.id for m in w07_perplexity_memory.grid(ctx, "tiny", context)}
    verdicts = {c["id"]: c["verdict"] for c in results[7]["claims"]}
    assert verdicts["rotation_centring_free_at_deploy"] == "identity"
    assert verdicts["no_full_precision_copy"] == "reproduces"
    assert verdicts["cache_memory_formula"] == "reproduces"


# ------------------------------------------------------------------------------------------ widget 9


def _dominated(a, b) -> bool:
    """b dominates a (both coordinates minimised)."""
    return b[0] <= a[0] and b[1] <= a[1] and b != a


@pytest.mark.parametrize("which", ["synthetic", "llama"])
def test_w09_frontier_is_the_non_dominated_set(synthetic_results, llama_results, which):
    _, results = synthetic_results if which == "synthetic" else llama_results
    for e in results[9]["data"]["sources"].values():
        xy = ((lambda p: (p["bits_per_coordinate"], p["ppl_ratio"])) if e["language_model"]
              else (lambda p: (p["bits_per_coordinate"], -p["beta_eff_shift"])))
        for ce in e["contexts"].values():
            pts = ce["points"]
            expected = {i for i, p in pts.items()
                        if not any(_dominated(xy(p), xy(q)) for j, q in pts.items() if j != i)}
            assert set(ce["frontier"]) == expected
            assert all(pts[i]["on_frontier"] == (i in expected) for i in pts)
            bits = [pts[i]["bits_per_coordinate"] for i in ce["frontier"]]
            assert bits == sorted(bits)
        short = e["contexts"]["short"]["points"]
        for i in e["uniform_k"]:
            assert short[i]["family"] == "ours"
        assert e["ring"] in e["uniform_k"] and short[e["ring"]]["rank"] == e["head_dim"] // 8


@pytest.mark.parametrize("which", ["synthetic", "llama"])
def test_w09_peer_comparison_by_brute_force(synthetic_results, llama_results, which):
    """Every peer point: beaten when some learned+centred point with no more bits has a lower cost."""
    _, results = synthetic_results if which == "synthetic" else llama_results
    for e in results[9]["data"]["sources"].values():
        cost = (lambda p: p["ppl_ratio"]) if e["language_model"] else (lambda p: -p["beta_eff_shift"])
        for ce in e["contexts"].values():
            pts, vp = ce["points"], ce["versus_peers"]
            for pid, p in pts.items():
                if p["family"] == "ours":
                    assert pid not in vp["rows"]
                    continue
                cheaper = [q for q in pts.values() if q["family"] == "ours"
                           and q["bits_per_coordinate"] <= p["bits_per_coordinate"] + 1e-9]
                row = vp["rows"][pid]
                assert row["comparable"] == bool(cheaper)
                if cheaper:
                    assert row["win"] == (min(cost(q) for q in cheaper) < cost(p))
            assert vp["wins"] == sum(1 for r in vp["rows"].values() if r["comparable"] and r["win"])


def test_w09_reuses_widget_7_points(llama_results):
    _, results = llama_results
    p7 = results[7]["data"]["sources"]["tiny"]["points"]["short"]
    p9 = results[9]["data"]["sources"]["tiny"]["contexts"]["short"]["points"]
    assert set(p7) <= set(p9)
    for i in p7:
        assert p9[i]["ppl"] == p7[i]["ppl"] and p9[i]["bits_per_coordinate"] == p7[i]["bits_position_mean"]


def test_w09_knee_and_non_dominated_helpers():
    pts = {"a": (1, 5), "b": (2, 3), "c": (3, 3), "d": (2, 4), "e": (4, 1)}
    assert w09_pareto.non_dominated(pts) == ["a", "b", "e"]
    curve = [("k0", 1.0, 10.0), ("k1", 2.0, 3.0), ("k2", 3.0, 2.5), ("k3", 5.0, 2.0)]
    knee, margin = w09_pareto.knee(curve)
    assert knee == "k1" and margin > 0
    assert w09_pareto.knee(curve[:2]) is None


# ------------------------------------------------------------------------------------------ widget 10


@pytest.mark.parametrize("which", ["synthetic", "llama"])
def test_w10_protected_keys_are_bit_exact_and_counts_consistent(synthetic_results, llama_results, which):
    _, results = synthetic_results if which == "synthetic" else llama_results
    res = results[10]
    ns = res["data"]["n_protect"]
    for e in res["data"]["sources"].values():
        for ce in e["codecs"].values():
            assert ce["bit_exact"] is True
            layers = ce["attn_error_layers"]
            for n in ns:
                k = w10_front_tokens.nkey(n)
                assert ce["attn_error"][k] == pytest.approx(sum(layers[k]) / len(layers[k]))
            rises = sum(layers[w10_front_tokens.nkey(b)][i] > layers[w10_front_tokens.nkey(a)][i]
                        for a, b in zip(ns, ns[1:]) for i in range(e["layers"]))
            assert ce["layer_increases"] == rises
    exact = next(c for c in res["claims"] if c["id"] == "front_token_protection_bit_exact")
    assert exact["verdict"] == "reproduces"
    # the annotation reads the smallest and the largest n_protect (the JSON file sorts keys as strings)
    sources = w10_front_tokens.view(res).sources
    head = res["data"]["headline"]
    for n in (min(ns), max(ns)):
        assert f"data.sources.{head}.codecs.learned_centred.attn_error.n{n}" in sources


def test_w10_full_protection_is_exact_attention(llama_results):
    ctx, _ = llama_results
    x = next(iter(w10_front_tokens._layer_inputs(ctx, "tiny")))[0]
    codec = _cache_points.method_codecs(ctx, "tiny", _cache_points.Method("ours", bits=1))[0]
    T = x["k"].shape[2]
    rounded = x["k"].to(_cache_points.EXACT_DTYPE).to(x["k"].dtype)      # the cache stores exact keys in float16
    k_hat, exact = w10_front_tokens.protected_keys(codec, x["k"], T)
    assert exact and torch.equal(k_hat, rounded)
    k_hat, exact = w10_front_tokens.protected_keys(codec, x["k"], 3)
    assert exact and torch.equal(k_hat[:, :, :3], rounded[:, :, :3]) and not torch.equal(k_hat, rounded)
    k_hat, exact = w10_front_tokens.protected_keys(codec, x["k"], T, exact_dtype=x["k"].dtype)
    assert exact and torch.equal(k_hat, x["k"])


@pytest.mark.parametrize("arch", ["llama", "gemma"])
def test_w10_captured_inputs_reproduce_the_model_attention(tmp_path, arch):
    """Offline attention on the captured inputs (incl. Gemma's sliding-window mask, window 8 < 24
    tokens) equals each layer's own attention output."""
    ctx = TinyModelContext(budget=BUDGET, requested_models=(), progress=False, artifacts_dir=tmp_path, arch=arch)
    model, _ = ctx.model("tiny")
    window = next(iter(w10_front_tokens._layer_inputs(ctx, "tiny")))
    assert model.config._attn_implementation == "sdpa"                       # restored
    outputs = {}
    hooks = [layer.self_attn.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, o[0]))
             for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        model(ctx.ppl_windows("tiny")[:1], use_cache=False)
    for h in hooks:
        h.remove()
    for i, layer in enumerate(model.model.layers):
        x = window[i]
        T = x["k"].shape[2]
        ours = w10_front_tokens.attend(x["q"], x["k"], x["v"], x["mask"], x["scaling"], x["softcap"])
        with torch.no_grad():
            mine = layer.self_attn.o_proj(ours.transpose(1, 2).reshape(1, T, -1))
        assert torch.allclose(mine, outputs[i], atol=1e-5), i


# ------------------------------------------------------------------------------------------ widget 8


def test_w08_sliding_and_global_layers_on_a_tiny_gemma(tmp_path):
    ctx = TinyModelContext(budget=BUDGET, requested_models=(), progress=False, artifacts_dir=tmp_path / "a",
                           arch="gemma")
    res = load_result(run_widget(w08_layer_profile.WIDGET, ctx, tmp_path / "r"))
    e = res["data"]["sources"]["tiny"]
    assert e["layer_types"] == ["sliding", "global"] and e["global_layers"] == [1]
    test = e["sliding_vs_global"]["learned"]
    b = e["beta"]["learned"]["heldout"]
    assert test["difference"] == pytest.approx(b[1] - b[0])
    assert test["relabellings"] == 2 and test["p_value"] == 1.0
    for name in w08_layer_profile.ROTATIONS:
        assert e["summary"][name]["mean"] == pytest.approx(sum(e["beta"][name]["heldout"]) / 2)
    _check_view(w08_layer_profile, res)


def test_w08_permutation_test_matches_brute_force():
    values = [0.61, 0.64, 0.70, 0.66, 0.62, 0.72, 0.65]
    is_global = [False, False, True, False, False, True, False]
    out = w08_layer_profile.permutation_test(values, is_global)
    obs = (0.70 + 0.72) / 2 - (0.61 + 0.64 + 0.66 + 0.62 + 0.65) / 5
    diffs = []
    for idx in itertools.combinations(range(7), 2):
        g = sum(values[i] for i in idx) / 2
        s = (sum(values) - 2 * g) / 5
        diffs.append(abs(g - s))
    assert out["difference"] == pytest.approx(obs)
    assert out["exact"] and out["relabellings"] == 21
    assert out["p_value"] == pytest.approx(sum(x >= abs(obs) - 1e-12 for x in diffs) / 21)
    assert w08_layer_profile.permutation_test(values, [True] * 7) is None


# ------------------------------------------------------------------------------------------ widget 11


def test_w11_full_beta_is_the_row_weighted_mean_of_fitted_and_held_out(llama_results):
    _, results = llama_results
    mats = results[11]["data"]["matrices"]
    assert mats
    for m in mats.values():
        s, rows = m["subsample"], m["rows"]
        assert m["beta_full"] == pytest.approx((s * m["beta_batch"] + (rows - s) * m["beta_heldout"]) / rows, abs=1e-5)
        assert m["gap"] == pytest.approx(m["beta_batch"] - m["beta_full"])
        assert m["clears_tau"] == (m["beta_full"] >= results[11]["data"]["tau"])


def test_w11_cluster_mixture_is_seeded():
    X = w11_ffn_weights.cluster_mixture(4, 400, 8, 0.3, seed=0)
    assert X.shape == (400, 8) and torch.isfinite(X).all()
    assert torch.equal(X, w11_ffn_weights.cluster_mixture(4, 400, 8, 0.3, seed=0))


def test_w11_skips_matrices_too_wide_for_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(w11_ffn_weights, "MAX_DIM", 32)
    monkeypatch.setattr(w11_ffn_weights, "QUICK_HET", {"clusters": (1, 2), "subsamples": (8, 32), "seeds": (0,),
                                                       "steps": 3})
    monkeypatch.setattr(w11_ffn_weights, "ROWS", 128)
    monkeypatch.setattr(w11_ffn_weights, "DIM", 8)
    ctx = TinyModelContext(budget=BUDGET, requested_models=(), progress=False, artifacts_dir=tmp_path / "a")
    res = load_result(run_widget(w11_ffn_weights.WIDGET, ctx, tmp_path / "r"))
    assert res["data"]["matrices"] == {} and res["data"]["summary"] is None
    assert res["data"]["skipped"]["tiny_L0_gate_proj"]["dim"] == 64
    verdicts = {c["id"]: c["verdict"] for c in res["claims"]}
    assert verdicts["ffn_weight_beta_lift_under_learned_r"] == "not measured"
    _check_view(w11_ffn_weights, res)


def test_w11_heterogeneity_verdict_logic(synthetic_results):
    _, results = synthetic_results
    het = results[11]["data"]["heterogeneity"]
    sizes = het["subsamples"]
    single = het["clusters"]["c1"]["gap"]
    last, first = single[f"s{sizes[-1]}"], single[f"s{sizes[0]}"]
    assert het["holds_single"] == (last <= het["epsilon"] and last < first)
    below = [e["gap"][f"s{s}"] for e in het["clusters"].values() if e["clusters"] > 1 for s in sizes
             if s < e["threshold"]]
    assert het["holds_many"] == (min(below) > het["epsilon"])


def test_versus_peers_on_hand_made_points():
    """The peer comparison on points whose answer is known by hand: a peer beaten by a cheaper
    ours point, a tie (not a win: the claim says "beat"), a peer cheaper than every ours point on the
    frontier (counted apart, against the claim), and a cheaper peer that is dominated (ignored)."""
    from betaspec.study.widgets.w09_pareto import versus_peers

    def pt(family, bits, cost):
        return {"family": family, "bits_per_coordinate": bits, "cost": cost}

    points = {"ours1": pt("ours", 1.25, 2.0), "ours2": pt("ours", 2.25, 1.3),
              "beaten": pt("turboquant_mse", 2.25, 1.9), "tie": pt("kivi", 3.0, 1.3),
              "cheap_front": pt("qjl", 0.5, 5.0), "cheap_dominated": pt("qjl", 1.0, 9.0)}
    # cheap_dominated at 1.0 bits: nothing ours is as cheap, but cheap_front has fewer bits and lower cost
    vp = versus_peers(points, lambda p: p["cost"])
    assert vp["rows"]["beaten"] == {"comparable": True, "ours": "ours2", "win": True}
    assert vp["rows"]["tie"] == {"comparable": True, "ours": "ours2", "win": False}
    assert vp["rows"]["cheap_front"]["comparable"] is False
    assert (vp["comparable"], vp["wins"], vp["losses"]) == (2, 1, ["tie"])
    assert vp["cheaper_on_frontier"] == ["cheap_front"]


@pytest.mark.parametrize("quick", [True, False])
def test_every_grid_names_each_codec_once(quick, tmp_path):
    """Within a grid, two methods never share an id (which would count one codec twice on the frontier)."""
    ctx = StudyContext(budget=StudyBudget.for_mode(quick), requested_models=(), progress=False, artifacts_dir=tmp_path)
    for source in ("smollm2", "gemma3", "synthetic"):
        for context in ("short", "long"):
            ids = [m.id for m in w07_perplexity_memory.grid(ctx, source, context)]
            assert len(ids) == len(set(ids)), (source, context, ids)
