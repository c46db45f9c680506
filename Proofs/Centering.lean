import Proofs.SignGeometry

/-!
# Section 3 — learned rotations and DC-mean centering

Rotations and a common key mean are free at deploy time (`attention_score_gauge_invariance`).
What centring buys is formalised as the *mean-domination collapse*: a rotation fitted to
uncentred keys puts the dominant mean on a sign-lattice diagonal, and then every key gets the
same code and loses all of its informative part; the centred residual loses at most a
`(1 - 1/d)` fraction.

The write-up's inequality `sup_R cos θ(R v) ≥ sup_R cos θ(R(μe + v))` is not formalised: it is
vacuous for one vector (`sign_lattice_reachable`: both sides are `1`) and false for batches.

## Main results

* `BetaSpec.softmax_shift`, `BetaSpec.attention_score_gauge_invariance`.
* `BetaSpec.l2Norm_uncentered_gt`: the mean only adds energy (single-vector and batch forms).
* `BetaSpec.centered_quant_strict_gain`: `‖v - v̂‖² ≤ (1 - 1/d)‖v‖² < ‖v‖²` for `v ≠ 0`.
* `BetaSpec.dc_centering_lifts_rotational_ceiling`: the mean-domination collapse.
* `BetaSpec.centered_energy_accounting`: the key-level error when the mean is stored exactly.
* `BetaSpec.sign_lattice_reachable`: every nonzero key can be rotated onto the sign lattice, by
  the Householder reflection `BetaSpec.householder`.
-/

noncomputable section

open scoped Matrix

namespace BetaSpec

variable {d : ℕ}

/-! ### Gauge invariance -/

/-- Softmax is invariant under adding a constant to every logit. -/
theorem softmax_shift {ι : Type*} [Fintype ι] (x : ι → ℝ) (c : ℝ) :
    softmax (fun i => x i + c) = softmax x := by
  funext i
  simp only [softmax, Real.exp_add, ← Finset.sum_mul]
  exact mul_div_mul_right _ _ (Real.exp_pos c).ne'

/-- Gauge invariance. (a) An orthogonal `R` folded into both `W_q` and `W_k` leaves every logit
`⟪R q, R k⟫ = ⟪q, k⟫` unchanged. (b) Subtracting one mean key `m` from every key shifts a query's
logits by the constant `⟪q, m⟫`, which softmax ignores. -/
theorem attention_score_gauge_invariance :
    (∀ R : Matrix (Fin d) (Fin d) ℝ, Rᵀ * R = 1 →
        ∀ q k : Fin d → ℝ, dot (R *ᵥ q) (R *ᵥ k) = dot q k) ∧
      ∀ (n : ℕ) (q m : Fin d → ℝ) (v : Fin n → Fin d → ℝ),
        softmax (fun t => dot q (m + v t)) = softmax (fun t => dot q (v t)) := by
  refine ⟨fun R hR q k => ?_, fun n q m v => ?_⟩
  · show (R *ᵥ q) ⬝ᵥ (R *ᵥ k) = q ⬝ᵥ k
    rw [dotProduct_mulVec_mulVec, hR, Matrix.one_mulVec]
  · have h : (fun t => dot q (m + v t)) = fun t => dot q (v t) + dot q m := by
      funext t
      rw [dot_add, add_comm]
    rw [h]
    exact softmax_shift (fun t => dot q (v t)) (dot q m)

/-! ### The mean only adds energy -/

