"""Study widgets 1–6 on a tiny synthetic study: every result validates against the envelope and
its data schema, the numbers are internally consistent (the closed forms, the exact finite-d
floor, β_c's definition, the composition law β_eff = 1 − (1 − β₁ᵦ)(1 − γ_r)), and every view
draws a figure and three annotation lines whose numbers trace to JSON fields."""

from __future__ import annotations

import math
import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from betaspec.report.page import placeholders  # noqa: E402
from betaspec.study import runner  # noqa: E402
from betaspec.study.context import SYNTHETIC, StudyBudget, StudyContext  # noqa: E402
from betaspec.study.envelope import VERDICTS, load_result, validate  # noqa: E402
from betaspec.study.jsonpath import get_path, numbers_under  # noqa: E402
from betaspec.study.titles import WIDGET_TITLES  # noqa: E402

NUMBERS = (1, 2, 3, 4, 5, 6)
TINY = StudyBudget(quick=True, train_tokens=192, heldout_tokens=96, window=64, steps=6, batch_size=96, lr=2e-2,
                   ppl_windows=1, ppl_window=32, long_windows=1, long_window=64, synthetic_layers=2,
                   synthetic_heads=2, synthetic_dim=32)


def _load_widgets() -> dict[int, object]:
    """Widgets 1–6 by number."""
    from betaspec.study.widgets import WIDGETS

    return {w.number: w for w in WIDGETS if w.number in NUMBERS}


@pytest.fixture(scope="module")
def widgets():
    return _load_widgets()


@pytest.fixture(scope="module")
def study(tmp_path_factory, widgets):
    """(context, {number: result dict}) of one tiny synthetic run of widgets 1–6 (no model loads).

    One intra-op thread: the tensors are tiny, and on a shared 2-core machine a second OpenMP
    thread only spins (it made this run 3× slower under load)."""
    import torch

    root = tmp_path_factory.mktemp("study16")
    ctx = StudyContext(budget=TINY, requested_models=(), artifacts_dir=root / "artifacts", progress=False)
    assert ctx.key_sources == [SYNTHETIC]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {n: load_result(runner.run_widget(widgets[n], ctx, root / "results")) for n in NUMBERS}
    finally:
        torch.set_num_threads(threads)
    return ctx, results


# ------------------------------------------------------------------------------ schema and view
@pytest.mark.parametrize("number", NUMBERS)
def test_result_validates(number, widgets, study):
    _, results = study
    r = results[number]
    w = widgets[number]
    assert w.title == WIDGET_TITLES[number] and r["title"] == WIDGET_TITLES[number]
    validate(r, w.data_schema)
    assert r["quick"] is True and r["seeds"] and r["wall_time_s"] >= 0
    assert r["claims"], "every widget checks at least one write-up claim"
    for c in r["claims"]:
        assert c["verdict"] in VERDICTS
    # synthetic keys only: claims about real models say so
    if number in (3, 4, 5):
        assert all(c["verdict"] == "not measured" for c in r["claims"])


@pytest.mark.parametrize("number", NUMBERS)
def test_schema_rejects_malformed_data(number, widgets, study):
    import copy

    import jsonschema

    _, results = study
    r = copy.deepcopy(results[number])
    first = next(iter(r["data"]))
    del r["data"][first]
    with pytest.raises(jsonschema.ValidationError):
        validate(r, widgets[number].data_schema)


@pytest.mark.parametrize("number", NUMBERS)
def test_view_draws_and_annotates_from_the_data(number, widgets, study):
    from matplotlib.figure import Figure

    _, results = study
    v = widgets[number].view(results[number])
    assert isinstance(v.figure, Figure) and v.figure.axes
    for line in (v.what, v.trend, v.outlier):
        assert isinstance(line, str) and line.strip() and not placeholders(line), line
    assert v.sources
    for path in v.sources:
        assert path.startswith("data."), path
        assert numbers_under(get_path(results[number], path)), path


# ------------------------------------------------------------------------------ consistency
def test_w1_reference_points_and_exact_samplers(study):
    _, results = study
    d = results[1]["data"]
    ref = d["reference"]
    assert abs(ref["laplace"]["gg_beta"] - 0.5) <= 1e-12
    assert abs(ref["gaussian"]["gg_beta"] - 2 / math.pi) <= 1e-12
    assert abs(ref["uniform"]["gg_beta"] - 0.75) <= 1e-4
    betas = d["gg_curve"]["beta"]
    assert all(a < b for a, b in zip(betas, betas[1:])) and betas[-1] < 0.75   # ggBeta increases to 3/4
    for key, e in d["distributions"]["sign_lattice"]["by_dim"].items():
        assert abs(e["mean_cos"] - 1.0) <= 1e-12 and e["std_cos"] <= 1e-12, key  # cos = 1 on the lattice
    # cos ∈ (0, 1]; mean β ≤ (mean cos)² is impossible to beat: E cos² ≥ (E cos)²
    for name, dist in d["distributions"].items():
        for key, e in dist["by_dim"].items():
            assert 0 < e["mean_cos"] <= 1 + 1e-12
            assert e["mean_beta"] >= e["mean_cos"] ** 2 - 1e-12, (name, key)


