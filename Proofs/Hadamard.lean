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

open Finset Matrix

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
  sorry

/-- Rows of the Sylvester–Hadamard matrix are orthogonal: `H_n · H_nᵀ = 2ⁿ · I`. -/
theorem hadamard_mul_transpose (n : ℕ) :
    hadamard n * (hadamard n)ᵀ = (2 ^ n : ℝ) • (1 : Matrix (Fin n → Bool) (Fin n → Bool) ℝ) := by
  sorry

/-- The SRHT with any `±1` diagonal preserves the squared norm. -/
theorem srht_isometry (n : ℕ) (D : (Fin n → Bool) → ℝ) (hD : ∀ i, D i = 1 ∨ D i = -1)
    (x : (Fin n → Bool) → ℝ) : sqnorm (srht n D x) = sqnorm x := by
  sorry

end BetaSpec