/-- Adding a nonzero multiple of a direction orthogonal to `v` strictly increases the norm. -/
theorem l2Norm_uncentered_gt_single (v e : Fin d → ℝ) (μ : ℝ) (horth : dot v e = 0)
    (he : e ≠ 0) (hμ : μ ≠ 0) : l2 v < l2 (μ • e + v) := by
  have hdot : dot (μ • e) v = 0 := by
    rw [dot_smul_left, dot_comm, horth, mul_zero]
  have hexp : sqnorm (μ • e + v) = μ ^ 2 * sqnorm e + sqnorm v := by
    rw [sqnorm_add, hdot, sqnorm_smul]
    ring
  have hμ2 : 0 < μ ^ 2 := lt_of_le_of_ne (sq_nonneg μ) (Ne.symm (pow_ne_zero 2 hμ))
  have hpos : 0 < μ ^ 2 * sqnorm e := mul_pos hμ2 (sqnorm_pos he)
  unfold l2
  rw [hexp]
  exact Real.sqrt_lt_sqrt (sqnorm_nonneg v) (by linarith)

/-- Batch energy identity of DC-mean centering: for keys `m + v_t` with `Σ_t v_t = 0`,
`Σ_t ‖m + v_t‖² = n ‖m‖² + Σ_t ‖v_t‖²`, so centring strictly lowers the energy when `m ≠ 0`. -/
theorem l2Norm_uncentered_gt_batch {n : ℕ} (m : Fin d → ℝ) (v : Fin n → Fin d → ℝ)
    (hsum : ∑ t, v t = 0) :
    ∑ t, sqnorm (m + v t) = n * sqnorm m + ∑ t, sqnorm (v t) ∧
      (m ≠ 0 → 0 < n → ∑ t, sqnorm (v t) < ∑ t, sqnorm (m + v t)) := by
  have hcoord : ∀ i, ∑ t, v t i = 0 := fun i => by
    have h1 := congrFun hsum i
    rwa [Finset.sum_apply, Pi.zero_apply] at h1
  have hcross : ∑ t, dot m (v t) = 0 := by
    unfold dot
    rw [Finset.sum_comm]
    exact Finset.sum_eq_zero fun i _ => by rw [← Finset.mul_sum, hcoord i, mul_zero]
  have hid : ∑ t, sqnorm (m + v t) = n * sqnorm m + ∑ t, sqnorm (v t) := by
    rw [Finset.sum_congr rfl fun t _ => sqnorm_add m (v t), Finset.sum_add_distrib,
      Finset.sum_add_distrib, ← Finset.mul_sum, hcross, Finset.sum_const, Finset.card_univ,
      Fintype.card_fin, nsmul_eq_mul]
    ring
  refine ⟨hid, fun hm hn => ?_⟩
  have hpos : 0 < (n : ℝ) * sqnorm m := mul_pos (Nat.cast_pos.mpr hn) (sqnorm_pos hm)
  rw [hid]
  linarith

/-- The mean only adds energy: single-vector and batch forms. -/
theorem l2Norm_uncentered_gt :
    (∀ (v e : Fin d → ℝ) (μ : ℝ), dot v e = 0 → e ≠ 0 → μ ≠ 0 → l2 v < l2 (μ • e + v)) ∧
      ∀ (n : ℕ) (m : Fin d → ℝ) (v : Fin n → Fin d → ℝ), ∑ t, v t = 0 →
        ∑ t, sqnorm (m + v t) = n * sqnorm m + ∑ t, sqnorm (v t) ∧
          (m ≠ 0 → 0 < n → ∑ t, sqnorm (v t) < ∑ t, sqnorm (m + v t)) :=
  ⟨fun v e μ horth he hμ => l2Norm_uncentered_gt_single v e μ horth he hμ,
    fun _ m v hsum => l2Norm_uncentered_gt_batch m v hsum⟩

/-! ### Mean-domination collapse and the centred gain -/

/-- In positive dimension the centred 1-bit error is at most `(1 - 1/d) ‖v‖²` (no `v ≠ 0`
needed). -/
lemma sqnorm_sub_quant1_le (hd : 0 < d) (v : Fin d → ℝ) :
    sqnorm (v - quant1 v) ≤ (1 - 1 / (d : ℝ)) * sqnorm v := by
  have hd' : (0 : ℝ) < d := Nat.cast_pos.mpr hd
  have h1 : sqnorm v / d ≤ l1 v ^ 2 / d :=
    div_le_div_of_nonneg_right (sqnorm_le_l1_sq v) hd'.le
  have e : (1 - 1 / (d : ℝ)) * sqnorm v = sqnorm v - sqnorm v / d := by ring
  rw [sqnorm_sub_quant1 hd, e]
  linarith

