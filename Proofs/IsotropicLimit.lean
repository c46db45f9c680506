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

## Supporting lemmas

* `BetaSpec.cosSign_fin_succ`: the 1-bit cosine of `(x₀, …, x_n)` as
  `(S₁/(n+1)) / √(S₂/(n+1))`, the sample moments the strong law controls.
* `BetaSpec.tendsto_avg_succ`: the strong-law averages over `range n`, shifted to `range (n+1)`.
* `BetaSpec.sq_integral_abs_le`: `(E|X|)² ≤ E[X²]` (nonnegativity of the variance of `|X|`).
* `BetaSpec.integral_abs_gaussianReal`, `BetaSpec.integral_sq_gaussianReal`: the first absolute
  and the second moment of `𝒩(0, v)`.
-/

noncomputable section

open MeasureTheory ProbabilityTheory Filter Topology Finset

namespace BetaSpec

/-! ### The 1-bit cosine as a ratio of sample moments -/

/-- `A / (√N · √B) = (A/N) / √(B/N)` for `N > 0` (no condition on `B`). -/
lemma iso_div_sqrt_mul_sqrt (A B N : ℝ) (hN : 0 < N) :
    A / (Real.sqrt N * Real.sqrt B) = A / N / Real.sqrt (B / N) := by
  have hN' : N ≠ 0 := hN.ne'
  have hA : A = N * (A / N) := by
    linear_combination (-A) * mul_inv_cancel₀ hN'
  have hB : B = N * (B / N) := by
    linear_combination (-B) * mul_inv_cancel₀ hN'
  calc A / (Real.sqrt N * Real.sqrt B)
      = N * (A / N) / (Real.sqrt N * Real.sqrt (N * (B / N))) := by rw [← hA, ← hB]
    _ = N * (A / N) / (N * Real.sqrt (B / N)) := by
        rw [Real.sqrt_mul hN.le, ← mul_assoc, Real.mul_self_sqrt hN.le]
    _ = A / N / Real.sqrt (B / N) := mul_div_mul_left _ _ hN'

/-- The 1-bit cosine of the first `n + 1` terms of a sequence, written with the sample moments
`S₁ = Σ_{i ≤ n} |xᵢ|` and `S₂ = Σ_{i ≤ n} xᵢ²`: `cosSign = (S₁/(n+1)) / √(S₂/(n+1))`. -/
lemma cosSign_fin_succ (x : ℕ → ℝ) (n : ℕ) :
    cosSign (fun i : Fin (n + 1) => x i) =
      (∑ i ∈ range (n + 1), |x i|) / ((n + 1 : ℕ) : ℝ) /
        Real.sqrt ((∑ i ∈ range (n + 1), x i ^ 2) / ((n + 1 : ℕ) : ℝ)) := by
  have h1 : l1 (fun i : Fin (n + 1) => x i) = ∑ i ∈ range (n + 1), |x i| :=
    Fin.sum_univ_eq_sum_range (fun i => |x i|) (n + 1)
  have h2 : sqnorm (fun i : Fin (n + 1) => x i) = ∑ i ∈ range (n + 1), x i ^ 2 :=
    Fin.sum_univ_eq_sum_range (fun i => x i ^ 2) (n + 1)
  have hN : (0 : ℝ) < ((n + 1 : ℕ) : ℝ) := by positivity
  unfold cosSign l2
  rw [h1, h2]
  exact iso_div_sqrt_mul_sqrt _ _ _ hN

/-- The strong-law averages `(Σ_{i < n} fᵢ) / n`, shifted by one: if they converge to `L`, so do
`(Σ_{i ≤ n} fᵢ) / (n + 1)`. -/
lemma tendsto_avg_succ {f : ℕ → ℝ} {L : ℝ}
    (h : Tendsto (fun n : ℕ => (∑ i ∈ range n, f i) / n) atTop (𝓝 L)) :
    Tendsto (fun n : ℕ => (∑ i ∈ range (n + 1), f i) / ((n + 1 : ℕ) : ℝ)) atTop (𝓝 L) :=
  h.comp (tendsto_add_atTop_nat 1)

