import Proofs.SignGeometry

/-!
# Section 4 — the last mile

Near a sign-lattice point `s ∈ {±1}^d`, perturb along `u`: `k = s + t • u` with no sign flips
(`|t uᵢ| < 1`). The β deficit `1 - cosSign k ²` is exactly quadratic in `t`, with coefficient
governed by the component `u⊥ = u - (⟪u, s⟫ / d) • s` of `u` off the diagonal. Its derivative at
`t = 0` vanishes, so gradient ascent on β slows to a crawl as it approaches the lattice.

## Main results

* `BetaSpec.beta_local_quadratic_expansion`: `1 - cosSign (s + t•u)² = t² ‖u⊥‖² / ‖s + t•u‖²`.
* `BetaSpec.beta_hessian_nonneg`: `d ‖u‖² - ⟪s, u⟫² = d ‖u⊥‖² ≥ 0`.
* `BetaSpec.beta_last_mile_quadratic_hardness`: `f'(0) = 0` and `f t ≤ 4 t² ‖u⊥‖² / d` while
  every `|t uᵢ| ≤ 1/2`.
-/

noncomputable section

open Finset Filter Topology

namespace BetaSpec

variable {d : ℕ}

/-- Exact local expansion of the β deficit around a sign-lattice point. -/
theorem beta_local_quadratic_expansion (s u : Fin d → ℝ) (t : ℝ) (hd : 0 < d)
    (hs : IsSignVec s) (ht : ∀ i, |t * u i| < 1) :
    1 - cosSign (s + t • u) ^ 2 = t ^ 2 * sqnorm (perp u s) / sqnorm (s + t • u) := by
  sorry

/-- The second-order coefficient of the deficit is nonnegative:
`d ‖u‖² - ⟪s, u⟫² = d ‖u⊥‖² ≥ 0`. -/
theorem beta_hessian_nonneg (s u : Fin d → ℝ) (hs : IsSignVec s) :
    (d : ℝ) * sqnorm (perp u s) = (d : ℝ) * sqnorm u - dot s u ^ 2 ∧
      0 ≤ (d : ℝ) * sqnorm u - dot s u ^ 2 := by
  sorry

/-- Quadratic hardness of the last mile: the deficit `f t = 1 - cosSign (s + t•u)²` has zero
derivative at the sign lattice, and is at most `4 t² ‖u⊥‖² / d` while every `|t uᵢ| ≤ 1/2`. -/
theorem beta_last_mile_quadratic_hardness (s u : Fin d → ℝ) (hd : 0 < d) (hs : IsSignVec s) :
    HasDerivAt (fun t : ℝ => 1 - cosSign (s + t • u) ^ 2) 0 0 ∧
      ∀ t : ℝ, (∀ i, |t * u i| ≤ 1 / 2) →
        1 - cosSign (s + t • u) ^ 2 ≤ 4 * t ^ 2 * sqnorm (perp u s) / d := by
  sorry

end BetaSpec
