import Mathlib

/-!
# Shared definitions for betaspec

The notation of `SPEC.md`, shared by every module of `Proofs/` and mirrored one-to-one by the
Python functions in `impl/`.

A key is a vector `k : Fin d → ℝ`. It is stored as its sign pattern `signVec k ∈ {±1}^d` and one
scale `optScale k = ‖k‖₁ / d`; the quality of that 1-bit code is the cosine
`cosSign k = ‖k‖₁ / (√d ‖k‖₂)` between `k` and its signs, and `betaVec k` is its square.

## Main definitions

* `BetaSpec.sgn`: the 1-bit code of a real, with `sgn 0 = 1` (never `0`).
* `BetaSpec.l1`, `BetaSpec.sqnorm`, `BetaSpec.l2`, `BetaSpec.dot`: `ℓ¹` norm, squared `ℓ²` norm,
  `ℓ²` norm and dot product, as explicit finite sums.
* `BetaSpec.signVec`, `BetaSpec.cosSign`, `BetaSpec.optScale`, `BetaSpec.quant1`,
  `BetaSpec.betaVec`: the sign code, the 1-bit cosine, the least-squares scale, the dequantised
  key `k̂ = optScale k • signVec k`, and per-vector `β = cosSign²`.
* `BetaSpec.ggBeta`: the moment ratio of the generalised Gaussian of exponent `p`.
* `BetaSpec.softmax`: softmax over a finite index type (not in Mathlib).
* `BetaSpec.IsSignVec`, `BetaSpec.perp`: sign-lattice points and the component of `u`
  orthogonal to a sign vector `s` (Section 4).

## Main lemmas

Elementary identities used by every section: `sgn_sq`, `mul_sgn`, `sqnorm_pos`, `l1_pos`,
`sqnorm_le_l1_sq`, `sqnorm_add`, `sqnorm_sub`, `sqnorm_smul`, `dot_comm`, `sqnorm_eq_dotProduct`,
`dotProduct_mulVec_mulVec`, `sqnorm_of_isSignVec`.

## Conventions

