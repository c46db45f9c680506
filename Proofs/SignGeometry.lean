import Proofs.Basic

/-!
# Section 1 — sign-quantization geometry

A key `k` is stored as `quant1 k = optScale k • signVec k`. This file relates the quality of that
code to the moment ratio of the coordinates.

## Main results

* `BetaSpec.cos_sign_quant_formula`: the cosine between `k` and `signVec k` is
  `‖k‖₁ / (√d ‖k‖₂)`.
* `BetaSpec.cos_sign_le_one`: for `k ≠ 0`, `0 < cosSign k ≤ 1` (Cauchy–Schwarz).
* `BetaSpec.residual_energy_formula`: the relative 1-bit error is `1 - cosSign k ^ 2`.
* `BetaSpec.opt_scale_minimizes`: `optScale k = ‖k‖₁ / d` is the least-squares scale.
* `BetaSpec.cos_eq_one_iff_sign_lattice`: `cosSign k = 1` exactly on the sign lattice `{±a}^d`.
-/

noncomputable section

namespace BetaSpec

variable {d : ℕ}

/-! ### The sign code and the 1-bit cosine -/

/-- The sign code has squared norm `d`. -/
lemma sqnorm_signVec (k : Fin d → ℝ) : sqnorm (signVec k) = d := by
  unfold sqnorm signVec
  simp only [sgn_sq, Finset.sum_const, Finset.card_univ, Fintype.card_fin, nsmul_eq_mul, mul_one]

/-- The sign code has norm `√d`. -/
lemma l2_signVec (k : Fin d → ℝ) : l2 (signVec k) = Real.sqrt d := by
  rw [l2, sqnorm_signVec]

/-- The correlation of a key with its own code is its `ℓ¹` norm: `⟪k, signVec k⟫ = ‖k‖₁`. -/
lemma dot_signVec (k : Fin d → ℝ) : dot k (signVec k) = l1 k := by
  unfold dot signVec l1
  exact Finset.sum_congr rfl fun i _ => mul_sgn (k i)

/-- `cos² θ_k = ‖k‖₁² / (d ‖k‖₂²)`. -/
lemma cosSign_sq (k : Fin d → ℝ) : cosSign k ^ 2 = l1 k ^ 2 / ((d : ℝ) * sqnorm k) := by
  have hd : (0 : ℝ) ≤ d := Nat.cast_nonneg d
  rw [cosSign, l2, div_pow, mul_pow, Real.sq_sqrt hd, Real.sq_sqrt (sqnorm_nonneg k)]

/-- The variance identity behind Cauchy–Schwarz:
`Σᵢ (d |kᵢ| - ‖k‖₁)² = d (d ‖k‖₂² - ‖k‖₁²)`. -/
lemma sum_sq_dev (k : Fin d → ℝ) :
    ∑ i, ((d : ℝ) * |k i| - l1 k) ^ 2 = (d : ℝ) * ((d : ℝ) * sqnorm k - l1 k ^ 2) := by
  have h : ∀ i, ((d : ℝ) * |k i| - l1 k) ^ 2
      = (d : ℝ) ^ 2 * k i ^ 2 - 2 * (d : ℝ) * l1 k * |k i| + l1 k ^ 2 := fun i => by
    linear_combination (d : ℝ) ^ 2 * sq_abs (k i)
  have hL : ∑ i, |k i| = l1 k := rfl
  have hS : ∑ i, k i ^ 2 = sqnorm k := rfl
  simp only [h, Finset.sum_add_distrib, Finset.sum_sub_distrib, ← Finset.mul_sum, hL, hS,
    Finset.sum_const, Finset.card_univ, Fintype.card_fin, nsmul_eq_mul]
  ring

/-- Cauchy–Schwarz for the sign code: `‖k‖₁² ≤ d ‖k‖₂²`. -/
lemma l1_sq_le (hd : 0 < d) (k : Fin d → ℝ) : l1 k ^ 2 ≤ (d : ℝ) * sqnorm k := by
  have hd' : (0 : ℝ) < d := Nat.cast_pos.mpr hd
  have h : 0 ≤ (d : ℝ) * ((d : ℝ) * sqnorm k - l1 k ^ 2) := by
    rw [← sum_sq_dev]
    exact Finset.sum_nonneg fun i _ => sq_nonneg _
  nlinarith

