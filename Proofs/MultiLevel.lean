import Proofs.SignGeometry
import Proofs.IsotropicLimit

/-!
# Section 7 — multi-level codes and the packed-score identities

The 1-bit code of Section 1 stores `signVec k` and one scale. The codes of this section store a
`b`-bit index per coordinate into a table of levels (Lloyd–Max levels for the learned, centred
transform; a uniform grid for KIVI-style codes), and score queries against the packed codes
without decoding them. Everything here is finite algebra except the Gaussian statements at the
end.

## Main results

* `BetaSpec.ls_scale_minimizes`: for any fixed code vector `c ≠ 0` the least-squares scale is
  `lsScale y c = ⟪y, c⟫ / ‖c‖²`, with error `‖y‖² - ⟪y, c⟫² / ‖c‖²` (the `b`-bit analogue of
  `opt_scale_minimizes` and `residual_energy_formula`; `lsScale_signVec` recovers `optScale`).
* `BetaSpec.lloyd_max_conditions`: on finite data, the centroid condition makes the error
  orthogonal to the code, `Σⱼ (xⱼ - Q xⱼ) Q xⱼ = 0`, hence `Σ (x - Q x)² = Σ x² - Σ (Q x)²`.
* `BetaSpec.uniform_quant_half_step`: the uniform round trip `lo + Δ · round ((x - lo) / Δ)` errs
  by at most `Δ / 2`, and `round` maps `[0, N]` into `{0, …, N}`.
* `BetaSpec.packed_score_lut_identity`: summing one table look-up per group of `g` codes gives the
  inner product with the dequantised key; `BetaSpec.packed_sign_lut_identity` is the byte-table
  case of the sign code (`g = 8`, bit `1 ↦ +1`, bit `i` of byte `j` is coordinate `8j + i`).
* `BetaSpec.fused_logit_identity`: `⟪q, Rᵀ(α s + B c) + m⟫ = α ⟪R q, s⟫ + ⟪Bᵀ R q, c⟫ + ⟪q, m⟫`.
* `BetaSpec.online_softmax_merge`: partial softmax sums of disjoint blocks, each with its own
  shift, merge exactly; the ratio `N / Z` does not depend on the shift
  (`softmax_weighted_sum_eq_ratio` identifies it with softmax attention).
* `BetaSpec.mse_code_logit_shrinkage`: under the centroid condition and `E X² = 1`,
  `E[X · Q X] = 1 - D` with `D = E (X - Q X)²`; `1 - D` is the least-squares slope of `Q X` on
  `X`, and the code rescaled by `1 / (1 - D)` has slope `1`.

## Stated, not proved (they carry `sorry`)

* `BetaSpec.lloyd_max_isotropic_floor`: the Lloyd–Max code of `𝒩(0, 1)`: `D = 1 - E (Q X)²`,
  `cos² = 1 - D`, and two levels `±√(2/π)`. The two energy identities are derived from the proven
  `centroid_energy_identities`; what is missing is the square-integrability / summation over the
  levels and the two-level fixed point.
* `BetaSpec.qjl_unbiased`: `E[sgn ⟪S, k⟫ ⟪S, q⟫] = √(2/π) ⟪q, k⟫ / ‖k‖` for a standard Gaussian
  `S`, hence the QJL estimator is unbiased.

## Conventions

As in `Proofs/Basic.lean`: `sgn 0 = +1`, division by zero is `0`. Levels are indexed by `Fin L`;
for the sign code, index `1` is the level `+1` (`signBit x = 1 ↔ 0 ≤ x`). Coordinate `g·j + i` is
position `i` of group `j` (`groupCoord`, little-endian within a byte when `g = 8`).
-/

noncomputable section

open scoped Matrix
open MeasureTheory
open ProbabilityTheory (gaussianReal)

namespace BetaSpec

variable {d : ℕ}

/-! ### The least-squares scale of a fixed code vector -/

/-- The least-squares scale of the code vector `c` for the target `y`: `⟪y, c⟫ / ‖c‖²`. -/
def lsScale (y c : Fin d → ℝ) : ℝ := dot y c / sqnorm c

/-- `‖y - a • c‖² = ‖y‖² - 2a⟪y, c⟫ + a²‖c‖²`. -/
lemma sqnorm_sub_smul (y c : Fin d → ℝ) (a : ℝ) :
    sqnorm (y - a • c) = sqnorm y - 2 * a * dot y c + a ^ 2 * sqnorm c := by
  rw [sqnorm_sub, dot_smul_right, sqnorm_smul]
  ring

/-- For the sign code the least-squares scale is `optScale k = ‖k‖₁ / d`. -/
lemma lsScale_signVec (k : Fin d → ℝ) : lsScale k (signVec k) = optScale k := by
  unfold lsScale optScale
  rw [dot_signVec, sqnorm_signVec]