Division by zero is `0` (Lean's total convention), so `cosSign 0 = 0` and `optScale` of the
empty vector is `0`; theorems carry `k ≠ 0` or `0 < d` where the statement needs it. The Python
functions follow the same convention at the excluded points.
-/

noncomputable section

open scoped Matrix

namespace BetaSpec

/-- The 1-bit code of a real number: `1` when `0 ≤ x`, else `-1`. Zero maps to `+1`. -/
def sgn (x : ℝ) : ℝ := if 0 ≤ x then 1 else -1

section Norms

variable {ι : Type*} [Fintype ι]

/-- `ℓ¹` norm `Σᵢ |kᵢ|`. -/
def l1 (k : ι → ℝ) : ℝ := ∑ i, |k i|

/-- Squared Euclidean norm `Σᵢ kᵢ²`. -/
def sqnorm (k : ι → ℝ) : ℝ := ∑ i, k i ^ 2

/-- Euclidean norm `√(Σᵢ kᵢ²)`. -/
def l2 (k : ι → ℝ) : ℝ := Real.sqrt (sqnorm k)

/-- Dot product `⟪a, b⟫ = Σᵢ aᵢ bᵢ` (definitionally Mathlib's `a ⬝ᵥ b`). -/
def dot (a b : ι → ℝ) : ℝ := ∑ i, a i * b i

end Norms

variable {d : ℕ}

/-- The sign code of a key, `(sgn k₀, …, sgn k_{d-1}) ∈ {±1}^d`. -/
def signVec (k : Fin d → ℝ) : Fin d → ℝ := fun i => sgn (k i)

/-- The 1-bit cosine `cos θ_k = ‖k‖₁ / (√d · ‖k‖₂)`: the cosine between `k` and `signVec k`. -/
def cosSign (k : Fin d → ℝ) : ℝ := l1 k / (Real.sqrt (d : ℝ) * l2 k)

/-- The least-squares scale of the 1-bit code, `α* = ‖k‖₁ / d`. -/
def optScale (k : Fin d → ℝ) : ℝ := l1 k / (d : ℝ)

/-- The dequantised key `k̂ = optScale k • signVec k`. -/
def quant1 (k : Fin d → ℝ) : Fin d → ℝ := optScale k • signVec k

/-- Per-vector `β = cos² θ_k`, the sample moment ratio `(l1/d)² / (sqnorm/d)` of the coordinates. -/
def betaVec (k : Fin d → ℝ) : ℝ := cosSign k ^ 2

/-- Moment ratio of the generalised Gaussian density `∝ exp(-|x|^p)`:
`ggBeta p = Γ(2/p)² / (Γ(1/p) · Γ(3/p))`. -/
def ggBeta (p : ℝ) : ℝ := Real.Gamma (2 / p) ^ 2 / (Real.Gamma (1 / p) * Real.Gamma (3 / p))

/-- Softmax over a finite index type, `softmax x i = exp xᵢ / Σⱼ exp xⱼ`. -/
def softmax {ι : Type*} [Fintype ι] (x : ι → ℝ) (i : ι) : ℝ :=
  Real.exp (x i) / ∑ j, Real.exp (x j)

/-- `s` is a point of the sign lattice `{±1}^d`. -/
def IsSignVec (s : Fin d → ℝ) : Prop := ∀ i, s i = 1 ∨ s i = -1

/-- The component of `u` orthogonal to the sign vector `s`: `u⊥ = u - (⟪u, s⟫ / d) • s`. -/
def perp (u s : Fin d → ℝ) : Fin d → ℝ := u - (dot u s / (d : ℝ)) • s

/-! ### Elementary facts used throughout -/

/-- The 1-bit code squares to one. -/
lemma sgn_sq (x : ℝ) : sgn x ^ 2 = 1 := by
  unfold sgn
  split_ifs <;> norm_num

/-- A real times its code is its absolute value: `x · sgn x = |x|`. -/
lemma mul_sgn (x : ℝ) : x * sgn x = |x| := by
  unfold sgn
  split_ifs with h
  · rw [mul_one, abs_of_nonneg h]
  · rw [mul_neg_one, abs_of_neg (not_le.mp h)]

/-- Every coordinate of a sign-lattice point squares to one. -/
lemma sq_of_isSignVec {s : Fin d → ℝ} (hs : IsSignVec s) (i : Fin d) : s i ^ 2 = 1 := by
  rcases hs i with h | h <;> rw [h] <;> norm_num

section Generic

variable {ι : Type*} [Fintype ι]

/-- The squared norm is nonnegative. -/
lemma sqnorm_nonneg (k : ι → ℝ) : 0 ≤ sqnorm k :=
  Finset.sum_nonneg fun i _ => sq_nonneg (k i)

/-- The `ℓ¹` norm is nonnegative. -/
lemma l1_nonneg (k : ι → ℝ) : 0 ≤ l1 k :=
  Finset.sum_nonneg fun i _ => abs_nonneg (k i)

/-- A nonzero vector has a nonzero coordinate. -/
lemma exists_coord_ne_zero {k : ι → ℝ} (hk : k ≠ 0) : ∃ i, k i ≠ 0 := by
  by_contra h
  push_neg at h
  exact hk (funext h)

/-- A nonzero vector has positive squared norm. -/
lemma sqnorm_pos {k : ι → ℝ} (hk : k ≠ 0) : 0 < sqnorm k := by
  obtain ⟨i, hi⟩ := exists_coord_ne_zero hk
  have h1 : 0 < k i ^ 2 := lt_of_le_of_ne (sq_nonneg _) (Ne.symm (pow_ne_zero 2 hi))
  exact lt_of_lt_of_le h1
    (Finset.single_le_sum (f := fun j => k j ^ 2) (fun j _ => sq_nonneg (k j))
      (Finset.mem_univ i))

/-- A nonzero vector has positive `ℓ¹` norm. -/
lemma l1_pos {k : ι → ℝ} (hk : k ≠ 0) : 0 < l1 k := by
  obtain ⟨i, hi⟩ := exists_coord_ne_zero hk
  have h1 : 0 < |k i| := abs_pos.mpr hi
  exact lt_of_lt_of_le h1
    (Finset.single_le_sum (f := fun j => |k j|) (fun j _ => abs_nonneg (k j))
      (Finset.mem_univ i))

/-- `‖k‖₂² ≤ ‖k‖₁²`. -/
lemma sqnorm_le_l1_sq (k : ι → ℝ) : sqnorm k ≤ l1 k ^ 2 := by
  have h := Finset.sum_sq_le_sq_sum_of_nonneg (s := Finset.univ) (f := fun i => |k i|)
    (fun i _ => abs_nonneg (k i))
  have h' : ∑ i, k i ^ 2 ≤ (∑ i, |k i|) ^ 2 := by simpa only [sq_abs] using h
  exact h'

/-- The dot product is symmetric. -/
lemma dot_comm (a b : ι → ℝ) : dot a b = dot b a := by
  unfold dot
  exact Finset.sum_congr rfl fun i _ => mul_comm (a i) (b i)

/-- The dot product is additive in its second argument. -/
lemma dot_add (a b c : ι → ℝ) : dot a (b + c) = dot a b + dot a c := by
  unfold dot
  rw [← Finset.sum_add_distrib]
  exact Finset.sum_congr rfl fun i _ => mul_add (a i) (b i) (c i)

/-- Scalars pull out of the first argument of the dot product. -/
lemma dot_smul_left (c : ℝ) (a b : ι → ℝ) : dot (c • a) b = c * dot a b := by
  unfold dot
  rw [Finset.mul_sum]
  refine Finset.sum_congr rfl fun i _ => ?_
  rw [Pi.smul_apply, smul_eq_mul, mul_assoc]

/-- Scalars pull out of the second argument of the dot product. -/
lemma dot_smul_right (c : ℝ) (a b : ι → ℝ) : dot a (c • b) = c * dot a b := by
  rw [dot_comm, dot_smul_left, dot_comm]

/-- `‖a + b‖² = ‖a‖² + 2⟪a, b⟫ + ‖b‖²`. -/
lemma sqnorm_add (a b : ι → ℝ) : sqnorm (a + b) = sqnorm a + 2 * dot a b + sqnorm b := by
  unfold sqnorm dot
  rw [Finset.mul_sum, ← Finset.sum_add_distrib, ← Finset.sum_add_distrib]
  refine Finset.sum_congr rfl fun i _ => ?_
  rw [Pi.add_apply]
  ring

/-- `‖a - b‖² = ‖a‖² - 2⟪a, b⟫ + ‖b‖²`. -/
lemma sqnorm_sub (a b : ι → ℝ) : sqnorm (a - b) = sqnorm a - 2 * dot a b + sqnorm b := by
  unfold sqnorm dot
  rw [Finset.mul_sum, ← Finset.sum_sub_distrib, ← Finset.sum_add_distrib]
  refine Finset.sum_congr rfl fun i _ => ?_
  rw [Pi.sub_apply]
  ring

/-- `‖c • v‖² = c² ‖v‖²`. -/
lemma sqnorm_smul (c : ℝ) (v : ι → ℝ) : sqnorm (c • v) = c ^ 2 * sqnorm v := by
  unfold sqnorm
  rw [Finset.mul_sum]
  refine Finset.sum_congr rfl fun i _ => ?_
  rw [Pi.smul_apply, smul_eq_mul]
  ring

/-- The squared norm is Mathlib's `v ⬝ᵥ v`. -/
lemma sqnorm_eq_dotProduct (v : ι → ℝ) : sqnorm v = v ⬝ᵥ v := by
  unfold sqnorm dotProduct
  exact Finset.sum_congr rfl fun i _ => sq (v i)

/-- `⟪R q, R k⟫ = ⟪(Rᵀ R) q, k⟫`. -/
lemma dotProduct_mulVec_mulVec (R : Matrix ι ι ℝ) (q k : ι → ℝ) :
    (R *ᵥ q) ⬝ᵥ (R *ᵥ k) = ((Rᵀ * R) *ᵥ q) ⬝ᵥ k := by
  rw [Matrix.dotProduct_mulVec, ← Matrix.mulVec_transpose, Matrix.mulVec_mulVec]

end Generic

/-- A nonzero key lives in positive dimension. -/
lemma pos_of_ne_zero {k : Fin d → ℝ} (hk : k ≠ 0) : 0 < d := by
  rcases Nat.eq_zero_or_pos d with h | h
  · subst h
    exact (hk (funext fun i => Fin.elim0 i)).elim
  · exact h

/-- A sign-lattice point has squared norm `d`. -/
lemma sqnorm_of_isSignVec {s : Fin d → ℝ} (hs : IsSignVec s) : sqnorm s = d := by
  unfold sqnorm
  rw [Finset.sum_congr rfl fun i _ => sq_of_isSignVec hs i, Finset.sum_const, Finset.card_univ,
    Fintype.card_fin, nsmul_eq_mul, mul_one]

end BetaSpec