/-- The error of the code `a • signVec k`: `‖k - a • sgn k‖² = ‖k‖² - 2a‖k‖₁ + a²d`. -/
lemma sqnorm_sub_smul_signVec (k : Fin d → ℝ) (a : ℝ) :
    sqnorm (k - a • signVec k) = sqnorm k - 2 * a * l1 k + a ^ 2 * d := by
  have h : ∀ i, (k - a • signVec k) i ^ 2 = k i ^ 2 - 2 * a * |k i| + a ^ 2 := fun i => by
    show (k i - a * sgn (k i)) ^ 2 = k i ^ 2 - 2 * a * |k i| + a ^ 2
    linear_combination (-2 * a) * mul_sgn (k i) + a ^ 2 * sgn_sq (k i)
  unfold sqnorm l1
  rw [Finset.sum_congr rfl fun i _ => h i, Finset.sum_add_distrib, Finset.sum_sub_distrib,
    ← Finset.mul_sum, Finset.sum_const, Finset.card_univ, Fintype.card_fin, nsmul_eq_mul]
  ring

/-- The 1-bit error at the least-squares scale: `‖k - k̂‖² = ‖k‖² - ‖k‖₁² / d`. -/
lemma sqnorm_sub_quant1 {k : Fin d → ℝ} (hd : 0 < d) :
    sqnorm (k - quant1 k) = sqnorm k - l1 k ^ 2 / d := by
  have hd0 : (d : ℝ) ≠ 0 := Nat.cast_ne_zero.mpr hd.ne'
  have e : l1 k / d * d = l1 k := div_mul_cancel₀ (l1 k) hd0
  rw [quant1, optScale, sqnorm_sub_smul_signVec]
  linear_combination (l1 k / d) * e

/-! ### Main results -/

/-- The cosine between a key and its sign code is `‖k‖₁ / (√d · ‖k‖₂)`. -/
theorem cos_sign_quant_formula (k : Fin d → ℝ) (hk : k ≠ 0) :
    dot k (signVec k) / (l2 k * l2 (signVec k)) = l1 k / (Real.sqrt (d : ℝ) * l2 k) := by
  rw [dot_signVec, l2_signVec, mul_comm (l2 k)]