/-- The least-squares scale of any fixed code vector `c ≠ 0`: `lsScale y c = ⟪y, c⟫ / ‖c‖²`
minimises `‖y - a • c‖²` over all `a`, and the error it leaves is `‖y‖² - ⟪y, c⟫² / ‖c‖²`. -/
theorem ls_scale_minimizes (y c : Fin d → ℝ) (hc : c ≠ 0) :
    (∀ a : ℝ, sqnorm (y - lsScale y c • c) ≤ sqnorm (y - a • c)) ∧
      sqnorm (y - lsScale y c • c) = sqnorm y - dot y c ^ 2 / sqnorm c := by
  have hS : sqnorm c ≠ 0 := (sqnorm_pos hc).ne'
  have e : lsScale y c * sqnorm c = dot y c := div_mul_cancel₀ (dot y c) hS
  have hmin : sqnorm (y - lsScale y c • c) = sqnorm y - dot y c ^ 2 / sqnorm c := by
    have e' : dot y c / sqnorm c * sqnorm c = dot y c := div_mul_cancel₀ (dot y c) hS
    rw [sqnorm_sub_smul]
    unfold lsScale
    linear_combination (dot y c / sqnorm c) * e'
  refine ⟨fun a => ?_, hmin⟩
  have key : sqnorm (y - a • c) =
      sqnorm (y - lsScale y c • c) + sqnorm c * (a - lsScale y c) ^ 2 := by
    rw [sqnorm_sub_smul, sqnorm_sub_smul]
    linear_combination (2 * a - 2 * lsScale y c) * e
  rw [key]
  nlinarith [mul_nonneg (sqnorm_nonneg c) (sq_nonneg (a - lsScale y c))]

/-! ### Lloyd–Max conditions on finite data -/

/-- Under the centroid condition the code is orthogonal to its error:
`Σⱼ (xⱼ - Q xⱼ) · Q xⱼ = 0`. Regroup the sum by the value `v` of the code: on the cell
`Q xⱼ = v` the summand is `(xⱼ - v) · v`, and the cell sums `Σ (xⱼ - v)` vanish. -/
lemma sum_err_mul_code_eq_zero {ι : Type*} (s : Finset ι) (x : ι → ℝ) (Q : ℝ → ℝ)
    (hcent : ∀ v : ℝ, ∑ j ∈ s.filter (fun j => Q (x j) = v), (x j - v) = 0) :
    ∑ j ∈ s, (x j - Q (x j)) * Q (x j) = 0 := by
  have hcell : ∀ v : ℝ,
      ∑ j ∈ s.filter (fun j => Q (x j) = v), (x j - Q (x j)) * Q (x j) = 0 := fun v => by
    calc ∑ j ∈ s.filter (fun j => Q (x j) = v), (x j - Q (x j)) * Q (x j)
        = ∑ j ∈ s.filter (fun j => Q (x j) = v), (x j - v) * v :=
          Finset.sum_congr rfl fun j hj => by rw [(Finset.mem_filter.mp hj).2]
      _ = (∑ j ∈ s.filter (fun j => Q (x j) = v), (x j - v)) * v := by rw [Finset.sum_mul]
      _ = 0 := by rw [hcent v, zero_mul]
  calc ∑ j ∈ s, (x j - Q (x j)) * Q (x j)
      = ∑ v ∈ s.image (fun j => Q (x j)),
          ∑ j ∈ s.filter (fun j => Q (x j) = v), (x j - Q (x j)) * Q (x j) :=
        (Finset.sum_fiberwise_of_maps_to (s := s) (t := s.image fun j => Q (x j))
          (g := fun j => Q (x j)) (fun j hj => Finset.mem_image_of_mem (fun j => Q (x j)) hj)
          (fun j => (x j - Q (x j)) * Q (x j))).symm
    _ = 0 := Finset.sum_eq_zero fun v _ => hcell v

/-- Lloyd–Max, finite form. If every level `v` of the quantizer `Q` is the mean of the data in
its cell (centroid condition: `Σ_{Q xⱼ = v} (xⱼ - v) = 0`), then the error is orthogonal to the
code, `Σⱼ (xⱼ - Q xⱼ) · Q xⱼ = 0`, and the energy splits:
`Σⱼ (xⱼ - Q xⱼ)² = Σⱼ xⱼ² - Σⱼ (Q xⱼ)²`. -/
theorem lloyd_max_conditions {ι : Type*} (s : Finset ι) (x : ι → ℝ) (Q : ℝ → ℝ)
    (hcent : ∀ v : ℝ, ∑ j ∈ s.filter (fun j => Q (x j) = v), (x j - v) = 0) :
    ∑ j ∈ s, (x j - Q (x j)) * Q (x j) = 0 ∧
      ∑ j ∈ s, (x j - Q (x j)) ^ 2 = ∑ j ∈ s, x j ^ 2 - ∑ j ∈ s, Q (x j) ^ 2 := by
  have h0 := sum_err_mul_code_eq_zero s x Q hcent
  refine ⟨h0, ?_⟩
  have h : ∀ j ∈ s, (x j - Q (x j)) ^ 2 =
      (x j ^ 2 - Q (x j) ^ 2) - 2 * ((x j - Q (x j)) * Q (x j)) := fun j _ => by ring
  rw [Finset.sum_congr rfl h, Finset.sum_sub_distrib, Finset.sum_sub_distrib, ← Finset.mul_sum,
    h0, mul_zero, sub_zero]

