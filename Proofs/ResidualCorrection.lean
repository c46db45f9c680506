import Proofs.Basic

/-!
# Section 5 — rank-r residual correction: the algebra and the top-k lemma

After 1-bit quantisation the residual `r = k - k̂` keeps a fraction `1 - β` of the energy; a
rank-`r` correction `c` captures a fraction `γ` of the residual. The effective quality composes
as `β_eff = 1 - (1 - β)(1 - γ)`.

## Main results

* `BetaSpec.beta_eff_formula`: the composition law, and `max b g ≤ β_eff ≤ 1` on `[0, 1]`.
* `BetaSpec.top_k_optimal`: the threshold form of the top-k lemma — among weights
  `0 ≤ cᵢ ≤ 1` with `Σ cᵢ = |S|`, the indicator of the top set `S` maximises `Σ cᵢ λᵢ`.
* `BetaSpec.top_k_sorted_optimal`, `BetaSpec.top_k_subset_optimal`: the sorted and subset
  corollaries.

Ky Fan and the restricted Eckart–Young theorem are in `Proofs/KyFan.lean`.
-/

noncomputable section

open Finset

namespace BetaSpec

variable {d : ℕ}

/-- The effective-β composition law and its bounds. -/
theorem beta_eff_formula :
    (∀ (k r c : Fin d → ℝ) (b g : ℝ), k ≠ 0 → sqnorm r = (1 - b) * sqnorm k →
        sqnorm (r - c) = (1 - g) * sqnorm r →
        1 - sqnorm (r - c) / sqnorm k = 1 - (1 - b) * (1 - g)) ∧
      ∀ b g : ℝ, 0 ≤ b → b ≤ 1 → 0 ≤ g → g ≤ 1 →
        max b g ≤ 1 - (1 - b) * (1 - g) ∧ 1 - (1 - b) * (1 - g) ≤ 1 := by
  sorry

/-- Top-k, threshold form: no sorting needed. -/
theorem top_k_optimal {ι : Type*} [Fintype ι] [DecidableEq ι] (lam c : ι → ℝ) (S : Finset ι)
    (τ : ℝ) (hS : ∀ i ∈ S, τ ≤ lam i) (hSc : ∀ i ∉ S, lam i ≤ τ) (hc0 : ∀ i, 0 ≤ c i)
    (hc1 : ∀ i, c i ≤ 1) (hsum : ∑ i, c i = S.card) :
    ∑ i, c i * lam i ≤ ∑ i ∈ S, lam i := by
  sorry

/-- Top-k, sorted form: for decreasing `λ`, the first `r` indices maximise `Σ cᵢ λᵢ`. -/
theorem top_k_sorted_optimal (lam c : Fin d → ℝ) (hlam : Antitone lam) (r : ℕ) (hr : r ≤ d)
    (hc0 : ∀ i, 0 ≤ c i) (hc1 : ∀ i, c i ≤ 1) (hsum : ∑ i, c i = r) :
    ∑ i, c i * lam i ≤ ∑ i ∈ univ.filter (fun i : Fin d => (i : ℕ) < r), lam i := by
  sorry

/-- Top-k, subset form: for decreasing `λ`, no `r`-element subset beats the first `r`. -/
theorem top_k_subset_optimal (lam : Fin d → ℝ) (hlam : Antitone lam) (T : Finset (Fin d)) :
    ∑ i ∈ T, lam i ≤ ∑ i ∈ univ.filter (fun i : Fin d => (i : ℕ) < T.card), lam i := by
  sorry

end BetaSpec