/-! ### `(E|X|)² ≤ E[X²]` -/

/-- `(E|X|)² ≤ E[X²]` for a square-integrable real random variable: the variance of `|X|` is
nonnegative. -/
lemma sq_integral_abs_le {Ω : Type*} [MeasurableSpace Ω] {μ : Measure Ω} [IsProbabilityMeasure μ]
    {X : Ω → ℝ} (hX : MemLp X 2 μ) :
    (∫ ω, |X ω| ∂μ) ^ 2 ≤ ∫ ω, X ω ^ 2 ∂μ := by
  -- `0 ≤ Var |X| = E[|X|²] - (E|X|)²`
  -- `variance_eq_sub` speaks of `μ[|X| ^ 2]`, definitionally `∫ ω, |X ω| ^ 2 ∂μ`
  have h : 0 ≤ ∫ ω, |X ω| ^ 2 ∂μ - (∫ ω, |X ω| ∂μ) ^ 2 := by
    first
    | exact (variance_nonneg _ μ).trans_eq (variance_eq_sub hX.abs)
    | simpa using (variance_nonneg _ μ).trans_eq (variance_eq_sub hX.abs)
  have h2 : ∫ ω, |X ω| ^ 2 ∂μ = ∫ ω, X ω ^ 2 ∂μ :=
    integral_congr_ae (ae_of_all _ fun ω => sq_abs (X ω))
  linarith

/-! ### The strong-law floor -/

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
  refine ⟨?_, sq_integral_abs_le hL2⟩
  -- strong law for `|Kᵢ|`
  have hA := strong_law_ae_real (fun i ω => |K i ω|) (hL2.integrable one_le_two).abs
    (fun i j hij => (hindep hij).comp continuous_abs.measurable continuous_abs.measurable)
    (fun i => (hident i).comp continuous_abs.measurable)
  -- strong law for `Kᵢ²`
  have hB := strong_law_ae_real (fun i ω => K i ω ^ 2) hL2.integrable_sq
    (fun i j hij => (hindep hij).comp (continuous_pow 2).measurable (continuous_pow 2).measurable)
    (fun i => (hident i).comp (continuous_pow 2).measurable)
  have hsq : Real.sqrt (∫ ω, K 0 ω ^ 2 ∂μ) ≠ 0 := (Real.sqrt_pos.2 hpos).ne'
  filter_upwards [hA, hB] with ω hAω hBω
  refine ((tendsto_avg_succ hAω).div (tendsto_avg_succ hBω).sqrt hsq).congr fun n => ?_
  exact (cosSign_fin_succ (fun i => K i ω) n).symm

/-! ### Gaussian moments -/

/-- The half-normal integrand `y ↦ (2πv)^{-1/2} · y · exp(-y²/(2v))`, written with real powers
so that `integral_rpow_mul_exp_neg_mul_rpow` applies. -/
def halfNormalKernel (v : NNReal) (y : ℝ) : ℝ :=
  (Real.sqrt (2 * Real.pi * v))⁻¹ * (y ^ (1 : ℝ) * Real.exp (-(2 * (v : ℝ))⁻¹ * y ^ (2 : ℝ)))

/-- `v ≠ 0` as a positive real. -/
lemma nnreal_coe_pos_of_ne_zero {v : NNReal} (hv : v ≠ 0) : (0 : ℝ) < v := by
  have h : 0 < v := pos_iff_ne_zero.2 hv
  exact_mod_cast h