def test_w2_gaussian_keys_hit_the_exact_floor(study):
    """Any orthogonal map sends iid Gaussian keys to iid Gaussian keys, whose mean cosine is exactly
    sphere_expected_cos(d): the rotated sample means lie within 5 standard errors of it (fixed
    seed; a 5σ two-sided bound fails with probability < 6e-7 per check)."""
    _, results = study
    syn = results[2]["data"]["synthetic"]
    for key, e in syn["laws"]["gaussian"]["by_dim"].items():
        exact = syn["sphere_cos"][key]
        for rot in ("identity", "srht", "haar"):
            assert abs(e[rot] - exact) <= 5 * e[f"se_{rot}"], (key, rot, e[rot], exact)


def test_w3_beta_c_definition(study):
    ctx, results = study
    src = results[3]["data"]["sources"][SYNTHETIC]["post_rope"]
    for rotation in ("identity", "srht", "learned"):
        for centre, entry in src[rotation].items():
            for split, m in entry.items():
                for bv, bc, rho in zip(m["beta_v"]["per_head"], m["beta_c"]["per_head"], m["rho"]["per_head"]):
                    assert abs(bc - (1 - rho * (1 - bv))) <= 1e-12
                    if centre == "raw":
                        # no mean removed: ρ = Σ‖Rk‖²/Σ‖k‖² = 1 up to R's float32 orthogonality (d·eps₃₂)
                        assert abs(rho - 1.0) <= 32 * 1.2e-7 * 2
                    else:
                        assert 0 < rho < 1               # synthetic keys carry a DC mean


def test_w4_lost_residual_is_one_minus_energy_beta(study):
    """With centring, the 1-bit code loses Σ‖e‖² of the residual energy Σ‖y‖² = Σ‖k − m‖²:
    the collapse's lost fraction equals 1 − β₁ᵦ (energy) of the same codec."""
    ctx, results = study
    col = results[4]["data"]["sources"][SYNTHETIC]["collapse"]
    q = ctx.quality(SYNTHETIC, "post_rope", "learned", True, 0, "heldout")
    expected = [sum(1 - h.beta_energy for h in row) / len(row) for row in q]
    for a, b in zip(col["per_layer"]["learned_centred_lost_residual"], expected):
        assert abs(a - b) <= 1e-6
    for v in results[4]["data"]["sources"][SYNTHETIC]["views"].values():
        assert all(0.0 <= x <= 1.0 for x in v["layers"]["dc_fraction"])


def test_w5_curves_come_from_the_fits(study):
    ctx, results = study
    c = results[5]["data"]["curves"][SYNTHETIC]["post_rope"]["centred"]
    fit = ctx.rotation_fit(SYNTHETIC, "post_rope", "learned", True)
    heldout = [h["heldout"] for layer in fit.curves for h in layer]
    assert c["steps"] == TINY.steps == len(c["heldout"]["mean"])
    for i in range(c["steps"]):
        assert abs(c["heldout"]["mean"][i] - sum(h[i] for h in heldout) / len(heldout)) <= 1e-12
        assert c["heldout"]["min"][i] <= c["heldout"]["mean"][i] <= 1.0
        assert c["beta_c"]["heldout"][i] >= c["heldout"]["mean"][i]   # ρ ≤ 1 ⇒ β_c ≥ β_v
    at = c["at_step"]
    assert at["step"] == TINY.steps - 1 and at["heldout_mean"] == c["heldout"]["mean"][at["step"]]
    assert all(e["steps"] == TINY.steps for e in results[5]["data"]["synthetic_dims"].values())


def test_w6_composition_law_and_rank_limits(study):
    _, results = study
    e = results[6]["data"]["sources"][SYNTHETIC]
    assert e["discrepancy"]["energy_max"] <= 1e-10        # β_eff = 1 − (1 − β₁ᵦ)(1 − γ_r), float64
    assert e["discrepancy"]["cache_fp16_max"] <= 2 * 2.0**-11   # float16 α and coefficients (widget 6's bound)
    assert e["ranks"][0] == 0 and e["ranks"][-1] == e["d"]
    for split, s in e["splits"].items():
        assert abs(s["gamma"][0]) <= 1e-12 and abs(s["beta_eff"][0] - s["beta_energy"]) <= 1e-12
        assert abs(s["gamma"][-1] - 1.0) <= 1e-9 and abs(s["beta_eff"][-1] - 1.0) <= 1e-9   # r = d: exact
        assert all(abs(a - b) <= 1e-10 for a, b in zip(s["beta_eff"], s["beta_eff_formula"]))
    train = e["splits"]["train"]["gamma"]
    assert all(a <= b + 1e-9 for a, b in zip(train, train[1:]))   # nested top-r subspaces (Ky Fan)