/-! ### The uniform grid -/

/-- `round` sends `[0, N]` into `{0, …, N}`: `round t ∈ [t - 1/2, t + 1/2]`. -/
lemma round_mem_Icc_of_mem_Icc {t : ℝ} {N : ℕ} (h0 : 0 ≤ t) (hN : t ≤ N) :
    0 ≤ round t ∧ round t ≤ (N : ℤ) := by
  have h := abs_le.mp (abs_sub_round t)
  have hlo : ((-1 : ℤ) : ℝ) < ((round t : ℤ) : ℝ) := by
    push_cast
    linarith [h.2]
  have hhi : ((round t : ℤ) : ℝ) < (((N : ℤ) + 1 : ℤ) : ℝ) := by
    push_cast
    linarith [h.1]
  have hlo' : (-1 : ℤ) < round t := by exact_mod_cast hlo
  have hhi' : round t < (N : ℤ) + 1 := by exact_mod_cast hhi
  exact ⟨by omega, by omega⟩

/-- The uniform round trip errs by at most half a step: for `Δ > 0`,
`|x - (lo + Δ · round ((x - lo) / Δ))| ≤ Δ / 2`; and the index stays in range: `0 ≤ t ≤ N`
gives `0 ≤ round t ≤ N`. (KIVI's asymmetric `b`-bit grid: `lo = min`, `Δ = (max - min)/(2^b - 1)`,
`N = 2^b - 1`; the same bound covers the int8/int4 coefficients.) -/
theorem uniform_quant_half_step (lo Δ x : ℝ) (hΔ : 0 < Δ) :
    |x - (lo + Δ * (round ((x - lo) / Δ) : ℝ))| ≤ Δ / 2 ∧
      ∀ (t : ℝ) (N : ℕ), 0 ≤ t → t ≤ N → 0 ≤ round t ∧ round t ≤ (N : ℤ) := by
  refine ⟨?_, fun t N h0 hN => round_mem_Icc_of_mem_Icc h0 hN⟩
  have e : (x - lo) / Δ * Δ = x - lo := div_mul_cancel₀ (x - lo) hΔ.ne'
  have hsplit : x - (lo + Δ * (round ((x - lo) / Δ) : ℝ)) =
      Δ * ((x - lo) / Δ - (round ((x - lo) / Δ) : ℝ)) := by
    linear_combination (-1 : ℝ) * e
  rw [hsplit, abs_mul, abs_of_pos hΔ]
  calc Δ * |(x - lo) / Δ - (round ((x - lo) / Δ) : ℝ)| ≤ Δ * (1 / 2) :=
        mul_le_mul_of_nonneg_left (abs_sub_round ((x - lo) / Δ)) hΔ.le
    _ = Δ / 2 := by ring

/-! ### Scoring packed codes with look-up tables -/

/-- Coordinate `g·j + i` of a vector split into `n` groups of `g`: position `i` of group `j`. -/
def groupCoord {n g : ℕ} (j : Fin n) (i : Fin g) : Fin (n * g) := finProdFinEquiv (j, i)

/-- The coordinate convention: `groupCoord j i = g·j + i`. -/
lemma groupCoord_val {n g : ℕ} (j : Fin n) (i : Fin g) : (groupCoord j i : ℕ) = g * j + i := by
  first
  | exact Nat.add_comm (i : ℕ) (g * (j : ℕ))
  | simp [groupCoord, Nat.add_comm]
  | omega

/-- The score table of group `j` for the query `q` and the levels `ℓ`: for a pattern `β` of `g`
level indices, `lutTable q ℓ j β = Σ_{i<g} q_{g·j+i} · ℓ (β i)`. It depends on the query only,
so it is built once per query and read once per stored group. -/
def lutTable {n g L : ℕ} (q : Fin (n * g) → ℝ) (ℓ : Fin L → ℝ) (j : Fin n)
    (β : Fin g → Fin L) : ℝ :=
  ∑ i, q (groupCoord j i) * ℓ (β i)

