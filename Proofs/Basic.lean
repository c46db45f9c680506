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

## Conventions

Division by zero is `0` (Lean's total convention), so `cosSign 0 = 0` and `optScale` of the
empty vector is `0`; theorems carry `k ≠ 0` or `0 < d` where the statement needs it. The Python
functions follow the same convention at the excluded points.
-/

noncomputable section

open Finset

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

lemma sgn_sq (x : ℝ) : sgn x ^ 2 = 1 := by
  unfold sgn
  split_ifs <;> norm_num

lemma mul_sgn (x : ℝ) : x * sgn x = |x| := by
  unfold sgn
  split_ifs with h
  · rw [mul_one, abs_of_nonneg h]
  · rw [mul_neg_one, abs_of_neg (not_le.mp h)]

lemma sqnorm_nonneg {ι : Type*} [Fintype ι] (k : ι → ℝ) : 0 ≤ sqnorm k :=
  Finset.sum_nonneg fun i _ => sq_nonneg (k i)

lemma l1_nonneg {ι : Type*} [Fintype ι] (k : ι → ℝ) : 0 ≤ l1 k :=
  Finset.sum_nonneg fun i _ => abs_nonneg (k i)

lemma sqnorm_pos {ι : Type*} [Fintype ι] {k : ι → ℝ} (hk : k ≠ 0) : 0 < sqnorm k := by
  obtain ⟨i, hi⟩ : ∃ i, k i ≠ 0 := by
    by_contra h
    push_neg at h
    exact hk (funext h)
  have h1 : 0 < k i ^ 2 := by positivity
  exact lt_of_lt_of_le h1
    (Finset.single_le_sum (f := fun j => k j ^ 2) (fun j _ => sq_nonneg (k j))
      (Finset.mem_univ i))

/-- A nonzero key lives in positive dimension. -/
lemma pos_of_ne_zero {k : Fin d → ℝ} (hk : k ≠ 0) : 0 < d := by
  rcases Nat.eq_zero_or_pos d with h | h
  · subst h
    exact (hk (funext fun i => Fin.elim0 i)).elim
  · exact h

end BetaSpec
