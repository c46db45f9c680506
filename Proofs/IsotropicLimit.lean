import Proofs.MomentRatio
import Proofs.Hadamard

/-!
# Section 2 — almost-sure limits: the moment-ratio floor and the isotropic floor

For i.i.d. coordinates the 1-bit cosine of `(K₀, …, K_n)` converges almost surely to `√β`,
`β = (E|K|)² / E[K²]` (strong law for `|Kᵢ|` and `Kᵢ²`, then continuity of `(a, b) ↦ a / √b`).
For standard Gaussian coordinates `β = 2/π`.

## Main results

* `BetaSpec.iid_coord_moment_ratio_floor`: the almost-sure limit `E|K₀| / √E[K₀²]`, and
  `(E|K₀|)² ≤ E[K₀²]`. Pairwise independence suffices; symmetry is not needed.
* `BetaSpec.gaussian_measure_moment_ratio`: `(E|X|)² / E[X²] = 2/π` for `X ∼ 𝒩(0, v)`, `v ≠ 0`.
* `BetaSpec.srht_achieves_isotropic_floor`: (a) i.i.d. `𝒩(0, 1)` coordinates have 1-bit cosine
  `→ √(2/π)` almost surely; (b) the SRHT preserves `sqnorm`.
-/

noncomputable section

open MeasureTheory ProbabilityTheory Filter Topology

namespace BetaSpec

/-- Strong-law floor: for pairwise independent, identically distributed, square-integrable
coordinates with `E[K₀²] > 0`, the 1-bit cosine of `(K₀, …, K_n)` tends almost surely to
`E|K₀| / √E[K₀²]`, and `(E|K₀|)² ≤ E[K₀²]`. -/
theorem iid_coord_moment_ratio_floor {Ω : Type*} [MeasurableSpace Ω] {μ : Measure Ω}
    [IsProbabilityMeasure μ] (K : ℕ → Ω → ℝ) (hL2 : MemLp (K 0) 2 μ)
    (hpos : 0 < ∫ ω, K 0 ω ^ 2 ∂μ)
    (hindep : Pairwise fun i j => IndepFun (K i) (K j) μ)
    (hident : ∀ i, IdentDistrib (K i) (K 0) μ μ) :
    (∀ᵐ ω ∂μ, Tendsto (fun n : ℕ => cosSign (fun i : Fin (n + 1) => K i ω)) atTop
        (𝓝 ((∫ ω, |K 0 ω| ∂μ) / Real.sqrt (∫ ω, K 0 ω ^ 2 ∂μ)))) ∧
      (∫ ω, |K 0 ω| ∂μ) ^ 2 ≤ ∫ ω, K 0 ω ^ 2 ∂μ := by
  sorry

/-- The Gaussian moment ratio under Mathlib's Gaussian measure: `(E|X|)² / E[X²] = 2/π`. -/
theorem gaussian_measure_moment_ratio (v : NNReal) (hv : v ≠ 0) :
    (∫ x, |x| ∂(gaussianReal 0 v)) ^ 2 / (∫ x, x ^ 2 ∂(gaussianReal 0 v)) = 2 / Real.pi := by
  sorry

/-- The isotropic floor. (a) Pairwise independent standard Gaussian coordinates have 1-bit
cosine tending almost surely to `√(2/π)`. (b) The SRHT `x ↦ 2^{-n/2} H_n D x` with a `±1`
diagonal `D` preserves `sqnorm`. -/
theorem srht_achieves_isotropic_floor {Ω : Type*} [MeasurableSpace Ω] {μ : Measure Ω}
    [IsProbabilityMeasure μ] (K : ℕ → Ω → ℝ) (hmeas : ∀ i, Measurable (K i))
    (hlaw : ∀ i, μ.map (K i) = gaussianReal 0 1)
    (hindep : Pairwise fun i j => IndepFun (K i) (K j) μ) :
    (∀ᵐ ω ∂μ, Tendsto (fun n : ℕ => cosSign (fun i : Fin (n + 1) => K i ω)) atTop
        (𝓝 (Real.sqrt (2 / Real.pi)))) ∧
      ∀ (n : ℕ) (D : (Fin n → Bool) → ℝ), (∀ i, D i = 1 ∨ D i = -1) →
        ∀ x : (Fin n → Bool) → ℝ, sqnorm (srht n D x) = sqnorm x := by
  sorry

end BetaSpec
