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

namespace BetaSpec

variable {d : ℕ}

/-- The effective-β composition law and its bounds. -/
theorem beta_eff_formula :
    (∀ (k r c : Fin d → ℝ) (b g : ℝ), k ≠ 0 → sqnorm r = (1 - b) * sqnorm k →
        sqnorm (r - c) = (1 - g) * sqnorm r →
        1 - sqnorm (r - c) / sqnorm k = 1 - (1 - b) * (1 - g)) ∧
      ∀ b g : ℝ, 0 ≤ b → b ≤ 1 → 0 ≤ g → g ≤ 1 →
        max b g ≤ 1 - (1 - b) * (1 - g) ∧ 1 - (1 - b) * (1 - g) ≤ 1 := by
  refine ⟨fun k r c b g hk hr hc => ?_, fun b g hb0 hb1 hg0 hg1 => ⟨?_, ?_⟩⟩
  · have hS : sqnorm k ≠ 0 := (sqnorm_pos hk).ne'
    rw [hc, hr]
    linear_combination (-(1 - b) * (1 - g)) * mul_inv_cancel₀ hS
  · exact max_le (by nlinarith [mul_nonneg (sub_nonneg.mpr hb1) hg0])
      (by nlinarith [mul_nonneg (sub_nonneg.mpr hg1) hb0])
  · nlinarith [mul_nonneg (sub_nonneg.mpr hb1) (sub_nonneg.mpr hg1)]

/-- Top-k, threshold form: no sorting needed. -/
theorem top_k_optimal {ι : Type*} [Fintype ι] [DecidableEq ι] (lam c : ι → ℝ) (S : Finset ι)
    (τ : ℝ) (hS : ∀ i ∈ S, τ ≤ lam i) (hSc : ∀ i ∉ S, lam i ≤ τ) (hc0 : ∀ i, 0 ≤ c i)
    (hc1 : ∀ i, c i ≤ 1) (hsum : ∑ i, c i = S.card) :
    ∑ i, c i * lam i ≤ ∑ i ∈ S, lam i := by
  have hsplit : ∑ i, c i * (lam i - τ)
      = ∑ i ∈ S, c i * (lam i - τ) + ∑ i ∈ Sᶜ, c i * (lam i - τ) :=
    (Finset.sum_add_sum_compl S (fun i => c i * (lam i - τ))).symm
  have hneg : ∑ i ∈ Sᶜ, c i * (lam i - τ) ≤ 0 :=
    Finset.sum_nonpos fun i hi => by
      have h1 := hSc i (Finset.mem_compl.mp hi)
      nlinarith [mul_nonneg (hc0 i) (sub_nonneg.mpr h1)]
  have hle : ∑ i ∈ S, c i * (lam i - τ) ≤ ∑ i ∈ S, (lam i - τ) :=
    Finset.sum_le_sum fun i hi => by
      nlinarith [mul_nonneg (sub_nonneg.mpr (hc1 i)) (sub_nonneg.mpr (hS i hi))]
  have hcτ : ∑ i, c i * (lam i - τ) = ∑ i, c i * lam i - S.card * τ := by
    rw [← hsum, Finset.sum_mul, ← Finset.sum_sub_distrib]
    exact Finset.sum_congr rfl fun i _ => by ring
  have hSτ : ∑ i ∈ S, (lam i - τ) = ∑ i ∈ S, lam i - S.card * τ := by
    rw [Finset.sum_sub_distrib, Finset.sum_const, nsmul_eq_mul]
  linarith

/-- The first `r` indices of `Fin d` (`r ≤ d`) form a set of size `r`. -/
lemma card_filter_val_lt {r : ℕ} (hr : r ≤ d) :
    (Finset.univ.filter (fun i : Fin d => (i : ℕ) < r)).card = r := by
  have h : (Finset.univ.filter (fun i : Fin d => (i : ℕ) < r)).map Fin.valEmbedding =
      Finset.range r := by
    ext k
    simp only [Finset.mem_map, Finset.mem_filter, Finset.mem_univ, true_and, Finset.mem_range]
    constructor
    · rintro ⟨i, hi, rfl⟩
      exact hi
    · intro hk
      exact ⟨⟨k, by omega⟩, hk, rfl⟩
  rw [← Finset.card_map Fin.valEmbedding, h, Finset.card_range]

/-- Top-k, sorted form: for decreasing `λ`, the first `r` indices maximise `Σ cᵢ λᵢ`. -/
theorem top_k_sorted_optimal (lam c : Fin d → ℝ) (hlam : Antitone lam) (r : ℕ) (hr : r ≤ d)
    (hc0 : ∀ i, 0 ≤ c i) (hc1 : ∀ i, c i ≤ 1) (hsum : ∑ i, c i = r) :
    ∑ i, c i * lam i ≤ ∑ i ∈ Finset.univ.filter (fun i : Fin d => (i : ℕ) < r), lam i := by
  rcases Nat.eq_zero_or_pos r with hr0 | hr0
  · subst hr0
    have hc : ∀ i ∈ (Finset.univ : Finset (Fin d)), c i = 0 :=
      (Finset.sum_eq_zero_iff_of_nonneg fun i _ => hc0 i).mp (by simpa using hsum)
    have hl : ∑ i, c i * lam i = 0 :=
      Finset.sum_eq_zero fun i hi => by rw [hc i hi, zero_mul]
    rw [hl]
    simp
  · have hr1 : r - 1 < d := by omega
    refine top_k_optimal lam c _ (lam ⟨r - 1, hr1⟩) (fun i hi => ?_) (fun i hi => ?_) hc0 hc1 ?_
    · have hi' : (i : ℕ) < r := (Finset.mem_filter.mp hi).2
      exact hlam (show i ≤ (⟨r - 1, hr1⟩ : Fin d) from (show (i : ℕ) ≤ r - 1 by omega))
    · have hi' : ¬(i : ℕ) < r := fun h => hi (Finset.mem_filter.mpr ⟨Finset.mem_univ i, h⟩)
      exact hlam (show (⟨r - 1, hr1⟩ : Fin d) ≤ i from (show r - 1 ≤ (i : ℕ) by omega))
    · rw [hsum, card_filter_val_lt hr]

/-- Top-k, subset form: for decreasing `λ`, no `r`-element subset beats the first `r`. -/
theorem top_k_subset_optimal (lam : Fin d → ℝ) (hlam : Antitone lam) (T : Finset (Fin d)) :
    ∑ i ∈ T, lam i ≤ ∑ i ∈ Finset.univ.filter (fun i : Fin d => (i : ℕ) < T.card), lam i := by
  have hT : T.card ≤ d := by simpa using Finset.card_le_univ T
  have hsum : ∑ i, (if i ∈ T then (1 : ℝ) else 0) = T.card := by
    rw [Finset.sum_ite_mem_eq, Finset.sum_const, nsmul_eq_mul, mul_one]
  have h := top_k_sorted_optimal lam (fun i => if i ∈ T then (1 : ℝ) else 0) hlam T.card hT
    (fun i => show (0 : ℝ) ≤ (if i ∈ T then (1 : ℝ) else 0) by split_ifs <;> norm_num)
    (fun i => show (if i ∈ T then (1 : ℝ) else 0) ≤ 1 by split_ifs <;> norm_num) hsum
  have hl : ∑ i, (if i ∈ T then (1 : ℝ) else 0) * lam i = ∑ i ∈ T, lam i := by
    rw [← Finset.sum_ite_mem_eq T lam]
    exact Finset.sum_congr rfl fun i _ => by split_ifs <;> ring
  rw [← hl]
  exact h

end BetaSpec