/-- Packed scoring: with codes `idx : Fin (n·g) → Fin L` stored in `n` groups of `g`, one table
look-up per group, at the group's stored pattern, sums to the inner product of the query with the
dequantised key: `Σ_j T_j (idx restricted to group j) = ⟪q, ℓ ∘ idx⟫`. -/
theorem packed_score_lut_identity {n g L : ℕ} (q : Fin (n * g) → ℝ) (ℓ : Fin L → ℝ)
    (idx : Fin (n * g) → Fin L) :
    ∑ j : Fin n, lutTable q ℓ j (fun i => idx (groupCoord j i)) = dot q (fun t => ℓ (idx t)) := by
  show ∑ j : Fin n, ∑ i : Fin g, q (finProdFinEquiv (j, i)) * ℓ (idx (finProdFinEquiv (j, i))) =
    ∑ t, q t * ℓ (idx t)
  calc ∑ j : Fin n, ∑ i : Fin g, q (finProdFinEquiv (j, i)) * ℓ (idx (finProdFinEquiv (j, i)))
      = ∑ p : Fin n × Fin g, q (finProdFinEquiv p) * ℓ (idx (finProdFinEquiv p)) :=
        (Fintype.sum_prod_type (f := fun p : Fin n × Fin g =>
          q (finProdFinEquiv p) * ℓ (idx (finProdFinEquiv p)))).symm
    _ = ∑ t, q t * ℓ (idx t) := Equiv.sum_comp finProdFinEquiv (fun t => q t * ℓ (idx t))

/-- The two levels of the sign code: bit `0 ↦ -1`, bit `1 ↦ +1`. -/
def signLevels : Fin 2 → ℝ := ![-1, 1]

/-- The stored bit of a coordinate: `1` when `0 ≤ x` (the code `+1`, so `sgn 0 = +1`), else `0`. -/
def signBit (x : ℝ) : Fin 2 := if 0 ≤ x then 1 else 0

/-- Decoding a stored bit gives the sign code: `signLevels (signBit x) = sgn x`. -/
lemma signLevels_signBit (x : ℝ) : signLevels (signBit x) = sgn x := by
  unfold signBit sgn
  split_ifs
  · first
    | rfl
    | simp [signLevels]
  · first
    | rfl
    | simp [signLevels]

/-- Packed sign scoring with byte tables (`g = 8`): bit `i` of byte `j` is the sign bit of
coordinate `8j + i` (`1 ↔ +1`), the table of byte `j` is `T_j β = Σ_{i<8} q_{8j+i} (2βᵢ - 1)`, and
one look-up per byte sums to `⟪q, signVec k⟫`. -/
theorem packed_sign_lut_identity {n : ℕ} (q k : Fin (n * 8) → ℝ) :
    ∑ j : Fin n, lutTable q signLevels j (fun i => signBit (k (groupCoord j i))) =
      dot q (signVec k) := by
  calc ∑ j : Fin n, lutTable q signLevels j (fun i => signBit (k (groupCoord j i)))
      = dot q (fun t => signLevels (signBit (k t))) :=
        packed_score_lut_identity q signLevels (fun t => signBit (k t))
    _ = dot q (signVec k) := by
        unfold dot signVec
        exact Finset.sum_congr rfl fun t _ => by
          show q t * signLevels (signBit (k t)) = q t * sgn (k t)
          rw [signLevels_signBit]

/-! ### The fused logit -/

/-- Moving a matrix across the dot product: `⟪u, A w⟫ = ⟪Aᵀ u, w⟫`. -/
lemma dot_mulVec {m n : Type*} [Fintype m] [Fintype n] (A : Matrix m n ℝ) (u : m → ℝ)
    (w : n → ℝ) : dot u (A *ᵥ w) = dot (Aᵀ *ᵥ u) w := by
  show u ⬝ᵥ (A *ᵥ w) = (Aᵀ *ᵥ u) ⬝ᵥ w
  rw [Matrix.dotProduct_mulVec, Matrix.mulVec_transpose]

/-- Moving a transposed matrix across the dot product: `⟪u, Aᵀ w⟫ = ⟪A u, w⟫`. -/
lemma dot_transpose_mulVec {m n : Type*} [Fintype m] [Fintype n] (A : Matrix m n ℝ)
    (u : n → ℝ) (w : m → ℝ) : dot u (Aᵀ *ᵥ w) = dot (A *ᵥ u) w := by
  show u ⬝ᵥ (Aᵀ *ᵥ w) = (A *ᵥ u) ⬝ᵥ w
  rw [Matrix.dotProduct_mulVec, Matrix.vecMul_transpose]

/-- The fused logit: for the dequantised key `k̂ = Rᵀ (α s + B c) + m` (code `s`, scale `α`,
rank-`r` coefficients `c` on the basis `B`, rotation `R`, mean `m`),
`⟪q, k̂⟫ = α ⟪R q, s⟫ + ⟪Bᵀ R q, c⟫ + ⟪q, m⟫`. The query is rotated and projected once; no
orthogonality is needed. The last term is the same for every key, so softmax ignores it
(`softmax_shift`). -/
theorem fused_logit_identity {r : ℕ} (q m s : Fin d → ℝ) (R : Matrix (Fin d) (Fin d) ℝ)
    (B : Matrix (Fin d) (Fin r) ℝ) (c : Fin r → ℝ) (α : ℝ) :
    dot q (Rᵀ *ᵥ (α • s + B *ᵥ c) + m) =
      α * dot (R *ᵥ q) s + dot (Bᵀ *ᵥ (R *ᵥ q)) c + dot q m := by
  rw [dot_add, dot_transpose_mulVec, dot_add, dot_smul_right, dot_mulVec]

