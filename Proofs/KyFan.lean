import Proofs.ResidualCorrection

/-!
# Section 5 — Ky Fan and the restricted Eckart–Young theorem

The rank-`r` correction stores, per token, the coordinates of the 1-bit residual `e_t` in an
orthonormal `r`-frame `b`. The energy it captures is `Σ_j ⟪EᵀE b_j, b_j⟫`; Ky Fan's maximum
principle says the top-`r` eigenvectors of `EᵀE` (the top right singular vectors of `E`) capture
the most, so `γ_r = captured / total` is maximised by the top-`r` SVD.

## Main results

* `BetaSpec.svd_topk_maximizes_gammaR`: Ky Fan for a symmetric map on a finite-dimensional real
  inner-product space, with equality at the top eigenvectors.
* `BetaSpec.residual_topk_eckart_young`: for projections of the rows onto an `r`-frame, the
  residual energy is at least the sum of the `d - r` smallest eigenvalues of `EᵀE`, with
  equality at the top eigenvectors.
* `BetaSpec.eckart_young_full`: the full Eckart–Young statement over all rank-`≤ r` matrices,
  as a `Prop` (status `open`).
-/

noncomputable section

open Finset Matrix

namespace BetaSpec

variable {d : ℕ}

/-- Ky Fan's maximum principle: an orthonormal `r`-frame captures at most the sum of the `r`
largest eigenvalues of a symmetric map, and the top eigenvectors attain it. -/
theorem svd_topk_maximizes_gammaR {E : Type*} [NormedAddCommGroup E] [InnerProductSpace ℝ E]
    [FiniteDimensional ℝ E] {n : ℕ} (hn : Module.finrank ℝ E = n) (T : E →ₗ[ℝ] E)
    (hT : T.IsSymmetric) {r : ℕ} (hr : r ≤ n) (b : Fin r → E) (hb : Orthonormal ℝ b) :
    ∑ j, @inner ℝ E _ (T (b j)) (b j) ≤ ∑ j : Fin r, hT.eigenvalues hn (Fin.castLE hr j) ∧
      ∑ j : Fin r, @inner ℝ E _ (T (hT.eigenvectorBasis hn (Fin.castLE hr j)))
          (hT.eigenvectorBasis hn (Fin.castLE hr j)) =
        ∑ j : Fin r, hT.eigenvalues hn (Fin.castLE hr j) := by
  sorry

/-- The Gram matrix `EᵀE` of the rows `e_t`. -/
def gram {m : ℕ} (e : Fin m → Fin d → ℝ) : Matrix (Fin d) (Fin d) ℝ :=
  fun i j => ∑ t, e t i * e t j

/-- `b` is an orthonormal family for the dot product. -/
def IsOrthonormalFrame {r : ℕ} (b : Fin r → Fin d → ℝ) : Prop :=
  ∀ j j', dot (b j) (b j') = if j = j' then 1 else 0

/-- Orthogonal projection onto the span of an orthonormal frame, `P x = Σ_j ⟪x, b_j⟫ b_j`. -/
def frameProj {r : ℕ} (b : Fin r → Fin d → ℝ) (x : Fin d → ℝ) : Fin d → ℝ :=
  ∑ j, dot x (b j) • b j

/-- Restricted Eckart–Young: projecting the rows onto an orthonormal `r`-frame leaves residual
energy `tr(EᵀE) - Σ_j ⟪EᵀE b_j, b_j⟫`, which is at least the sum of the `d - r` smallest
eigenvalues of `EᵀE`; the top eigenvectors attain it. -/
theorem residual_topk_eckart_young {m r : ℕ} (e : Fin m → Fin d → ℝ) (hA : (gram e).IsHermitian)
    (b : Fin r → Fin d → ℝ) (hb : IsOrthonormalFrame b) :
    ∑ t, sqnorm (e t - frameProj b (e t)) =
        ∑ t, sqnorm (e t) - ∑ j, dot (gram e *ᵥ b j) (b j) ∧
      ∑ i : Fin (Fintype.card (Fin d)), (if r ≤ (i : ℕ) then hA.eigenvalues₀ i else 0) ≤
        ∑ t, sqnorm (e t - frameProj b (e t)) ∧
      (r ≤ d → ∃ b' : Fin r → Fin d → ℝ, IsOrthonormalFrame b' ∧
        ∑ t, sqnorm (e t - frameProj b' (e t)) =
          ∑ i : Fin (Fintype.card (Fin d)), if r ≤ (i : ℕ) then hA.eigenvalues₀ i else 0) := by
  sorry

/-- OPEN. The full Eckart–Young theorem: no matrix of rank at most `r` approximates `E` better
in Frobenius norm than the sum of the `d - r` smallest eigenvalues of `EᵀE`. -/
def eckart_young_full : Prop :=
  ∀ (d m r : ℕ) (E X : Matrix (Fin m) (Fin d) ℝ) (hA : (Eᵀ * E).IsHermitian), X.rank ≤ r →
    ∑ i : Fin (Fintype.card (Fin d)), (if r ≤ (i : ℕ) then hA.eigenvalues₀ i else 0) ≤
      ∑ t, ∑ i, (E t i - X t i) ^ 2

end BetaSpec
