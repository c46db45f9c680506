import Proofs.Basic

/-!
# Section 6 — targets that are not theorems

Formal targets for claims that are measured, not proved. Each is a `def … : Prop`, deliberately
unproven; the report evaluates numerical witnesses (a learned rotation) against them.

## Main definitions

* `BetaSpec.ffn_weight_beta_lift_under_learned_R` (open): some orthogonal `R` lifts the mean β of
  the centred rows of a weight matrix to at least `τ`. The open claim is `τ = 0.9` for the dense
  MLP matrices of real models. It is not of the form "≥ the unrotated β", which `R = 1`
  satisfies trivially.
* `BetaSpec.expert_heterogeneity_batch_full_gap` (conjecture): every rotation that maximises the
  mean β on a subsample `S` of the rows beats its own mean β on all rows by at least `g > 0`.
-/

noncomputable section

open Finset Matrix

namespace BetaSpec

variable {d : ℕ}

/-- The mean row `w̄ = (1/m) Σ_j w_j`. -/
def rowMean {m : ℕ} (W : Fin m → Fin d → ℝ) : Fin d → ℝ := (1 / (m : ℝ)) • ∑ j, W j

/-- Mean per-row β over a set of rows, after the rotation `R`: `(1/|S|) Σ_{j∈S} betaVec (R w_j)`. -/
def meanBetaOn {m : ℕ} (W : Fin m → Fin d → ℝ) (S : Finset (Fin m))
    (R : Matrix (Fin d) (Fin d) ℝ) : ℝ :=
  (1 / (S.card : ℝ)) * ∑ j ∈ S, betaVec (R *ᵥ W j)

/-- OPEN. Some orthogonal `R` lifts the mean β of the centred rows of `W` to at least `τ`:
`∃ R, Rᵀ R = 1 ∧ (1/m) Σ_j betaVec (R (w_j - w̄)) ≥ τ`. -/
def ffn_weight_beta_lift_under_learned_R {m : ℕ} (W : Fin m → Fin d → ℝ) (τ : ℝ) : Prop :=
  ∃ R : Matrix (Fin d) (Fin d) ℝ, Rᵀ * R = 1 ∧
    τ ≤ meanBetaOn (fun j => W j - rowMean W) univ R

/-- CONJECTURE (for mixtures of anisotropic clusters). Every orthogonal `R` that maximises the
mean β on the subsample `S` has mean β on `S` at least `g > 0` above its mean β on all rows.

The quantifier over maximisers is not vacuous: the orthogonal group is compact and each
`betaVec (R w)` is continuous in `R` (constant `0` when `w = 0`), so a maximiser exists. The
predicate is not trivially true either: for `S = univ` it fails for every `g > 0`. -/
def expert_heterogeneity_batch_full_gap {m : ℕ} (W : Fin m → Fin d → ℝ) (S : Finset (Fin m))
    (g : ℝ) : Prop :=
  0 < g ∧ ∀ R : Matrix (Fin d) (Fin d) ℝ, Rᵀ * R = 1 →
    (∀ R' : Matrix (Fin d) (Fin d) ℝ, R'ᵀ * R' = 1 → meanBetaOn W S R' ≤ meanBetaOn W S R) →
      meanBetaOn W univ R + g ≤ meanBetaOn W S R

end BetaSpec
