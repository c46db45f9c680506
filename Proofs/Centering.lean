import Proofs.SignGeometry

/-!
# Section 3 — learned rotations and DC-mean centering

Rotations and a common key mean are free at deploy time (`attention_score_gauge_invariance`).
What centring buys is formalised as the *mean-domination collapse*: a rotation fitted to
uncentred keys puts the dominant mean on a sign-lattice diagonal, and then every key gets the
same code and loses all of its informative part; the centred residual loses at most a
`(1 - 1/d)` fraction.

The write-up's inequality `sup_R cos θ(R v) ≥ sup_R cos θ(R(μe + v))` is not formalised: it is
vacuous for one vector (`sign_lattice_reachable`: both sides are `1`) and false for batches.

## Main results

* `BetaSpec.softmax_shift`, `BetaSpec.attention_score_gauge_invariance`.
* `BetaSpec.l2Norm_uncentered_gt`: the mean only adds energy (single-vector and batch forms).
* `BetaSpec.centered_quant_strict_gain`: `‖v - v̂‖² ≤ (1 - 1/d)‖v‖² < ‖v‖²` for `v ≠ 0`.
* `BetaSpec.dc_centering_lifts_rotational_ceiling`: the mean-domination collapse.
* `BetaSpec.centered_energy_accounting`: the key-level error when the mean is stored exactly.
* `BetaSpec.sign_lattice_reachable`: every nonzero key can be rotated onto the sign lattice.
-/

noncomputable section

open Finset Matrix

namespace BetaSpec

variable {d : ℕ}

/-- Softmax is invariant under adding a constant to every logit. -/
theorem softmax_shift {ι : Type*} [Fintype ι] (x : ι → ℝ) (c : ℝ) :
    softmax (fun i => x i + c) = softmax x := by
  sorry

/-- Gauge invariance. (a) An orthogonal `R` folded into both `W_q` and `W_k` leaves every logit
`⟪R q, R k⟫ = ⟪q, k⟫` unchanged. (b) Subtracting one mean key `m` from every key shifts a query's
logits by the constant `⟪q, m⟫`, which softmax ignores. -/
theorem attention_score_gauge_invariance :
    (∀ R : Matrix (Fin d) (Fin d) ℝ, Rᵀ * R = 1 →
        ∀ q k : Fin d → ℝ, dot (R *ᵥ q) (R *ᵥ k) = dot q k) ∧
      ∀ (n : ℕ) (q m : Fin d → ℝ) (v : Fin n → Fin d → ℝ),
        softmax (fun t => dot q (m + v t)) = softmax (fun t => dot q (v t)) := by
  sorry

/-- Adding a nonzero multiple of a direction orthogonal to `v` strictly increases the norm. -/
theorem l2Norm_uncentered_gt_single (v e : Fin d → ℝ) (μ : ℝ) (horth : dot v e = 0)
    (he : e ≠ 0) (hμ : μ ≠ 0) : l2 v < l2 (μ • e + v) := by
  sorry

/-- Batch energy identity of DC-mean centering: for keys `m + v_t` with `Σ_t v_t = 0`,
`Σ_t ‖m + v_t‖² = n ‖m‖² + Σ_t ‖v_t‖²`, so centring strictly lowers the energy when `m ≠ 0`. -/
theorem l2Norm_uncentered_gt_batch {n : ℕ} (m : Fin d → ℝ) (v : Fin n → Fin d → ℝ)
    (hsum : ∑ t, v t = 0) :
    ∑ t, sqnorm (m + v t) = n * sqnorm m + ∑ t, sqnorm (v t) ∧
      (m ≠ 0 → 0 < n → ∑ t, sqnorm (v t) < ∑ t, sqnorm (m + v t)) := by
  sorry

/-- The mean only adds energy: single-vector and batch forms. -/
theorem l2Norm_uncentered_gt :
    (∀ (v e : Fin d → ℝ) (μ : ℝ), dot v e = 0 → e ≠ 0 → μ ≠ 0 → l2 v < l2 (μ • e + v)) ∧
      ∀ (n : ℕ) (m : Fin d → ℝ) (v : Fin n → Fin d → ℝ), ∑ t, v t = 0 →
        ∑ t, sqnorm (m + v t) = n * sqnorm m + ∑ t, sqnorm (v t) ∧
          (m ≠ 0 → 0 < n → ∑ t, sqnorm (v t) < ∑ t, sqnorm (m + v t)) := by
  sorry

/-- Quantising a nonzero residual loses at most a `(1 - 1/d)` fraction of its energy. -/
theorem centered_quant_strict_gain (v : Fin d → ℝ) (hv : v ≠ 0) :
    sqnorm (v - quant1 v) ≤ (1 - 1 / (d : ℝ)) * sqnorm v ∧ sqnorm (v - quant1 v) < sqnorm v := by
  sorry

/-- Mean-domination collapse. For a key `c • s + v` with `s ∈ {±1}^d`, `⟪v, s⟫ = 0`, `c > 0` and
every `|vᵢ| < c`: (i) its code is `s` and its scale is `c`, so every such key is reconstructed as
`c • s`; (ii) its 1-bit error is all of `‖v‖²`; (iii) quantising the centred residual `v` instead
loses at most `(1 - 1/d)‖v‖²`. -/
theorem dc_centering_lifts_rotational_ceiling (s v : Fin d → ℝ) (c : ℝ) (hd : 0 < d)
    (hs : IsSignVec s) (hc : 0 < c) (horth : dot v s = 0) (hsmall : ∀ i, |v i| < c) :
    signVec (c • s + v) = s ∧ optScale (c • s + v) = c ∧
      sqnorm (c • s + v - quant1 (c • s + v)) = sqnorm v ∧
      sqnorm (v - quant1 v) ≤ (1 - 1 / (d : ℝ)) * sqnorm v := by
  sorry

/-- Energy accounting with the mean stored exactly: relative to the whole key `m + v`, the 1-bit
error of the residual is `(1 - cos² θ_v)` times the residual's share of the energy. -/
theorem centered_energy_accounting (m v : Fin d → ℝ) (hv : v ≠ 0) (horth : dot v m = 0) :
    sqnorm (v - quant1 v) / sqnorm (m + v) = (1 - cosSign v ^ 2) * (sqnorm v / sqnorm (m + v)) ∧
      sqnorm (v - quant1 v) / sqnorm (m + v) ≤ 1 - cosSign v ^ 2 := by
  sorry

/-- Every nonzero key can be rotated onto the sign lattice (a Householder reflection onto the
diagonal), so the single-vector rotational ceiling is always `1`. -/
theorem sign_lattice_reachable (x : Fin d → ℝ) (hx : x ≠ 0) :
    ∃ R : Matrix (Fin d) (Fin d) ℝ, Rᵀ * R = 1 ∧ cosSign (R *ᵥ x) = 1 := by
  sorry

end BetaSpec
