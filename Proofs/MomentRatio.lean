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
  sorry

/-- The generalised-Gaussian moment identity, and `ggBeta p` as the moment ratio of the density
`∝ exp(-|x|^p)` (the density is even, so the full-line factors of 2 cancel). -/
theorem gg_moment_identity (p : ℝ) (hp : 0 < p) :
    (∀ q : ℝ, -1 < q → ggMoment p q = Real.Gamma ((q + 1) / p) / p) ∧
    ggMoment p 1 ^ 2 / (ggMoment p 0 * ggMoment p 2) = ggBeta p := by
  sorry

/-- The isotropic floor: `0 < 2/π < 1`, and the cosine floor `√(2/π)` lies in `(0.797, 0.798)`. -/
theorem isotropic_floor_pos :
    0 < 2 / Real.pi ∧ 2 / Real.pi < 1 ∧
      (0.797 : ℝ) < Real.sqrt (2 / Real.pi) ∧ Real.sqrt (2 / Real.pi) < 0.798 := by
  sorry

end BetaSpec
