import Proofs.Basic

/-!
# Section 2 — the Sylvester–Hadamard matrix and the SRHT isometry

The Sylvester matrix of order `2ⁿ` is indexed by bit strings `Fin n → Bool`:
`hadamard n x y = ∏ₖ (-1)^(xₖ ∧ yₖ)`. Splitting off the first bit gives the Sylvester recursion
`H₀ = [1]`, `H_{n+1} = [[H, H], [H, -H]]` (`hadamard_succ`).

## Main results

* `BetaSpec.hadamard_succ`: the Sylvester block recursion.
* `BetaSpec.hadamard_mul_transpose`: `H_n · H_nᵀ = 2ⁿ · I`.
* `BetaSpec.srht_isometry`: for every `±1` diagonal `D`, `x ↦ 2^{-n/2} H_n D x` preserves
  `sqnorm` (part (b) of `srht_achieves_isotropic_floor`).
-/

noncomputable section

open scoped Matrix

namespace BetaSpec

/-- The Sylvester–Hadamard matrix of order `2ⁿ`, indexed by bit strings. -/
def hadamard (n : ℕ) : Matrix (Fin n → Bool) (Fin n → Bool) ℝ :=
  fun x y => ∏ k, if (x k && y k) then (-1 : ℝ) else 1

/-- The subsampled-randomised Hadamard transform `x ↦ 2^{-n/2} · H_n (D ⊙ x)` with sign
diagonal `D`. -/
def srht (n : ℕ) (D x : (Fin n → Bool) → ℝ) : (Fin n → Bool) → ℝ :=
  (Real.sqrt (2 ^ n))⁻¹ • (hadamard n *ᵥ fun i => D i * x i)

/-- The Sylvester recursion: the entry of `H_{n+1}` at `(a :: x, b :: y)` is
`(-1)^(a ∧ b) · H_n x y`, i.e. `H_{n+1} = [[H, H], [H, -H]]`. -/
theorem hadamard_succ (n : ℕ) (a b : Bool) (x y : Fin n → Bool) :
    hadamard (n + 1) (Fin.cons a x) (Fin.cons b y) =
      (if (a && b) then (-1 : ℝ) else 1) * hadamard n x y := by
  simp only [hadamard, Fin.prod_univ_succ, Fin.cons_zero, Fin.cons_succ]

/-- One coordinate of the row-orthogonality computation: `Σ_b (-1)^(a∧b) (-1)^(c∧b)` is `2` when
`a = c` and `0` otherwise. -/
lemma sum_bool_sign_mul (a c : Bool) :
    ∑ b : Bool, (if (a && b) then (-1 : ℝ) else 1) * (if (c && b) then (-1 : ℝ) else 1) =
      if a = c then 2 else 0 := by
  cases a <;> cases c <;> norm_num [Fintype.sum_bool]

/-- The inner product of two rows factorises over the bits. -/
lemma hadamard_row_sum {n : ℕ} (x y : Fin n → Bool) :
    ∑ z, hadamard n x z * hadamard n y z =
      ∏ k, ∑ b : Bool, (if (x k && b) then (-1 : ℝ) else 1) *
        (if (y k && b) then (-1 : ℝ) else 1) := by
  rw [Fintype.prod_sum]
  refine Finset.sum_congr rfl fun z _ => ?_
  simp only [hadamard]
  exact Finset.prod_mul_distrib.symm

/-- Rows of the Sylvester–Hadamard matrix are orthogonal: `H_n · H_nᵀ = 2ⁿ · I`. -/
theorem hadamard_mul_transpose (n : ℕ) :
    hadamard n * (hadamard n)ᵀ = (2 ^ n : ℝ) • (1 : Matrix (Fin n → Bool) (Fin n → Bool) ℝ) := by
  ext x y
  rw [Matrix.mul_apply, Matrix.smul_apply, Matrix.one_apply]
  simp only [Matrix.transpose_apply]
  rw [hadamard_row_sum, Finset.prod_congr rfl fun k _ => sum_bool_sign_mul (x k) (y k)]
  by_cases h : x = y
  · subst h
    simp [Finset.prod_const]
  · obtain ⟨k, hk⟩ := Function.ne_iff.mp h
    rw [if_neg h, smul_zero]
    exact Finset.prod_eq_zero (Finset.mem_univ k) (if_neg hk)

/-- The Sylvester–Hadamard matrix is symmetric. -/
lemma hadamard_transpose (n : ℕ) : (hadamard n)ᵀ = hadamard n := by
  ext x y
  simp only [Matrix.transpose_apply, hadamard]
  exact Finset.prod_congr rfl fun k _ => by rw [Bool.and_comm]

/-- `H_n · H_n = 2ⁿ · I`. -/
lemma hadamard_mul_self (n : ℕ) :
    hadamard n * hadamard n = (2 ^ n : ℝ) • (1 : Matrix (Fin n → Bool) (Fin n → Bool) ℝ) := by
  have h := hadamard_mul_transpose n
  rwa [hadamard_transpose] at h

/-- The SRHT with any `±1` diagonal preserves the squared norm. -/
theorem srht_isometry (n : ℕ) (D : (Fin n → Bool) → ℝ) (hD : ∀ i, D i = 1 ∨ D i = -1)
    (x : (Fin n → Bool) → ℝ) : sqnorm (srht n D x) = sqnorm x := by
  have hw : sqnorm (fun i => D i * x i) = sqnorm x := by
    unfold sqnorm
    refine Finset.sum_congr rfl fun i _ => ?_
    have hDi : D i ^ 2 = 1 := by rcases hD i with h | h <;> rw [h] <;> norm_num
    show (D i * x i) ^ 2 = x i ^ 2
    linear_combination x i ^ 2 * hDi
  have hH : ∀ w : (Fin n → Bool) → ℝ, sqnorm (hadamard n *ᵥ w) = 2 ^ n * sqnorm w := by
    intro w
    rw [sqnorm_eq_dotProduct, sqnorm_eq_dotProduct, dotProduct_mulVec_mulVec, hadamard_transpose,
      hadamard_mul_self, Matrix.smul_mulVec, Matrix.one_mulVec, smul_dotProduct, smul_eq_mul]
  have h2 : (0 : ℝ) < 2 ^ n := by positivity
  unfold srht
  rw [sqnorm_smul, hH, hw, inv_pow, Real.sq_sqrt h2.le]
  linear_combination sqnorm x * mul_inv_cancel₀ h2.ne'

end BetaSpec