/-! ### Merging partial softmax sums -/

section OnlineSoftmax

variable {ι : Type*}

/-- The partial softmax denominator of the block `S` with shift `μ`:
`softmaxDenom x S μ = Σ_{i∈S} exp (xᵢ - μ)`. -/
def softmaxDenom (x : ι → ℝ) (S : Finset ι) (μ : ℝ) : ℝ := ∑ i ∈ S, Real.exp (x i - μ)

/-- The partial softmax numerator of the block `S` with shift `μ`:
`softmaxNumer x v S μ = Σ_{i∈S} exp (xᵢ - μ) · vᵢ`. -/
def softmaxNumer (x v : ι → ℝ) (S : Finset ι) (μ : ℝ) : ℝ := ∑ i ∈ S, Real.exp (x i - μ) * v i

/-- Changing the shift: `exp (a - μ) = exp (μ' - μ) · exp (a - μ')`. -/
lemma exp_sub_eq_exp_mul (a μ μ' : ℝ) :
    Real.exp (a - μ) = Real.exp (μ' - μ) * Real.exp (a - μ') := by
  rw [← Real.exp_add]
  congr 1
  ring

/-- Re-shifting a partial denominator: `Z S μ = exp (μ' - μ) · Z S μ'`. -/
lemma softmaxDenom_shift (x : ι → ℝ) (S : Finset ι) (μ μ' : ℝ) :
    softmaxDenom x S μ = Real.exp (μ' - μ) * softmaxDenom x S μ' := by
  unfold softmaxDenom
  rw [Finset.mul_sum]
  exact Finset.sum_congr rfl fun i _ => exp_sub_eq_exp_mul (x i) μ μ'

/-- Re-shifting a partial numerator: `N S μ = exp (μ' - μ) · N S μ'`. -/
lemma softmaxNumer_shift (x v : ι → ℝ) (S : Finset ι) (μ μ' : ℝ) :
    softmaxNumer x v S μ = Real.exp (μ' - μ) * softmaxNumer x v S μ' := by
  unfold softmaxNumer
  rw [Finset.mul_sum]
  refine Finset.sum_congr rfl fun i _ => ?_
  rw [exp_sub_eq_exp_mul (x i) μ μ']
  ring

/-- The denominator is additive over disjoint blocks. -/
lemma softmaxDenom_union [DecidableEq ι] (x : ι → ℝ) {A B : Finset ι} (hAB : Disjoint A B)
    (μ : ℝ) : softmaxDenom x (A ∪ B) μ = softmaxDenom x A μ + softmaxDenom x B μ := by
  unfold softmaxDenom
  exact Finset.sum_union hAB

/-- The numerator is additive over disjoint blocks. -/
lemma softmaxNumer_union [DecidableEq ι] (x v : ι → ℝ) {A B : Finset ι} (hAB : Disjoint A B)
    (μ : ℝ) : softmaxNumer x v (A ∪ B) μ = softmaxNumer x v A μ + softmaxNumer x v B μ := by
  unfold softmaxNumer
  exact Finset.sum_union hAB

/-- The ratio `N S μ / Z S μ` does not depend on the shift. -/
lemma softmax_ratio_shift (x v : ι → ℝ) (S : Finset ι) (μ₁ μ₂ : ℝ) :
    softmaxNumer x v S μ₁ / softmaxDenom x S μ₁ =
      softmaxNumer x v S μ₂ / softmaxDenom x S μ₂ := by
  rw [softmaxNumer_shift x v S μ₁ μ₂, softmaxDenom_shift x S μ₁ μ₂]
  exact mul_div_mul_left _ _ (Real.exp_pos _).ne'

/-- Online softmax: the partial sums of two disjoint blocks `A`, `B`, each kept with its own
shift (its running maximum `μA`, `μB`), merge exactly into the sums for `A ∪ B` with any shift
`μ`: `Z (A ∪ B) μ = exp (μA - μ) Z A μA + exp (μB - μ) Z B μB`, the same for `N`; and the
attention output `N S μ / Z S μ` does not depend on `μ`. -/
theorem online_softmax_merge [DecidableEq ι] (x v : ι → ℝ) (A B : Finset ι)
    (hAB : Disjoint A B) (μ μA μB : ℝ) :
    softmaxDenom x (A ∪ B) μ =
        Real.exp (μA - μ) * softmaxDenom x A μA + Real.exp (μB - μ) * softmaxDenom x B μB ∧
      softmaxNumer x v (A ∪ B) μ =
        Real.exp (μA - μ) * softmaxNumer x v A μA + Real.exp (μB - μ) * softmaxNumer x v B μB ∧
      ∀ (S : Finset ι) (μ₁ μ₂ : ℝ),
        softmaxNumer x v S μ₁ / softmaxDenom x S μ₁ =
          softmaxNumer x v S μ₂ / softmaxDenom x S μ₂ := by
  refine ⟨?_, ?_, fun S μ₁ μ₂ => softmax_ratio_shift x v S μ₁ μ₂⟩
  · rw [softmaxDenom_union x hAB, softmaxDenom_shift x A μ μA, softmaxDenom_shift x B μ μB]
  · rw [softmaxNumer_union x v hAB, softmaxNumer_shift x v A μ μA,
      softmaxNumer_shift x v B μ μB]

/-- Over all positions the ratio is softmax attention: `Σᵢ softmax x i · vᵢ = N univ μ / Z univ μ`
for every shift `μ`. -/
theorem softmax_weighted_sum_eq_ratio [Fintype ι] (x v : ι → ℝ) (μ : ℝ) :
    ∑ i, softmax x i * v i = softmaxNumer x v Finset.univ μ / softmaxDenom x Finset.univ μ := by
  rw [softmax_ratio_shift x v Finset.univ μ 0]
  unfold softmax softmaxNumer softmaxDenom
  try simp only [sub_zero]
  rw [Finset.sum_div]
  exact Finset.sum_congr rfl fun i _ => by rw [div_mul_eq_mul_div]

end OnlineSoftmax

/-! ### Mean-squared-error codes of one coordinate -/

/-- The mean squared error `D = E (X - Q X)²` of the scalar code `Q` for a coordinate `X ∼ P`. -/
def mseDistortion (P : Measure ℝ) (Q : ℝ → ℝ) : ℝ := ∫ x, (x - Q x) ^ 2 ∂P

/-- `E (a X + b Q X)² = a² E X² + 2ab E[X · Q X] + b² E (Q X)²` for square-integrable `X`, `Q X`. -/
lemma integral_sq_lin_comb {P : Measure ℝ} {Q : ℝ → ℝ}
    (h2 : Integrable (fun x => x ^ 2) P) (hxQ : Integrable (fun x => x * Q x) P)
    (hQ2 : Integrable (fun x => Q x ^ 2) P) (a b : ℝ) :
    ∫ x, (a * x + b * Q x) ^ 2 ∂P =
      a ^ 2 * ∫ x, x ^ 2 ∂P + 2 * a * b * ∫ x, x * Q x ∂P + b ^ 2 * ∫ x, Q x ^ 2 ∂P := by
  have e : ∫ x, (a * x + b * Q x) ^ 2 ∂P =
      ∫ x, (a ^ 2 * x ^ 2 + 2 * a * b * (x * Q x)) + b ^ 2 * Q x ^ 2 ∂P :=
    congrArg (integral P) (funext fun x => by ring)
  have hf : Integrable (fun x => a ^ 2 * x ^ 2 + 2 * a * b * (x * Q x)) P := by
    first
    | exact (h2.const_mul (a ^ 2)).add (hxQ.const_mul (2 * a * b))
    | fun_prop
  have h1 : ∫ x, (a ^ 2 * x ^ 2 + 2 * a * b * (x * Q x)) + b ^ 2 * Q x ^ 2 ∂P =
      ∫ x, (a ^ 2 * x ^ 2 + 2 * a * b * (x * Q x)) ∂P + ∫ x, b ^ 2 * Q x ^ 2 ∂P :=
    integral_add hf (hQ2.const_mul (b ^ 2))
  have h3 : ∫ x, (a ^ 2 * x ^ 2 + 2 * a * b * (x * Q x)) ∂P =
      ∫ x, a ^ 2 * x ^ 2 ∂P + ∫ x, 2 * a * b * (x * Q x) ∂P :=
    integral_add (h2.const_mul (a ^ 2)) (hxQ.const_mul (2 * a * b))
  rw [e, h1, h3, integral_const_mul, integral_const_mul, integral_const_mul]

/-- `D = E X² - 2 E[X · Q X] + E (Q X)²`. -/
lemma mseDistortion_eq {P : Measure ℝ} {Q : ℝ → ℝ}
    (h2 : Integrable (fun x => x ^ 2) P) (hxQ : Integrable (fun x => x * Q x) P)
    (hQ2 : Integrable (fun x => Q x ^ 2) P) :
    mseDistortion P Q = ∫ x, x ^ 2 ∂P - 2 * ∫ x, x * Q x ∂P + ∫ x, Q x ^ 2 ∂P := by
  have e : mseDistortion P Q = ∫ x, (1 * x + (-1) * Q x) ^ 2 ∂P :=
    congrArg (integral P) (funext fun x => by ring)
  rw [e, integral_sq_lin_comb h2 hxQ hQ2]
  ring

/-- The energy identities of a centroid code: if `E X² = 1` and `E[X · Q X] = E (Q X)²`, then
`D = 1 - E (Q X)²` and `cos² = E[X · Q X]² / (E X² · E (Q X)²) = 1 - D`. -/
lemma centroid_energy_identities {P : Measure ℝ} {Q : ℝ → ℝ}
    (h2 : Integrable (fun x => x ^ 2) P) (hxQ : Integrable (fun x => x * Q x) P)
    (hQ2 : Integrable (fun x => Q x ^ 2) P) (hvar : ∫ x, x ^ 2 ∂P = 1)
    (hcent : ∫ x, x * Q x ∂P = ∫ x, Q x ^ 2 ∂P) :
    mseDistortion P Q = 1 - ∫ x, Q x ^ 2 ∂P ∧
      (∫ x, x * Q x ∂P) ^ 2 / ((∫ x, x ^ 2 ∂P) * ∫ x, Q x ^ 2 ∂P) = 1 - mseDistortion P Q := by
  have hD := mseDistortion_eq h2 hxQ hQ2
  have h1 : mseDistortion P Q = 1 - ∫ x, Q x ^ 2 ∂P := by linarith
  refine ⟨h1, ?_⟩
  have h1' : 1 - mseDistortion P Q = ∫ x, Q x ^ 2 ∂P := by linarith
  rw [hvar, hcent, one_mul, h1']
  by_cases h0 : ∫ x, Q x ^ 2 ∂P = 0
  · rw [h0, div_zero]
  · rw [div_eq_iff h0]
    ring

/-- MSE codes shrink logits. For a coordinate `X ∼ P` with `E X² = 1` and a code `Q` satisfying
the centroid condition in the form `E[X · Q X] = E (Q X)²`, with `D = E (X - Q X)²`:
(a) `E[X · Q X] = 1 - D`; (b) `1 - D` is the least-squares slope of `Q X` on `X`; (c) when
`D ≠ 1`, the rescaled code `Q X / (1 - D)` has `E[X · Q X / (1 - D)] = 1 = E X²`. For a query `q`
and a key with i.i.d. centred coordinates of this law, (a) gives
`E[⟪q, Q k⟫ ⟪q, k⟫] = (1 - D) E[⟪q, k⟫²]`: the code scores `(1 - D)⟪q, k⟫` in the
regression sense, and the rescaling removes that bias (at the price of variance). -/
theorem mse_code_logit_shrinkage (P : Measure ℝ) (Q : ℝ → ℝ)
    (h2 : Integrable (fun x => x ^ 2) P) (hxQ : Integrable (fun x => x * Q x) P)
    (hQ2 : Integrable (fun x => Q x ^ 2) P) (hvar : ∫ x, x ^ 2 ∂P = 1)
    (hcent : ∫ x, x * Q x ∂P = ∫ x, Q x ^ 2 ∂P) :
    ∫ x, x * Q x ∂P = 1 - mseDistortion P Q ∧
      (∀ a : ℝ, ∫ x, (Q x - (1 - mseDistortion P Q) * x) ^ 2 ∂P ≤ ∫ x, (Q x - a * x) ^ 2 ∂P) ∧
      (mseDistortion P Q ≠ 1 → ∫ x, x * (Q x / (1 - mseDistortion P Q)) ∂P = 1) := by
  have hD := mseDistortion_eq h2 hxQ hQ2
  have ha : ∫ x, x * Q x ∂P = 1 - mseDistortion P Q := by linarith
  have hR : ∀ c : ℝ, ∫ x, (Q x - c * x) ^ 2 ∂P =
      c ^ 2 * ∫ x, x ^ 2 ∂P - 2 * c * ∫ x, x * Q x ∂P + ∫ x, Q x ^ 2 ∂P := by
    intro c
    have e : ∫ x, (Q x - c * x) ^ 2 ∂P = ∫ x, (-c * x + 1 * Q x) ^ 2 ∂P :=
      congrArg (integral P) (funext fun x => by ring)
    rw [e, integral_sq_lin_comb h2 hxQ hQ2]
    ring
  refine ⟨ha, fun a => ?_, fun hD1 => ?_⟩
  · rw [hR, hR, hvar, ha]
    nlinarith [sq_nonneg (a - (1 - mseDistortion P Q))]
  · have hne : 1 - mseDistortion P Q ≠ 0 := fun h => hD1 (by linarith)
    have e : ∫ x, x * (Q x / (1 - mseDistortion P Q)) ∂P =
        ∫ x, x * Q x / (1 - mseDistortion P Q) ∂P :=
      congrArg (integral P) (funext fun x => by ring)
    rw [e, integral_div, ha, div_self hne]

/-! ### Gaussian statements (stated) -/

/-- `Q` is a Lloyd–Max quantizer for the law `P` with the strictly increasing levels `c`: it is
measurable, takes only the values `c i`, sends every point to a nearest level (nearest-neighbour
condition), and every level is the mean of its cell (centroid condition, in expectation:
`E[(X - cᵢ) 1{Q X = cᵢ}] = 0`). -/
structure IsLloydMax (P : Measure ℝ) {n : ℕ} (c : Fin n → ℝ) (Q : ℝ → ℝ) : Prop where
  strictMono : StrictMono c
  measurable : Measurable Q
  mem_levels : ∀ x, ∃ i, Q x = c i
  nearest : ∀ x i, |x - Q x| ≤ |x - c i|
  centroid : ∀ i, ∫ x, Set.indicator {y | Q y = c i} (fun y => y - c i) x ∂P = 0

/-- STATED. The Lloyd–Max code of `X ∼ 𝒩(0, 1)` with levels `c`: `D = E (X - Q X)² = 1 - E (Q X)²`
and the per-coordinate `cos² = E[X · Q X]² / (E X² · E (Q X)²) = 1 - D`; with two levels the
code is `±√(2/π)` and `1 - D₁ = 2/π`, the isotropic floor of Section 2.

The two energy identities are derived below from `centroid_energy_identities`. What remains
open (`sorry`): (i) `x` and `Q x` are square-integrable under `𝒩(0, 1)` and the per-level
centroid conditions sum to `E[X · Q X] = E (Q X)²`; (ii) the two-level fixed point is unique. -/
theorem lloyd_max_isotropic_floor {n : ℕ} (c : Fin n → ℝ) (Q : ℝ → ℝ)
    (hQ : IsLloydMax (gaussianReal 0 1) c Q) :
    mseDistortion (gaussianReal 0 1) Q = 1 - ∫ x, Q x ^ 2 ∂(gaussianReal 0 1) ∧
      (∫ x, x * Q x ∂(gaussianReal 0 1)) ^ 2 /
          ((∫ x, x ^ 2 ∂(gaussianReal 0 1)) * ∫ x, Q x ^ 2 ∂(gaussianReal 0 1)) =
        1 - mseDistortion (gaussianReal 0 1) Q ∧
      ∀ (c₂ : Fin 2 → ℝ) (Q₂ : ℝ → ℝ), IsLloydMax (gaussianReal 0 1) c₂ Q₂ →
        c₂ 0 = -Real.sqrt (2 / Real.pi) ∧ c₂ 1 = Real.sqrt (2 / Real.pi) ∧
          mseDistortion (gaussianReal 0 1) Q₂ = 1 - 2 / Real.pi := by
  obtain ⟨h2, hxQ, hQ2, hcent⟩ : Integrable (fun x : ℝ => x ^ 2) (gaussianReal 0 1) ∧
      Integrable (fun x => x * Q x) (gaussianReal 0 1) ∧
      Integrable (fun x => Q x ^ 2) (gaussianReal 0 1) ∧
      ∫ x, x * Q x ∂(gaussianReal 0 1) = ∫ x, Q x ^ 2 ∂(gaussianReal 0 1) := sorry
  have hvar : ∫ x, x ^ 2 ∂(gaussianReal 0 1) = 1 := by
    rw [integral_sq_gaussianReal, NNReal.coe_one]
  obtain ⟨hD, hcos⟩ := centroid_energy_identities h2 hxQ hQ2 hvar hcent
  exact ⟨hD, hcos, sorry⟩

/-- STATED. QJL is unbiased. For `S` a standard Gaussian vector in `ℝ^d` and `k ≠ 0`,
`E[sgn ⟪S, k⟫ · ⟪S, q⟫] = √(2/π) · ⟪q, k⟫ / ‖k‖`; hence for `m` independent copies
`S₀, …, S_{m-1}` the estimator `√(π/2)/m · ‖k‖ · Σᵢ sgn ⟪Sᵢ, k⟫ ⟪Sᵢ, q⟫` has mean `⟪q, k⟫`.
(`sgn 0 = +1` is irrelevant here: `⟪S, k⟫ = 0` has probability `0`.) -/
theorem qjl_unbiased (q k : Fin d → ℝ) (hk : k ≠ 0) :
    ∫ S : Fin d → ℝ, sgn (dot S k) * dot S q ∂(Measure.pi fun _ : Fin d => gaussianReal 0 1) =
        Real.sqrt (2 / Real.pi) * dot q k / l2 k ∧
      ∀ m : ℕ, 0 < m →
        ∫ S : Fin m → Fin d → ℝ, Real.sqrt (Real.pi / 2) / (m : ℝ) * l2 k *
            (∑ i, sgn (dot (S i) k) * dot (S i) q)
          ∂(Measure.pi fun _ : Fin m => Measure.pi fun _ : Fin d => gaussianReal 0 1) =
          dot q k := by
  sorry

end BetaSpec
