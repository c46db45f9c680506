import Proofs.SignGeometry

/-!
# Section 4 — the last mile

Near a sign-lattice point `s ∈ {±1}^d`, perturb along `u`: `k = s + t • u` with no sign flips
(`|t uᵢ| < 1`). The β deficit `1 - cosSign k ²` is exactly quadratic in `t`, with coefficient
governed by the component `u⊥ = u - (⟪u, s⟫ / d) • s` of `u` off the diagonal. Its derivative at
`t = 0` vanishes, so gradient ascent on β slows to a crawl as it approaches the lattice.

## Main results

* `BetaSpec.beta_local_quadratic_expansion`: `1 - cosSign (s + t•u)² = t² ‖u⊥‖² / ‖s + t•u‖²`.
* `BetaSpec.beta_hessian_nonneg`: `d ‖u‖² - ⟪s, u⟫² = d ‖u⊥‖² ≥ 0`.
* `BetaSpec.beta_last_mile_quadratic_hardness`: `f'(0) = 0` and `f t ≤ 4 t² ‖u⊥‖² / d` while
  every `|t uᵢ| ≤ 1/2`.
-/

noncomputable section

open Topology

namespace BetaSpec

variable {d : ℕ}

/-! ### Near the sign lattice the code does not flip -/

section Perturb

variable {s u : Fin d → ℝ} {t : ℝ}

/-- With no sign flips (`|t uᵢ| < 1`), the code of `s + t • u` is `s`. -/
lemma sgn_lattice_perturb (hs : IsSignVec s) (ht : ∀ i, |t * u i| < 1) (i : Fin d) :
    sgn (s i + t * u i) = s i := by
  have h := abs_lt.mp (ht i)
  unfold sgn
  rcases hs i with h1 | h1
  · have h2 : 0 ≤ s i + t * u i := by rw [h1]; linarith [h.1]
    rw [if_pos h2, h1]
  · have h2 : ¬(0 ≤ s i + t * u i) := fun h0 => by
      rw [h1] at h0
      linarith [h.2]
    rw [if_neg h2, h1]

/-- With no sign flips, `|sᵢ + t uᵢ| = 1 + t uᵢ sᵢ`. -/
lemma abs_lattice_perturb (hs : IsSignVec s) (ht : ∀ i, |t * u i| < 1) (i : Fin d) :
    |(s + t • u) i| = 1 + t * (u i * s i) := by
  show |s i + t * u i| = 1 + t * (u i * s i)
  rw [← mul_sgn, sgn_lattice_perturb hs ht i]
  linear_combination sq_of_isSignVec hs i

/-- With no sign flips, `‖s + t • u‖₁ = d + t ⟪u, s⟫`. -/
lemma l1_lattice_perturb (hs : IsSignVec s) (ht : ∀ i, |t * u i| < 1) :
    l1 (s + t • u) = d + t * dot u s := by
  unfold l1 dot
  rw [Finset.sum_congr rfl fun i _ => abs_lattice_perturb hs ht i, Finset.sum_add_distrib,
    ← Finset.mul_sum, Finset.sum_const, Finset.card_univ, Fintype.card_fin, nsmul_eq_mul,
    mul_one]

/-- `‖s + t • u‖² = d + 2t⟪u, s⟫ + t²‖u‖²` on the sign lattice (for every `t`). -/
lemma sqnorm_lattice_perturb (hs : IsSignVec s) (t : ℝ) :
    sqnorm (s + t • u) = d + 2 * t * dot u s + t ^ 2 * sqnorm u := by
  have h : ∀ i, (s + t • u) i ^ 2 = 1 + 2 * t * (u i * s i) + t ^ 2 * u i ^ 2 := fun i => by
    show (s i + t * u i) ^ 2 = 1 + 2 * t * (u i * s i) + t ^ 2 * u i ^ 2
    linear_combination sq_of_isSignVec hs i
  unfold sqnorm dot
  rw [Finset.sum_congr rfl fun i _ => h i, Finset.sum_add_distrib, Finset.sum_add_distrib,
    ← Finset.mul_sum, ← Finset.mul_sum, Finset.sum_const, Finset.card_univ, Fintype.card_fin,
    nsmul_eq_mul, mul_one]