/-- Quantising a nonzero residual loses at most a `(1 - 1/d)` fraction of its energy. -/
theorem centered_quant_strict_gain (v : Fin d → ℝ) (hv : v ≠ 0) :
    sqnorm (v - quant1 v) ≤ (1 - 1 / (d : ℝ)) * sqnorm v ∧ sqnorm (v - quant1 v) < sqnorm v := by
  have hd : 0 < d := pos_of_ne_zero hv
  have hd' : (0 : ℝ) < d := Nat.cast_pos.mpr hd
  refine ⟨sqnorm_sub_quant1_le hd v, ?_⟩
  have hL : 0 < l1 v ^ 2 / d := div_pos (pow_pos (l1_pos hv) 2) hd'
  rw [sqnorm_sub_quant1 hd]
  linarith

/-- Mean-domination collapse. For a key `c • s + v` with `s ∈ {±1}^d`, `⟪v, s⟫ = 0`, `c > 0` and
every `|vᵢ| < c`: (i) its code is `s` and its scale is `c`, so every such key is reconstructed as
`c • s`; (ii) its 1-bit error is all of `‖v‖²`; (iii) quantising the centred residual `v` instead
loses at most `(1 - 1/d)‖v‖²`. -/
theorem dc_centering_lifts_rotational_ceiling (s v : Fin d → ℝ) (c : ℝ) (hd : 0 < d)
    (hs : IsSignVec s) (hc : 0 < c) (horth : dot v s = 0) (hsmall : ∀ i, |v i| < c) :
    signVec (c • s + v) = s ∧ optScale (c • s + v) = c ∧
      sqnorm (c • s + v - quant1 (c • s + v)) = sqnorm v ∧
      sqnorm (v - quant1 v) ≤ (1 - 1 / (d : ℝ)) * sqnorm v := by
  have hd0 : (d : ℝ) ≠ 0 := Nat.cast_ne_zero.mpr hd.ne'
  have hcode : ∀ i, sgn (c * s i + v i) = s i := fun i => by
    have hv := abs_lt.mp (hsmall i)
    unfold sgn
    rcases hs i with h | h
    · have h1 : 0 ≤ c * s i + v i := by rw [h]; linarith [hv.1]
      rw [if_pos h1, h]
    · have h1 : ¬(0 ≤ c * s i + v i) := fun h0 => by
        rw [h] at h0
        linarith [hv.2]
      rw [if_neg h1, h]
  have hsign : signVec (c • s + v) = s := funext fun i => hcode i
  have habs : ∀ i, |(c • s + v) i| = c + v i * s i := fun i => by
    show |c * s i + v i| = c + v i * s i
    rw [← mul_sgn, hcode i]
    linear_combination c * sq_of_isSignVec hs i
  have hvs : ∑ i, v i * s i = 0 := horth
  have hl1 : l1 (c • s + v) = c * d := by
    unfold l1
    rw [Finset.sum_congr rfl fun i _ => habs i, Finset.sum_add_distrib, hvs, Finset.sum_const,
      Finset.card_univ, Fintype.card_fin, nsmul_eq_mul]
    ring
  have hscale : optScale (c • s + v) = c := by
    rw [optScale, hl1]
    -- `c * d / d = c`, with `d ≠ 0`
    linear_combination c * mul_inv_cancel₀ hd0
  have hq : quant1 (c • s + v) = c • s := by
    rw [quant1, hscale, hsign]
  have hcancel : c • s + v - c • s = v := by abel
  refine ⟨hsign, hscale, ?_, sqnorm_sub_quant1_le hd v⟩
  rw [hq, hcancel]