/-- Under `𝒩(0, v)`, the integrand of `E|X|` is the half-normal kernel evaluated at `|x|`. -/
lemma integral_abs_gaussianReal_eq_kernel (v : NNReal) (hv : v ≠ 0) :
    ∫ x, |x| ∂(gaussianReal 0 v) = ∫ x, halfNormalKernel v |x| := by
  rw [integral_gaussianReal_eq_integral_smul (E := ℝ) hv]
  refine integral_congr_ae (ae_of_all _ fun x => ?_)
  -- the scalar action of `ℝ` on itself is multiplication, definitionally
  show gaussianPDFReal 0 v x * |x| = halfNormalKernel v |x|
  have he : -(x - 0) ^ 2 / (2 * (v : ℝ)) = -(2 * (v : ℝ))⁻¹ * x ^ 2 := by ring
  rw [gaussianPDFReal, halfNormalKernel, Real.rpow_one, Real.rpow_two, sq_abs]
  first
  | (rw [he]; ring)
  | ring_nf

/-- `∫₀^∞ y · exp(-y²/(2v)) dy = v`, from `integral_rpow_mul_exp_neg_mul_rpow` (`p = 2`, `q = 1`). -/
lemma integral_Ioi_mul_exp_neg_sq (v : NNReal) (hv : v ≠ 0) :
    ∫ y in Set.Ioi (0 : ℝ), y ^ (1 : ℝ) * Real.exp (-(2 * (v : ℝ))⁻¹ * y ^ (2 : ℝ)) = v := by
  have hv' : (0 : ℝ) < v := nnreal_coe_pos_of_ne_zero hv
  have hb : (0 : ℝ) < (2 * (v : ℝ))⁻¹ := inv_pos.2 (by linarith)
  rw [integral_rpow_mul_exp_neg_mul_rpow (by norm_num : (0 : ℝ) < 2) (by norm_num : (-1 : ℝ) < 1)
    hb]
  have e1 : (-(1 + 1) / 2 : ℝ) = -1 := by norm_num
  have e2 : ((1 + 1) / 2 : ℝ) = 1 := by norm_num
  first
  | (rw [e1, e2, Real.rpow_neg_one, inv_inv, Real.Gamma_one]; ring)
  | (norm_num [Real.rpow_neg_one, Real.Gamma_one]; ring)
  | norm_num [Real.rpow_neg_one, Real.Gamma_one]

/-- The first absolute moment of `𝒩(0, v)`: `E|X| = 2v / √(2πv)` (that is, `√(2v/π)`). -/
lemma integral_abs_gaussianReal (v : NNReal) (hv : v ≠ 0) :
    ∫ x, |x| ∂(gaussianReal 0 v) = 2 * (v : ℝ) / Real.sqrt (2 * Real.pi * v) := by
  have hB : ∫ x, halfNormalKernel v |x| = 2 * ∫ x in Set.Ioi (0 : ℝ), halfNormalKernel v x :=
    integral_comp_abs (f := halfNormalKernel v)
  have hC : ∫ x in Set.Ioi (0 : ℝ), halfNormalKernel v x =
      (Real.sqrt (2 * Real.pi * v))⁻¹ *
        ∫ y in Set.Ioi (0 : ℝ), y ^ (1 : ℝ) * Real.exp (-(2 * (v : ℝ))⁻¹ * y ^ (2 : ℝ)) := by
    unfold halfNormalKernel
    exact integral_const_mul _ _
  rw [integral_abs_gaussianReal_eq_kernel v hv, hB, hC, integral_Ioi_mul_exp_neg_sq v hv]
  ring

/-- The second moment of `𝒩(0, v)` is `v` (its variance, the mean being `0`). -/
lemma integral_sq_gaussianReal (v : NNReal) : ∫ x, x ^ 2 ∂(gaussianReal 0 v) = v := by
  have hm : ∫ x, x ∂(gaussianReal 0 v) = 0 := integral_id_gaussianReal
  have h := variance_of_integral_eq_zero (X := fun x : ℝ => x) (μ := gaussianReal 0 v)
    measurable_id'.aemeasurable hm
  calc ∫ x, x ^ 2 ∂(gaussianReal 0 v) = variance (fun x : ℝ => x) (gaussianReal 0 v) := h.symm
    _ = v := variance_id_gaussianReal

