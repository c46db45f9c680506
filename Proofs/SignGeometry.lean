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

open Finset

namespace BetaSpec

variable {d : ℕ}

/-- The cosine between a key and its sign code is `‖k‖₁ / (√d · ‖k‖₂)`. -/
theorem cos_sign_quant_formula (k : Fin d → ℝ) (hk : k ≠ 0) :
    dot k (signVec k) / (l2 k * l2 (signVec k)) = l1 k / (Real.sqrt (d : ℝ) * l2 k) := by
  sorry

/-- The 1-bit cosine of a nonzero key lies in `(0, 1]`. -/
theorem cos_sign_le_one (k : Fin d → ℝ) (hk : k ≠ 0) : 0 < cosSign k ∧ cosSign k ≤ 1 := by
  sorry

/-- The relative energy lost by the 1-bit code is `sin² θ_k = 1 - cos² θ_k`. -/
theorem residual_energy_formula (k : Fin d → ℝ) (hk : k ≠ 0) :
    sqnorm (k - quant1 k) / sqnorm k = 1 - cosSign k ^ 2 := by
  sorry

/-- The scale `optScale k = ‖k‖₁ / d` minimises `‖k - α • signVec k‖²` over all `α`. -/
theorem opt_scale_minimizes (k : Fin d → ℝ) (α : ℝ) :
    sqnorm (k - quant1 k) ≤ sqnorm (k - α • signVec k) := by
  sorry

/-- A nonzero key has 1-bit cosine `1` exactly when all its coordinates have the same modulus. -/
theorem cos_eq_one_iff_sign_lattice (k : Fin d → ℝ) (hk : k ≠ 0) :
    cosSign k = 1 ↔ ∃ a > 0, ∀ i, |k i| = a := by
  sorry

end BetaSpec