/-- Energy accounting with the mean stored exactly: relative to the whole key `m + v`, the 1-bit
error of the residual is `(1 - cos² θ_v)` times the residual's share of the energy. -/
theorem centered_energy_accounting (m v : Fin d → ℝ) (hv : v ≠ 0) (horth : dot v m = 0) :
    sqnorm (v - quant1 v) / sqnorm (m + v) = (1 - cosSign v ^ 2) * (sqnorm v / sqnorm (m + v)) ∧
      sqnorm (v - quant1 v) / sqnorm (m + v) ≤ 1 - cosSign v ^ 2 := by
  have hS : 0 < sqnorm v := sqnorm_pos hv
  have hE : sqnorm (v - quant1 v) = (1 - cosSign v ^ 2) * sqnorm v :=
    (div_eq_iff hS.ne').mp (residual_energy_formula v hv)
  have hT : sqnorm (m + v) = sqnorm m + sqnorm v := by
    rw [sqnorm_add, dot_comm, horth]
    ring
  have hTpos : 0 < sqnorm (m + v) := by
    rw [hT]
    linarith [sqnorm_nonneg m]
  have hc := cos_sign_le_one v hv
  have h1 : 0 ≤ 1 - cosSign v ^ 2 := by nlinarith [hc.1, hc.2]
  have hratio : sqnorm v / sqnorm (m + v) ≤ 1 := by
    rw [div_le_one₀ hTpos, hT]
    linarith [sqnorm_nonneg m]
  have heq : sqnorm (v - quant1 v) / sqnorm (m + v)
      = (1 - cosSign v ^ 2) * (sqnorm v / sqnorm (m + v)) := by
    rw [hE, mul_div_assoc]
  refine ⟨heq, ?_⟩
  rw [heq]
  nlinarith [mul_nonneg h1 (sub_nonneg.mpr hratio)]

/-! ### Every nonzero key can be rotated onto the sign lattice -/

/-- The Householder reflection `1 - (2 / ⟪u, u⟫) • u uᵀ` (the identity when `u = 0`). -/
def householder (u : Fin d → ℝ) : Matrix (Fin d) (Fin d) ℝ :=
  1 - (2 / (u ⬝ᵥ u)) • Matrix.vecMulVec u u

/-- A Householder reflection is orthogonal. -/
lemma householder_transpose_mul (u : Fin d → ℝ) : (householder u)ᵀ * householder u = 1 := by
  have hAt : (Matrix.vecMulVec u u)ᵀ = Matrix.vecMulVec u u := by
    ext i j
    simp only [Matrix.transpose_apply, Matrix.vecMulVec_apply]
    ring
  have hAA : Matrix.vecMulVec u u * Matrix.vecMulVec u u = (u ⬝ᵥ u) • Matrix.vecMulVec u u := by
    ext i j
    simp only [Matrix.mul_apply, Matrix.vecMulVec_apply, Matrix.smul_apply, smul_eq_mul,
      dotProduct, Finset.sum_mul]
    exact Finset.sum_congr rfl fun k _ => by ring
  have hc : 2 / (u ⬝ᵥ u) * (2 / (u ⬝ᵥ u)) * (u ⬝ᵥ u) = 2 * (2 / (u ⬝ᵥ u)) := by
    by_cases h : u ⬝ᵥ u = 0
    · simp [h]
    · linear_combination (4 / (u ⬝ᵥ u)) * mul_inv_cancel₀ h
  unfold householder
  rw [Matrix.transpose_sub, Matrix.transpose_one, Matrix.transpose_smul, hAt, sub_mul, one_mul,
    mul_sub, mul_one, smul_mul_assoc, mul_smul_comm, hAA, smul_smul, smul_smul, hc, two_mul,
    add_smul]
  abel

/-- If `⟪u, u⟫ = 2 ⟪u, x⟫` (e.g. `u = x - y` with `‖x‖ = ‖y‖`), the reflection sends `x` to
`x - u`. -/
lemma householder_mulVec (u x : Fin d → ℝ) (h : u ⬝ᵥ u = 2 * (u ⬝ᵥ x)) :
    householder u *ᵥ x = x - u := by
  have hAx : Matrix.vecMulVec u u *ᵥ x = (u ⬝ᵥ x) • u := by
    funext i
    simp only [Matrix.mulVec, dotProduct, Matrix.vecMulVec_apply, Pi.smul_apply, smul_eq_mul,
      Finset.sum_mul]
    exact Finset.sum_congr rfl fun j _ => by ring
  have hcoef : (2 / (u ⬝ᵥ u) * (u ⬝ᵥ x)) • u = u := by
    by_cases hu : u ⬝ᵥ u = 0
    · have hu0 : u = 0 := by
        by_contra hne
        have hpos := sqnorm_pos hne
        rw [sqnorm_eq_dotProduct] at hpos
        linarith
      rw [hu0, smul_zero]
    · have h1 : 2 / (u ⬝ᵥ u) * (u ⬝ᵥ x) = 1 := by
        linear_combination (-(u ⬝ᵥ u)⁻¹) * h + mul_inv_cancel₀ hu
      rw [h1, one_smul]
  unfold householder
  rw [Matrix.sub_mulVec, Matrix.one_mulVec, Matrix.smul_mulVec, hAx, smul_smul, hcoef]

/-- Every nonzero key can be rotated onto the sign lattice (a Householder reflection onto the
diagonal), so the single-vector rotational ceiling is always `1`. -/
theorem sign_lattice_reachable (x : Fin d → ℝ) (hx : x ≠ 0) :
    ∃ R : Matrix (Fin d) (Fin d) ℝ, Rᵀ * R = 1 ∧ cosSign (R *ᵥ x) = 1 := by
  have hd : 0 < d := pos_of_ne_zero hx
  have hd' : (0 : ℝ) < d := Nat.cast_pos.mpr hd
  have hd0 : (d : ℝ) ≠ 0 := hd'.ne'
  have hS : 0 < sqnorm x := sqnorm_pos hx
  -- the target: the diagonal point `y = (a, …, a)` with `‖y‖ = ‖x‖`
  obtain ⟨a, ha, ha2⟩ : ∃ a : ℝ, 0 < a ∧ (d : ℝ) * a ^ 2 = sqnorm x := by
    refine ⟨Real.sqrt (sqnorm x / d), Real.sqrt_pos.mpr (div_pos hS hd'), ?_⟩
    rw [Real.sq_sqrt (div_pos hS hd').le]
    linear_combination sqnorm x * mul_inv_cancel₀ hd0
  obtain ⟨y, hy⟩ : ∃ y : Fin d → ℝ, y = fun _ => a := ⟨_, rfl⟩
  have hyy : y ⬝ᵥ y = x ⬝ᵥ x := by
    rw [← sqnorm_eq_dotProduct, ← sqnorm_eq_dotProduct, ← ha2, hy]
    simp only [sqnorm, Finset.sum_const, Finset.card_univ, Fintype.card_fin, nsmul_eq_mul]
  have hkey : (x - y) ⬝ᵥ (x - y) = 2 * ((x - y) ⬝ᵥ x) := by
    rw [sub_dotProduct, dotProduct_sub, dotProduct_sub, sub_dotProduct, dotProduct_comm x y, hyy]
    ring
  have hy0 : y ≠ 0 := by
    intro h
    have h0 : y ⟨0, hd⟩ = 0 := by rw [h, Pi.zero_apply]
    rw [hy] at h0
    exact ha.ne' h0
  have hxy : x - (x - y) = y := by abel
  refine ⟨householder (x - y), householder_transpose_mul (x - y), ?_⟩
  rw [householder_mulVec (x - y) x hkey, hxy]
  exact (cos_eq_one_iff_sign_lattice y hy0).mpr ⟨a, ha, fun i => by rw [hy]; exact abs_of_pos ha⟩

end BetaSpec