/-- The Gaussian moment ratio under Mathlib's Gaussian measure: `(E|X|)² / E[X²] = 2/π`. -/
theorem gaussian_measure_moment_ratio (v : NNReal) (hv : v ≠ 0) :
    (∫ x, |x| ∂(gaussianReal 0 v)) ^ 2 / (∫ x, x ^ 2 ∂(gaussianReal 0 v)) = 2 / Real.pi := by
  have hv0 : (v : ℝ) ≠ 0 := (nnreal_coe_pos_of_ne_zero hv).ne'
  have hπ : Real.pi ≠ 0 := Real.pi_ne_zero
  have hs : Real.sqrt (2 * Real.pi * v) ^ 2 = 2 * Real.pi * v := Real.sq_sqrt (by positivity)
  rw [integral_abs_gaussianReal v hv, integral_sq_gaussianReal v, div_pow, hs]
  -- `(2v)² / (2πv) / v = 2/π`
  have hden : 2 * Real.pi * (v : ℝ) * v ≠ 0 :=
    mul_ne_zero (mul_ne_zero (mul_ne_zero two_ne_zero hπ) hv0) hv0
  first
  | (rw [div_div, div_eq_div_iff hden hπ]; ring)
  | (field_simp; ring)
  | field_simp

/-! ### The isotropic floor -/

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
  refine ⟨?_, fun n D hD x => srht_isometry n D hD x⟩
  have hident : ∀ i, IdentDistrib (K i) (K 0) μ μ := fun i =>
    ⟨(hmeas i).aemeasurable, (hmeas 0).aemeasurable, (hlaw i).trans (hlaw 0).symm⟩
  have hL2 : MemLp (K 0) 2 μ := by
    have h : MemLp id 2 (μ.map (K 0)) := by
      rw [hlaw 0]
      first
      | exact memLp_id_gaussianReal' 2 ENNReal.ofNat_ne_top
      | exact_mod_cast memLp_id_gaussianReal 2
    exact h.comp_of_map (hmeas 0).aemeasurable
  -- move the two moments to `𝒩(0, 1)`
  have hm1 : ∫ ω, |K 0 ω| ∂μ = ∫ x, |x| ∂(gaussianReal 0 1) := by
    rw [← hlaw 0, integral_map (hmeas 0).aemeasurable continuous_abs.aestronglyMeasurable]
  have hm2 : ∫ ω, K 0 ω ^ 2 ∂μ = ∫ x, x ^ 2 ∂(gaussianReal 0 1) := by
    rw [← hlaw 0, integral_map (hmeas 0).aemeasurable (continuous_pow 2).aestronglyMeasurable]
  have h2 : ∫ x, x ^ 2 ∂(gaussianReal 0 1) = 1 := by
    rw [integral_sq_gaussianReal, NNReal.coe_one]
  have hpos : 0 < ∫ ω, K 0 ω ^ 2 ∂μ := by
    rw [hm2, h2]
    exact one_pos
  -- the limit `E|K₀| / √E[K₀²]` is `√(2/π)`
  have hlim : (∫ ω, |K 0 ω| ∂μ) / Real.sqrt (∫ ω, K 0 ω ^ 2 ∂μ) = Real.sqrt (2 / Real.pi) := by
    have hr := gaussian_measure_moment_ratio 1 one_ne_zero
    rw [h2, div_one] at hr
    rw [hm1, hm2, h2, Real.sqrt_one, div_one, ← hr,
      Real.sqrt_sq (integral_nonneg fun x => abs_nonneg x)]
  have h := (iid_coord_moment_ratio_floor K hL2 hpos hindep hident).1
  rw [hlim] at h
  exact h

end BetaSpec
