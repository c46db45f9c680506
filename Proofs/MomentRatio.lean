import Proofs.Basic

/-!
# Section 2 — the moment ratio and the isotropic floor (closed forms)

`ggBeta p = Γ(2/p)² / (Γ(1/p) Γ(3/p))` is the moment ratio `(E|K|)² / E[K²]` of the generalised
Gaussian density `∝ exp(-|x|^p)`. Its value at `p = 2` is the isotropic floor `2/π` that any
data-independent rotation drives keys towards.

## Main results

* `BetaSpec.gaussian_moment_ratio_floor_eq`: `ggBeta 2 = 2/π` and `ggBeta 1 = 1/2`.
* `BetaSpec.gg_moment_identity`: `∫₀^∞ x^q exp(-x^p) dx = Γ((q+1)/p) / p`, hence `ggBeta p` is the
  moment ratio `m₁² / (m₀ m₂)` of the density.
* `BetaSpec.isotropic_floor_pos`: `0 < 2/π < 1` and `0.797 < √(2/π) < 0.798`.

The almost-sure limits (strong law) are in `Proofs/IsotropicLimit.lean`.
-/

noncomputable section

open MeasureTheory

namespace BetaSpec

/-- The half-line moment `∫₀^∞ x^q exp(-x^p) dx` of the generalised Gaussian kernel. -/
def ggMoment (p q : ℝ) : ℝ := ∫ x in Set.Ioi (0 : ℝ), x ^ q * Real.exp (-x ^ p)

/-- The Gaussian (`p = 2`) moment ratio is `2/π`; the Laplace (`p = 1`) one is `1/2`. -/
theorem gaussian_moment_ratio_floor_eq : ggBeta 2 = 2 / Real.pi ∧ ggBeta 1 = 1 / 2 := by
  constructor
  · have h : Real.sqrt Real.pi * (1 / 2 * Real.sqrt Real.pi) = Real.pi / 2 := by
      linear_combination (1 / 2 : ℝ) * Real.mul_self_sqrt Real.pi_pos.le
    unfold ggBeta
    rw [show (2 : ℝ) / 2 = 1 by norm_num, show (3 : ℝ) / 2 = 1 / 2 + 1 by norm_num,
      Real.Gamma_one, Real.Gamma_add_one (by norm_num : (1 / 2 : ℝ) ≠ 0), Real.Gamma_one_half_eq,
      h, one_pow, one_div_div]
  · unfold ggBeta
    rw [show (2 : ℝ) / 1 = 2 by norm_num, show (1 : ℝ) / 1 = 1 by norm_num,
      show (3 : ℝ) / 1 = 2 + 1 by norm_num, Real.Gamma_add_one two_ne_zero, Real.Gamma_two,
      Real.Gamma_one]
    norm_num

/-- The generalised-Gaussian moment identity, and `ggBeta p` as the moment ratio of the density
`∝ exp(-|x|^p)` (the density is even, so the full-line factors of 2 cancel). -/
theorem gg_moment_identity (p : ℝ) (hp : 0 < p) :
    (∀ q : ℝ, -1 < q → ggMoment p q = Real.Gamma ((q + 1) / p) / p) ∧
    ggMoment p 1 ^ 2 / (ggMoment p 0 * ggMoment p 2) = ggBeta p := by
  have h1 : ∀ q : ℝ, -1 < q → ggMoment p q = Real.Gamma ((q + 1) / p) / p := by
    intro q hq
    rw [ggMoment, integral_rpow_mul_exp_neg_rpow hp hq]
    ring
  refine ⟨h1, ?_⟩
  have hB : 0 < Real.Gamma (1 / p) := Real.Gamma_pos_of_pos (div_pos one_pos hp)
  have hC : 0 < Real.Gamma (3 / p) := Real.Gamma_pos_of_pos (div_pos (by norm_num) hp)
  have hden : Real.Gamma (1 / p) / p * (Real.Gamma (3 / p) / p) ≠ 0 :=
    (mul_pos (div_pos hB hp) (div_pos hC hp)).ne'
  rw [h1 1 (by norm_num), h1 0 (by norm_num), h1 2 (by norm_num), ggBeta,
    show ((1 : ℝ) + 1) / p = 2 / p by norm_num, show ((0 : ℝ) + 1) / p = 1 / p by norm_num,
    show ((2 : ℝ) + 1) / p = 3 / p by norm_num, div_eq_iff hden]
  linear_combination (-(Real.Gamma (2 / p) / p) ^ 2 * (Real.Gamma (3 / p) * (Real.Gamma (3 / p))⁻¹))
      * mul_inv_cancel₀ hB.ne' - (Real.Gamma (2 / p) / p) ^ 2 * mul_inv_cancel₀ hC.ne'

/-- The isotropic floor: `0 < 2/π < 1`, and the cosine floor `√(2/π)` lies in `(0.797, 0.798)`. -/
theorem isotropic_floor_pos :
    0 < 2 / Real.pi ∧ 2 / Real.pi < 1 ∧
      (0.797 : ℝ) < Real.sqrt (2 / Real.pi) ∧ Real.sqrt (2 / Real.pi) < 0.798 := by
  have hpi : 0 < Real.pi := Real.pi_pos
  have hlo : (3.1415 : ℝ) < Real.pi := Real.pi_gt_d4
  have hhi : Real.pi < (3.1416 : ℝ) := Real.pi_lt_d4
  norm_num at hlo hhi
  have h1 : (0.797 : ℝ) ^ 2 * Real.pi < 2 := by
    norm_num
    linarith
  have h2 : 2 < (0.798 : ℝ) ^ 2 * Real.pi := by
    norm_num
    linarith
  have h797 : (0 : ℝ) ≤ 0.797 := by norm_num
  have h798 : (0 : ℝ) < 0.798 := by norm_num
  refine ⟨div_pos two_pos hpi, (div_lt_one₀ hpi).mpr (by linarith), ?_, ?_⟩
  · rw [Real.lt_sqrt h797, lt_div_iff₀ hpi]
    exact h1
  · rw [Real.sqrt_lt' h798, div_lt_iff₀ hpi]
    exact h2

end BetaSpec