/-- The 1-bit cosine of a nonzero key lies in `(0, 1]`. -/
theorem cos_sign_le_one (k : Fin d → ℝ) (hk : k ≠ 0) : 0 < cosSign k ∧ cosSign k ≤ 1 := by
  have hd : 0 < d := pos_of_ne_zero hk
  have hd' : (0 : ℝ) < d := Nat.cast_pos.mpr hd
  have hS : 0 < sqnorm k := sqnorm_pos hk
  have hpos : 0 < cosSign k := by
    unfold cosSign l2
    exact div_pos (l1_pos hk) (mul_pos (Real.sqrt_pos.mpr hd') (Real.sqrt_pos.mpr hS))
  have hsq : cosSign k ^ 2 ≤ 1 := by
    rw [cosSign_sq, div_le_one₀ (mul_pos hd' hS)]
    exact l1_sq_le hd k
  exact ⟨hpos, by nlinarith⟩

/-- The relative energy lost by the 1-bit code is `sin² θ_k = 1 - cos² θ_k`. -/
theorem residual_energy_formula (k : Fin d → ℝ) (hk : k ≠ 0) :
    sqnorm (k - quant1 k) / sqnorm k = 1 - cosSign k ^ 2 := by
  have hd : 0 < d := pos_of_ne_zero hk
  have hS : sqnorm k ≠ 0 := (sqnorm_pos hk).ne'
  rw [sqnorm_sub_quant1 hd, cosSign_sq]
  linear_combination mul_inv_cancel₀ hS

/-- The scale `optScale k = ‖k‖₁ / d` minimises `‖k - α • signVec k‖²` over all `α`. -/
theorem opt_scale_minimizes (k : Fin d → ℝ) (α : ℝ) :
    sqnorm (k - quant1 k) ≤ sqnorm (k - α • signVec k) := by
  rcases Nat.eq_zero_or_pos d with hd | hd
  · subst hd
    simp [sqnorm]
  · have hd0 : (d : ℝ) ≠ 0 := Nat.cast_ne_zero.mpr hd.ne'
    have hd' : (0 : ℝ) ≤ d := Nat.cast_nonneg d
    have e : l1 k / d * d = l1 k := div_mul_cancel₀ (l1 k) hd0
    have key : sqnorm (k - α • signVec k)
        = sqnorm (k - quant1 k) + d * (α - l1 k / d) ^ 2 := by
      rw [quant1, optScale, sqnorm_sub_smul_signVec, sqnorm_sub_smul_signVec]
      linear_combination (2 * α - 2 * (l1 k / d)) * e
    have hsq : 0 ≤ (d : ℝ) * (α - l1 k / d) ^ 2 := mul_nonneg hd' (sq_nonneg _)
    rw [key]
    linarith

/-- `cosSign k = 1` exactly when Cauchy–Schwarz is tight: `‖k‖₁² = d ‖k‖₂²`. -/
lemma cosSign_eq_one_iff {k : Fin d → ℝ} (hk : k ≠ 0) :
    cosSign k = 1 ↔ l1 k ^ 2 = d * sqnorm k := by
  have hd' : (0 : ℝ) < d := Nat.cast_pos.mpr (pos_of_ne_zero hk)
  have hdS : (d : ℝ) * sqnorm k ≠ 0 := (mul_pos hd' (sqnorm_pos hk)).ne'
  have hc := cos_sign_le_one k hk
  constructor
  · intro h
    have h2 : cosSign k ^ 2 = 1 := by rw [h, one_pow]
    rw [cosSign_sq, div_eq_one_iff_eq hdS] at h2
    exact h2
  · intro h
    have h2 : cosSign k ^ 2 = 1 := by
      rw [cosSign_sq]
      exact (div_eq_one_iff_eq hdS).mpr h
    exact le_antisymm hc.2 (by nlinarith [hc.1, hc.2])

/-- A nonzero key has 1-bit cosine `1` exactly when all its coordinates have the same modulus. -/
theorem cos_eq_one_iff_sign_lattice (k : Fin d → ℝ) (hk : k ≠ 0) :
    cosSign k = 1 ↔ ∃ a > 0, ∀ i, |k i| = a := by
  have hd' : (0 : ℝ) < d := Nat.cast_pos.mpr (pos_of_ne_zero hk)
  rw [cosSign_eq_one_iff hk]
  constructor
  · intro h
    have hdev : ∑ i, ((d : ℝ) * |k i| - l1 k) ^ 2 = 0 := by
      rw [sum_sq_dev, h, sub_self, mul_zero]
    have hzero := (Finset.sum_eq_zero_iff_of_nonneg
      fun i _ => sq_nonneg ((d : ℝ) * |k i| - l1 k)).mp hdev
    refine ⟨l1 k / d, div_pos (l1_pos hk) hd', fun i => ?_⟩
    have hi : ((d : ℝ) * |k i| - l1 k) ^ 2 = 0 := hzero i (Finset.mem_univ i)
    have h0 : (d : ℝ) * |k i| - l1 k = 0 := (pow_eq_zero_iff two_ne_zero).mp hi
    rw [eq_div_iff hd'.ne']
    linear_combination h0
  · rintro ⟨a, -, ha⟩
    have hL : l1 k = d * a := by
      unfold l1
      rw [Finset.sum_congr rfl fun i _ => ha i, Finset.sum_const, Finset.card_univ,
        Fintype.card_fin, nsmul_eq_mul]
    have hsq : ∀ i, k i ^ 2 = a ^ 2 := fun i => by rw [← ha i, sq_abs]
    have hS : sqnorm k = d * a ^ 2 := by
      unfold sqnorm
      rw [Finset.sum_congr rfl fun i _ => hsq i, Finset.sum_const, Finset.card_univ,
        Fintype.card_fin, nsmul_eq_mul]
    rw [hL, hS]
    ring

end BetaSpec