/-- With no sign flips, `s + t • u ≠ 0`, so its squared norm is positive. -/
lemma sqnorm_lattice_perturb_pos (hd : 0 < d) (hs : IsSignVec s) (ht : ∀ i, |t * u i| < 1) :
    0 < sqnorm (s + t • u) := by
  apply sqnorm_pos
  intro h
  have h1 := abs_lattice_perturb hs ht ⟨0, hd⟩
  rw [h, Pi.zero_apply, abs_zero] at h1
  have h2 := abs_lt.mp (ht ⟨0, hd⟩)
  rcases hs ⟨0, hd⟩ with h3 | h3 <;> rw [h3] at h1 <;> linarith [h2.1, h2.2]

end Perturb

/-- `‖u⊥‖² = ‖u‖² - ⟪u, s⟫² / d` on the sign lattice. -/
lemma sqnorm_perp {s : Fin d → ℝ} (u : Fin d → ℝ) (hs : IsSignVec s) (hd : 0 < d) :
    sqnorm (perp u s) = sqnorm u - dot u s ^ 2 / d := by
  have hd0 : (d : ℝ) ≠ 0 := Nat.cast_ne_zero.mpr hd.ne'
  have e : dot u s / d * d = dot u s := div_mul_cancel₀ (dot u s) hd0
  unfold perp
  rw [sqnorm_sub, dot_smul_right, sqnorm_smul, sqnorm_of_isSignVec hs]
  linear_combination (dot u s / d) * e

/-! ### Main results -/

/-- Exact local expansion of the β deficit around a sign-lattice point. -/
theorem beta_local_quadratic_expansion (s u : Fin d → ℝ) (t : ℝ) (hd : 0 < d)
    (hs : IsSignVec s) (ht : ∀ i, |t * u i| < 1) :
    1 - cosSign (s + t • u) ^ 2 = t ^ 2 * sqnorm (perp u s) / sqnorm (s + t • u) := by
  have hd0 : (d : ℝ) ≠ 0 := Nat.cast_ne_zero.mpr hd.ne'
  have hW := sqnorm_lattice_perturb_pos hd hs ht
  have hS : sqnorm (s + t • u) = d + 2 * t * dot u s + t ^ 2 * sqnorm u :=
    sqnorm_lattice_perturb hs t
  rw [eq_div_iff hW.ne', cosSign_sq, l1_lattice_perturb hs ht, sqnorm_perp u hs hd]
  linear_combination hS - ((d : ℝ) + 2 * t * dot u s) * mul_inv_cancel₀ hd0
    - ((d : ℝ) + t * dot u s) ^ 2 * (d : ℝ)⁻¹ * mul_inv_cancel₀ hW.ne'

/-- The second-order coefficient of the deficit is nonnegative:
`d ‖u‖² - ⟪s, u⟫² = d ‖u⊥‖² ≥ 0`. -/
theorem beta_hessian_nonneg (s u : Fin d → ℝ) (hs : IsSignVec s) :
    (d : ℝ) * sqnorm (perp u s) = (d : ℝ) * sqnorm u - dot s u ^ 2 ∧
      0 ≤ (d : ℝ) * sqnorm u - dot s u ^ 2 := by
  have h1 : (d : ℝ) * sqnorm (perp u s) = (d : ℝ) * sqnorm u - dot s u ^ 2 := by
    rcases Nat.eq_zero_or_pos d with hd | hd
    · subst hd
      simp [dot]
    · have hd0 : (d : ℝ) ≠ 0 := Nat.cast_ne_zero.mpr hd.ne'
      rw [sqnorm_perp u hs hd, dot_comm s u]
      linear_combination (-(dot u s ^ 2)) * mul_inv_cancel₀ hd0
  refine ⟨h1, ?_⟩
  rw [← h1]
  exact mul_nonneg (Nat.cast_nonneg d) (sqnorm_nonneg _)

/-- Quadratic hardness of the last mile: the deficit `f t = 1 - cosSign (s + t•u)²` has zero
derivative at the sign lattice, and is at most `4 t² ‖u⊥‖² / d` while every `|t uᵢ| ≤ 1/2`. -/
theorem beta_last_mile_quadratic_hardness (s u : Fin d → ℝ) (hd : 0 < d) (hs : IsSignVec s) :
    HasDerivAt (fun t : ℝ => 1 - cosSign (s + t • u) ^ 2) 0 0 ∧
      ∀ t : ℝ, (∀ i, |t * u i| ≤ 1 / 2) →
        1 - cosSign (s + t • u) ^ 2 ≤ 4 * t ^ 2 * sqnorm (perp u s) / d := by
  have hd' : (0 : ℝ) < d := Nat.cast_pos.mpr hd
  have hd0 : (d : ℝ) ≠ 0 := hd'.ne'
  refine ⟨?_, fun t ht => ?_⟩
  · -- near `t = 0` there are no sign flips
    have hev : ∀ᶠ t in 𝓝 (0 : ℝ), ∀ i, |t * u i| < 1 := by
      rw [Metric.eventually_nhds_iff]
      have hM : 0 ≤ l1 u := l1_nonneg u
      have hM1 : 0 < 1 + l1 u := by linarith
      refine ⟨1 / (1 + l1 u), div_pos one_pos hM1, fun t ht i => ?_⟩
      rw [Real.dist_eq, sub_zero, lt_div_iff₀ hM1] at ht
      have hui : |u i| ≤ l1 u :=
        Finset.single_le_sum (f := fun j => |u j|) (fun j _ => abs_nonneg (u j))
          (Finset.mem_univ i)
      rw [abs_mul]
      nlinarith [mul_le_mul_of_nonneg_left hui (abs_nonneg t), abs_nonneg t]
    -- there the deficit is the rational function `t² A / (d + (2tP + t²Q))`
    have hnum := (hasDerivAt_pow 2 (0 : ℝ)).mul_const (sqnorm (perp u s))
    have hden := (((hasDerivAt_id' (x := (0 : ℝ))).mul_const (2 * dot u s)).add
      ((hasDerivAt_pow 2 (0 : ℝ)).mul_const (sqnorm u))).const_add (d : ℝ)
    have hden0 : (d : ℝ) + ((0 : ℝ) * (2 * dot u s) + (0 : ℝ) ^ 2 * sqnorm u) ≠ 0 := by
      simpa using hd0
    have hG : HasDerivAt (fun t : ℝ => t ^ 2 * sqnorm (perp u s) /
        ((d : ℝ) + (t * (2 * dot u s) + t ^ 2 * sqnorm u))) 0 0 :=
      (hnum.fun_div hden hden0).congr_deriv (by simp)
    have heq : (fun t : ℝ => 1 - cosSign (s + t • u) ^ 2) =ᶠ[𝓝 0]
        fun t : ℝ => t ^ 2 * sqnorm (perp u s) /
          ((d : ℝ) + (t * (2 * dot u s) + t ^ 2 * sqnorm u)) := by
      filter_upwards [hev] with t ht
      have hS : sqnorm (s + t • u) = (d : ℝ) + (t * (2 * dot u s) + t ^ 2 * sqnorm u) := by
        rw [sqnorm_lattice_perturb hs t]
        ring
      show 1 - cosSign (s + t • u) ^ 2 =
        t ^ 2 * sqnorm (perp u s) / ((d : ℝ) + (t * (2 * dot u s) + t ^ 2 * sqnorm u))
      rw [beta_local_quadratic_expansion s u t hd hs ht, hS]
    exact hG.congr_of_eventuallyEq heq
  · -- the quadratic bound
    have ht' : ∀ i, |t * u i| < 1 := fun i => by linarith [ht i]
    have hW := sqnorm_lattice_perturb_pos hd hs ht'
    have h1 : ∀ i, (1 : ℝ) / 4 ≤ (s + t • u) i ^ 2 := fun i => by
      have h2 : (1 : ℝ) / 2 ≤ |(s + t • u) i| := by
        rw [abs_lattice_perturb hs ht' i]
        have h3 := abs_le.mp (ht i)
        rcases hs i with h4 | h4 <;> rw [h4] <;> linarith [h3.1, h3.2]
      nlinarith [sq_abs ((s + t • u) i), abs_nonneg ((s + t • u) i)]
    have hW4 : (d : ℝ) / 4 ≤ sqnorm (s + t • u) := by
      calc (d : ℝ) / 4 = ∑ _i : Fin d, (1 : ℝ) / 4 := by
            rw [Finset.sum_const, Finset.card_univ, Fintype.card_fin, nsmul_eq_mul]
            ring
        _ ≤ ∑ i, (s + t • u) i ^ 2 := Finset.sum_le_sum fun i _ => h1 i
        _ = sqnorm (s + t • u) := rfl
    have hX : 0 ≤ t ^ 2 * sqnorm (perp u s) := mul_nonneg (sq_nonneg t) (sqnorm_nonneg _)
    have e : 4 * t ^ 2 * sqnorm (perp u s) / d = t ^ 2 * sqnorm (perp u s) / (d / 4) := by
      ring
    rw [beta_local_quadratic_expansion s u t hd hs ht', e]
    exact div_le_div_of_nonneg_left hX (div_pos hd' (by norm_num)) hW4

end BetaSpec
