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

## Proof outline

Ky Fan: expand `⟪T b_j, b_j⟫ = Σᵢ λᵢ ⟪vᵢ, b_j⟫²` in the eigenbasis `v`; the weights
`cᵢ = Σ_j ⟪vᵢ, b_j⟫²` lie in `[0, 1]` (Bessel) and sum to `r` (Parseval), so `top_k_sorted_optimal`
applies. Eckart–Young (restricted): the residual of the projection is
`Σ_t ‖e_t‖² - Σ_j ⟪EᵀE b_j, b_j⟫` (plain algebra with dot products), `Σ_t ‖e_t‖² = tr(EᵀE)` is the
sum of all eigenvalues, and the frame is moved to `EuclideanSpace ℝ (Fin d)`, where
`Matrix.IsHermitian.eigenvalues₀` is by definition the sorted eigenvalue list of
`Matrix.toEuclideanLin (EᵀE)`.
-/

noncomputable section

open Finset Matrix

namespace BetaSpec

variable {d : ℕ}

/-! ### Ky Fan's maximum principle -/

section KyFan

variable {E : Type*} [NormedAddCommGroup E] [InnerProductSpace ℝ E] [FiniteDimensional ℝ E]
  {n : ℕ}

/-- The first `r` indices of `Fin n`, as a filter, are the image of `Fin.castLE`. -/
lemma kf_sum_filter_lt_eq_sum_castLE {r : ℕ} (hr : r ≤ n) (f : Fin n → ℝ) :
    ∑ i ∈ univ.filter (fun i : Fin n => (i : ℕ) < r), f i = ∑ j : Fin r, f (Fin.castLE hr j) := by
  symm
  refine Finset.sum_bij (fun j _ => Fin.castLE hr j) (fun j _ => ?_) (fun a _ b _ h => ?_)
    (fun i hi => ?_) (fun j _ => rfl)
  · exact Finset.mem_filter.2 ⟨Finset.mem_univ _, j.isLt⟩
  · exact Fin.ext (congrArg Fin.val h)
  · exact ⟨⟨i, (Finset.mem_filter.1 hi).2⟩, Finset.mem_univ _, Fin.ext rfl⟩

/-- The quadratic form of a symmetric map in its eigenbasis: `⟪T x, x⟫ = Σᵢ λᵢ ⟪vᵢ, x⟫²`. -/
lemma inner_apply_self_eq_sum (hn : Module.finrank ℝ E = n) {T : E →ₗ[ℝ] E}
    (hT : T.IsSymmetric) (x : E) :
    @inner ℝ E _ (T x) x =
      ∑ i, hT.eigenvalues hn i * @inner ℝ E _ (hT.eigenvectorBasis hn i) x ^ 2 := by
  rw [← (hT.eigenvectorBasis hn).sum_inner_mul_inner (T x) x]
  refine Finset.sum_congr rfl fun i _ => ?_
  have hv : T (hT.eigenvectorBasis hn i) = hT.eigenvalues hn i • hT.eigenvectorBasis hn i :=
    hT.apply_eigenvectorBasis hn i
  rw [hT x, hv, real_inner_smul_right, real_inner_comm x]
  ring

/-- An eigenvector's Rayleigh quotient is its eigenvalue: `⟪T vₖ, vₖ⟫ = λₖ`. -/
lemma inner_apply_eigenvectorBasis_self (hn : Module.finrank ℝ E = n) {T : E →ₗ[ℝ] E}
    (hT : T.IsSymmetric) (k : Fin n) :
    @inner ℝ E _ (T (hT.eigenvectorBasis hn k)) (hT.eigenvectorBasis hn k) =
      hT.eigenvalues hn k := by
  have hv : T (hT.eigenvectorBasis hn k) = hT.eigenvalues hn k • hT.eigenvectorBasis hn k :=
    hT.apply_eigenvectorBasis hn k
  rw [hv, real_inner_smul_left, real_inner_self_eq_norm_sq,
    (hT.eigenvectorBasis hn).orthonormal.1 k, one_pow, mul_one]

/-- The energy an `r`-frame captures, `Σ_j ⟪T b_j, b_j⟫ = Σᵢ cᵢ λᵢ` with the weights
`cᵢ = Σ_j ⟪vᵢ, b_j⟫²`. -/
lemma frame_energy_eq (hn : Module.finrank ℝ E = n) {T : E →ₗ[ℝ] E} (hT : T.IsSymmetric)
    {r : ℕ} (b : Fin r → E) :
    ∑ j, @inner ℝ E _ (T (b j)) (b j) =
      ∑ i, (∑ j, @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2) * hT.eigenvalues hn i := by
  calc ∑ j, @inner ℝ E _ (T (b j)) (b j)
      = ∑ j, ∑ i, hT.eigenvalues hn i * @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2 :=
        Finset.sum_congr rfl fun j _ => inner_apply_self_eq_sum hn hT (b j)
    _ = ∑ i, ∑ j, hT.eigenvalues hn i * @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2 :=
        Finset.sum_comm
    _ = ∑ i, (∑ j, @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2) * hT.eigenvalues hn i :=
        Finset.sum_congr rfl fun i _ => by
          rw [Finset.sum_mul]
          exact Finset.sum_congr rfl fun j _ => mul_comm _ _

/-- Bessel: each weight `cᵢ = Σ_j ⟪vᵢ, b_j⟫²` of an orthonormal frame is at most `1`. -/
lemma frame_weight_le_one (hn : Module.finrank ℝ E = n) {T : E →ₗ[ℝ] E} (hT : T.IsSymmetric)
    {r : ℕ} {b : Fin r → E} (hb : Orthonormal ℝ b) (i : Fin n) :
    ∑ j, @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2 ≤ 1 := by
  have h := hb.sum_inner_products_le (hT.eigenvectorBasis hn i) (s := Finset.univ)
  rw [(hT.eigenvectorBasis hn).orthonormal.1 i, one_pow] at h
  calc ∑ j, @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2
      = ∑ j, ‖@inner ℝ E _ (b j) (hT.eigenvectorBasis hn i)‖ ^ 2 :=
        Finset.sum_congr rfl fun j _ => by rw [Real.norm_eq_abs, sq_abs, real_inner_comm]
    _ ≤ 1 := h

/-- Parseval: the weights of an orthonormal `r`-frame sum to `r`. -/
lemma frame_weight_sum (hn : Module.finrank ℝ E = n) {T : E →ₗ[ℝ] E} (hT : T.IsSymmetric)
    {r : ℕ} {b : Fin r → E} (hb : Orthonormal ℝ b) :
    ∑ i, ∑ j, @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2 = r := by
  have hj : ∀ j, ∑ i, @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2 = 1 := fun j => by
    have h := (hT.eigenvectorBasis hn).sum_inner_mul_inner (b j) (b j)
    rw [real_inner_self_eq_norm_sq, hb.1 j, one_pow] at h
    rw [← h]
    exact Finset.sum_congr rfl fun i _ => by
      rw [sq, real_inner_comm (hT.eigenvectorBasis hn i) (b j)]
  rw [Finset.sum_comm, Finset.sum_congr rfl fun j _ => hj j]
  simp

end KyFan

/-- Ky Fan's maximum principle: an orthonormal `r`-frame captures at most the sum of the `r`
largest eigenvalues of a symmetric map, and the top eigenvectors attain it. -/
theorem svd_topk_maximizes_gammaR {E : Type*} [NormedAddCommGroup E] [InnerProductSpace ℝ E]
    [FiniteDimensional ℝ E] {n : ℕ} (hn : Module.finrank ℝ E = n) (T : E →ₗ[ℝ] E)
    (hT : T.IsSymmetric) {r : ℕ} (hr : r ≤ n) (b : Fin r → E) (hb : Orthonormal ℝ b) :
    ∑ j, @inner ℝ E _ (T (b j)) (b j) ≤ ∑ j : Fin r, hT.eigenvalues hn (Fin.castLE hr j) ∧
      ∑ j : Fin r, @inner ℝ E _ (T (hT.eigenvectorBasis hn (Fin.castLE hr j)))
          (hT.eigenvectorBasis hn (Fin.castLE hr j)) =
        ∑ j : Fin r, hT.eigenvalues hn (Fin.castLE hr j) := by
  refine ⟨?_, Finset.sum_congr rfl fun j _ => inner_apply_eigenvectorBasis_self hn hT _⟩
  rw [frame_energy_eq hn hT b, ← kf_sum_filter_lt_eq_sum_castLE hr (hT.eigenvalues hn)]
  exact top_k_sorted_optimal (hT.eigenvalues hn)
    (fun i => ∑ j, @inner ℝ E _ (hT.eigenvectorBasis hn i) (b j) ^ 2)
    (hT.eigenvalues_antitone hn) r hr (fun i => Finset.sum_nonneg fun j _ => sq_nonneg _)
    (frame_weight_le_one hn hT hb) (frame_weight_sum hn hT hb)

/-! ### Frames of plain vectors -/

/-- The Gram matrix `EᵀE` of the rows `e_t`. -/
def gram {m : ℕ} (e : Fin m → Fin d → ℝ) : Matrix (Fin d) (Fin d) ℝ :=
  fun i j => ∑ t, e t i * e t j

/-- `b` is an orthonormal family for the dot product. -/
def IsOrthonormalFrame {r : ℕ} (b : Fin r → Fin d → ℝ) : Prop :=
  ∀ j j', dot (b j) (b j') = if j = j' then 1 else 0

/-- Orthogonal projection onto the span of an orthonormal frame, `P x = Σ_j ⟪x, b_j⟫ b_j`. -/
def frameProj {r : ℕ} (b : Fin r → Fin d → ℝ) (x : Fin d → ℝ) : Fin d → ℝ :=
  ∑ j, dot x (b j) • b j

section Frames

/-- The dot product is symmetric. -/
lemma kf_dot_comm (a b : Fin d → ℝ) : dot a b = dot b a :=
  Finset.sum_congr rfl fun i _ => mul_comm _ _

/-- `sqnorm x = ⟪x, x⟫`. -/
lemma kf_sqnorm_eq_dot (x : Fin d → ℝ) : sqnorm x = dot x x :=
  Finset.sum_congr rfl fun i _ => sq (x i)

/-- Expanding a square: `‖x - y‖² = ‖x‖² - 2⟪x, y⟫ + ‖y‖²`. -/
lemma kf_sqnorm_sub (x y : Fin d → ℝ) : sqnorm (x - y) = sqnorm x - 2 * dot x y + sqnorm y := by
  have h : ∀ i, (x - y) i ^ 2 = x i ^ 2 - 2 * (x i * y i) + y i ^ 2 := fun i => by
    simp only [Pi.sub_apply]
    ring
  unfold sqnorm dot
  rw [Finset.sum_congr rfl fun i _ => h i, Finset.sum_add_distrib, Finset.sum_sub_distrib,
    Finset.mul_sum]

/-- The dot product is linear in a combination of frame vectors:
`⟪y, Σ_j c_j b_j⟫ = Σ_j c_j ⟪y, b_j⟫`. -/
lemma kf_dot_sum_smul {r : ℕ} (y : Fin d → ℝ) (c : Fin r → ℝ) (b : Fin r → Fin d → ℝ) :
    dot y (∑ j, c j • b j) = ∑ j, c j * dot y (b j) := by
  unfold dot
  simp only [Finset.sum_apply, Pi.smul_apply, smul_eq_mul, Finset.mul_sum]
  rw [Finset.sum_comm]
  exact Finset.sum_congr rfl fun _ _ => Finset.sum_congr rfl fun _ _ => by ring

/-- A frame vector sees the projection as it sees the vector: `⟪b_j, P x⟫ = ⟪x, b_j⟫`. -/
lemma dot_frame_frameProj {r : ℕ} {b : Fin r → Fin d → ℝ} (hb : IsOrthonormalFrame b)
    (x : Fin d → ℝ) (j : Fin r) : dot (b j) (frameProj b x) = dot x (b j) := by
  unfold frameProj
  rw [kf_dot_sum_smul]
  first
  | (simp only [hb j, mul_ite, mul_one, mul_zero, Finset.sum_ite_eq, Finset.mem_univ, if_true];
      done)
  | simp [hb j]
  | simp [hb j, mul_ite]

/-- The residual of one row: `‖x - P x‖² = ‖x‖² - Σ_j ⟪x, b_j⟫²`. -/
lemma sqnorm_sub_frameProj {r : ℕ} {b : Fin r → Fin d → ℝ} (hb : IsOrthonormalFrame b)
    (x : Fin d → ℝ) : sqnorm (x - frameProj b x) = sqnorm x - ∑ j, dot x (b j) ^ 2 := by
  have h1 : dot x (frameProj b x) = ∑ j, dot x (b j) ^ 2 :=
    (kf_dot_sum_smul x (fun j => dot x (b j)) b).trans
      (Finset.sum_congr rfl fun j _ => (sq _).symm)
  have h2 : sqnorm (frameProj b x) = ∑ j, dot x (b j) ^ 2 := by
    rw [kf_sqnorm_eq_dot]
    refine (kf_dot_sum_smul (frameProj b x) (fun j => dot x (b j)) b).trans
      (Finset.sum_congr rfl fun j _ => ?_)
    show dot x (b j) * dot (frameProj b x) (b j) = dot x (b j) ^ 2
    rw [kf_dot_comm (frameProj b x) (b j), dot_frame_frameProj hb x j, sq]
  rw [kf_sqnorm_sub, h1, h2]
  ring

/-- The quadratic form of the Gram matrix: `⟪EᵀE y, y⟫ = Σ_t ⟪e_t, y⟫²`. -/
lemma dot_gram_mulVec {m : ℕ} (e : Fin m → Fin d → ℝ) (y : Fin d → ℝ) :
    dot (gram e *ᵥ y) y = ∑ t, dot (e t) y ^ 2 := by
  have hL : dot (gram e *ᵥ y) y = ∑ i, ∑ k, ∑ t, e t i * e t k * y k * y i := by
    unfold dot
    refine Finset.sum_congr rfl fun i _ => ?_
    have hmv : (gram e *ᵥ y) i = ∑ k, (∑ t, e t i * e t k) * y k := rfl
    rw [hmv, Finset.sum_mul]
    refine Finset.sum_congr rfl fun k _ => ?_
    rw [Finset.sum_mul, Finset.sum_mul]
  have hR : ∀ t, dot (e t) y ^ 2 = ∑ i, ∑ k, e t i * e t k * y k * y i := fun t => by
    rw [sq]
    unfold dot
    rw [Finset.sum_mul]
    refine Finset.sum_congr rfl fun i _ => ?_
    rw [Finset.mul_sum]
    exact Finset.sum_congr rfl fun k _ => by ring
  rw [hL, Finset.sum_congr rfl fun t _ => hR t]
  calc ∑ i, ∑ k, ∑ t, e t i * e t k * y k * y i
      = ∑ i, ∑ t, ∑ k, e t i * e t k * y k * y i :=
        Finset.sum_congr rfl fun i _ => Finset.sum_comm
    _ = ∑ t, ∑ i, ∑ k, e t i * e t k * y k * y i := Finset.sum_comm

/-- Restricted Eckart–Young, the identity: the residual energy of projecting the rows onto an
orthonormal frame is `tr(EᵀE) - Σ_j ⟪EᵀE b_j, b_j⟫`. -/
lemma residual_energy_eq {m r : ℕ} (e : Fin m → Fin d → ℝ) {b : Fin r → Fin d → ℝ}
    (hb : IsOrthonormalFrame b) :
    ∑ t, sqnorm (e t - frameProj b (e t)) =
      ∑ t, sqnorm (e t) - ∑ j, dot (gram e *ᵥ b j) (b j) := by
  have key : ∑ j, dot (gram e *ᵥ b j) (b j) = ∑ t, ∑ j, dot (e t) (b j) ^ 2 := by
    rw [Finset.sum_congr rfl fun j _ => dot_gram_mulVec e (b j)]
    exact Finset.sum_comm
  rw [Finset.sum_congr rfl fun t _ => sqnorm_sub_frameProj hb (e t), Finset.sum_sub_distrib, key]

/-- The total energy is the sum of all eigenvalues: `Σ_t ‖e_t‖² = tr(EᵀE) = Σᵢ λᵢ`. -/
lemma sum_sqnorm_eq_sum_eigenvalues₀ {m : ℕ} (e : Fin m → Fin d → ℝ)
    (hA : (gram e).IsHermitian) : ∑ t, sqnorm (e t) = ∑ i, hA.eigenvalues₀ i := by
  have htr : ∑ t, sqnorm (e t) = (gram e).trace := by
    show ∑ t, ∑ i, e t i ^ 2 = ∑ i, ∑ t, e t i * e t i
    rw [Finset.sum_comm]
    exact Finset.sum_congr rfl fun _ _ => Finset.sum_congr rfl fun _ _ => sq _
  rw [htr, hA.trace_eq_sum_eigenvalues]
  -- `hA.eigenvalues i` is by definition `hA.eigenvalues₀` at the reindexed `i`, and the
  -- coercion `ℝ → ℝ` of `RCLike` is the identity
  first
  | exact Equiv.sum_comp (Fintype.equivOfCardEq (Fintype.card_fin _)).symm hA.eigenvalues₀
  | (simp only [RCLike.ofReal_real_eq_id, id_eq];
      exact Equiv.sum_comp (Fintype.equivOfCardEq (Fintype.card_fin _)).symm hA.eigenvalues₀)

/-- Splitting a sum at `r`: the tail `Σ_{i ≥ r} fᵢ` plus the head `Σ_{j < r} f_j` is the total. -/
lemma kf_sum_tail_add_head {n r : ℕ} (hr : r ≤ n) (f : Fin n → ℝ) :
    (∑ i : Fin n, if r ≤ (i : ℕ) then f i else 0) + ∑ j : Fin r, f (Fin.castLE hr j) =
      ∑ i, f i := by
  rw [← kf_sum_filter_lt_eq_sum_castLE hr f, Finset.sum_filter, ← Finset.sum_add_distrib]
  refine Finset.sum_congr rfl fun i _ => ?_
  by_cases h : r ≤ (i : ℕ)
  · rw [if_pos h, if_neg (not_lt.2 h), add_zero]
  · rw [if_neg h, if_pos (not_le.1 h), zero_add]

end Frames

/-! ### The bridge to `EuclideanSpace ℝ (Fin d)` -/

section Euclid

/-- On `ℝ` the inner product is multiplication. -/
lemma kf_inner_real_eq_mul (a b : ℝ) : @inner ℝ ℝ _ a b = a * b := by
  first
  | (simp [RCLike.inner_apply, mul_comm]; done)
  | (rw [(show @inner ℝ ℝ _ a b = @inner ℝ ℝ _ (a • (1 : ℝ)) (b • (1 : ℝ)) by
        simp only [smul_eq_mul, mul_one]), real_inner_smul_left, real_inner_smul_right,
      real_inner_self_eq_norm_sq, norm_one, one_pow, mul_one])

/-- The Euclidean inner product of two plain vectors is their dot product. -/
lemma kf_inner_toLp (x y : Fin d → ℝ) :
    @inner ℝ (EuclideanSpace ℝ (Fin d)) _ (WithLp.toLp 2 x) (WithLp.toLp 2 y) = dot x y := by
  first
  | (rw [PiLp.inner_apply]; exact Finset.sum_congr rfl fun i _ => kf_inner_real_eq_mul _ _)
  | exact Finset.sum_congr rfl fun i _ => kf_inner_real_eq_mul _ _

/-- `⟪A x, y⟫` on `EuclideanSpace` is `⟪A *ᵥ x, y⟫` on plain vectors. -/
lemma inner_toEuclideanLin_toLp (A : Matrix (Fin d) (Fin d) ℝ) (x y : Fin d → ℝ) :
    @inner ℝ (EuclideanSpace ℝ (Fin d)) _ (Matrix.toEuclideanLin A (WithLp.toLp 2 x))
      (WithLp.toLp 2 y) = dot (A *ᵥ x) y := by
  have h : Matrix.toEuclideanLin A (WithLp.toLp 2 x) =
      (WithLp.toLp 2 (A *ᵥ x) : EuclideanSpace ℝ (Fin d)) := by
    first
    | rfl
    | simp [Matrix.toEuclideanLin_apply]
    | simp [Matrix.toLpLin_apply]
  rw [h, kf_inner_toLp]

/-- A dot-product orthonormal frame is an orthonormal family in `EuclideanSpace ℝ (Fin d)`. -/
lemma orthonormal_toLp {r : ℕ} {b : Fin r → Fin d → ℝ} (hb : IsOrthonormalFrame b) :
    Orthonormal ℝ (fun j => (WithLp.toLp 2 (b j) : EuclideanSpace ℝ (Fin d))) :=
  orthonormal_iff_ite.2 fun i j => (kf_inner_toLp (b i) (b j)).trans (hb i j)

/-- The top-`r` eigenvectors of a symmetric map on `EuclideanSpace ℝ (Fin d)`, as plain vectors. -/
def eigenFrame {T : EuclideanSpace ℝ (Fin d) →ₗ[ℝ] EuclideanSpace ℝ (Fin d)}
    (hT : T.IsSymmetric) {n : ℕ} (hn : Module.finrank ℝ (EuclideanSpace ℝ (Fin d)) = n)
    {r : ℕ} (hr : r ≤ n) : Fin r → Fin d → ℝ :=
  fun j => WithLp.ofLp (hT.eigenvectorBasis hn (Fin.castLE hr j))

/-- The top-`r` eigenvectors form a dot-product orthonormal frame. -/
lemma isOrthonormalFrame_eigenFrame
    {T : EuclideanSpace ℝ (Fin d) →ₗ[ℝ] EuclideanSpace ℝ (Fin d)} (hT : T.IsSymmetric) {n : ℕ}
    (hn : Module.finrank ℝ (EuclideanSpace ℝ (Fin d)) = n) {r : ℕ} (hr : r ≤ n) :
    IsOrthonormalFrame (eigenFrame hT hn hr) := by
  intro j j'
  have h := orthonormal_iff_ite.1 (hT.eigenvectorBasis hn).orthonormal (Fin.castLE hr j)
    (Fin.castLE hr j')
  have hd : dot (eigenFrame hT hn hr j) (eigenFrame hT hn hr j') =
      @inner ℝ (EuclideanSpace ℝ (Fin d)) _ (hT.eigenvectorBasis hn (Fin.castLE hr j))
        (hT.eigenvectorBasis hn (Fin.castLE hr j')) :=
    (kf_inner_toLp _ _).symm
  rw [hd, h]
  by_cases hjj : j = j'
  · rw [if_pos hjj, if_pos (congrArg (Fin.castLE hr) hjj)]
  · rw [if_neg hjj,
      if_neg fun hc : Fin.castLE hr j = Fin.castLE hr j' => hjj (Fin.ext (congrArg Fin.val hc))]

end Euclid

/-! ### Restricted Eckart–Young -/

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
  have hT : (Matrix.toEuclideanLin (gram e)).IsSymmetric := by
    first
    | exact Matrix.isHermitian_iff_isSymmetric.1 hA
    | exact Matrix.isSymmetric_toEuclideanLin_iff.2 hA
  have hn : Module.finrank ℝ (EuclideanSpace ℝ (Fin d)) = Fintype.card (Fin d) :=
    finrank_euclideanSpace
  have henergy := residual_energy_eq e hb
  have htr := sum_sqnorm_eq_sum_eigenvalues₀ e hA
  refine ⟨henergy, ?_, ?_⟩
  · by_cases hrd : r ≤ d
    · -- Ky Fan bounds the captured energy by the top `r` eigenvalues
      have hr' : r ≤ Fintype.card (Fin d) := by
        rw [Fintype.card_fin]
        exact hrd
      have hkf := (svd_topk_maximizes_gammaR hn (Matrix.toEuclideanLin (gram e)) hT hr'
        (fun j => (WithLp.toLp 2 (b j) : EuclideanSpace ℝ (Fin d))) (orthonormal_toLp hb)).1
      have hhead : ∑ j, dot (gram e *ᵥ b j) (b j) ≤
          ∑ j : Fin r, hA.eigenvalues₀ (Fin.castLE hr' j) :=
        (Finset.sum_congr rfl fun j _ =>
          (inner_toEuclideanLin_toLp (gram e) (b j) (b j)).symm).trans_le hkf
      have hsplit := kf_sum_tail_add_head hr' hA.eigenvalues₀
      rw [henergy]
      linarith
    · -- more frame vectors than dimensions: the tail is empty
      have hzero :
          ∑ i : Fin (Fintype.card (Fin d)), (if r ≤ (i : ℕ) then hA.eigenvalues₀ i else 0) = 0 :=
        Finset.sum_eq_zero fun i _ => if_neg (by
          have h := i.isLt
          rw [Fintype.card_fin] at h
          omega)
      rw [hzero]
      exact Finset.sum_nonneg fun t _ => sqnorm_nonneg _
  · intro hrd
    have hr' : r ≤ Fintype.card (Fin d) := by
      rw [Fintype.card_fin]
      exact hrd
    have hfr := isOrthonormalFrame_eigenFrame hT hn hr'
    refine ⟨eigenFrame hT hn hr', hfr, ?_⟩
    have heq := (svd_topk_maximizes_gammaR hn _ hT hr' _ (orthonormal_toLp hb)).2
    have hhead : ∑ j, dot (gram e *ᵥ eigenFrame hT hn hr' j) (eigenFrame hT hn hr' j) =
        ∑ j : Fin r, hA.eigenvalues₀ (Fin.castLE hr' j) :=
      (Finset.sum_congr rfl fun j _ =>
        (inner_toEuclideanLin_toLp (gram e) (eigenFrame hT hn hr' j)
          (eigenFrame hT hn hr' j)).symm).trans heq
    have hsplit := kf_sum_tail_add_head hr' hA.eigenvalues₀
    rw [residual_energy_eq e hfr]
    linarith

/-- OPEN. The full Eckart–Young theorem: no matrix of rank at most `r` approximates `E` better
in Frobenius norm than the sum of the `d - r` smallest eigenvalues of `EᵀE`. -/
def eckart_young_full : Prop :=
  ∀ (d m r : ℕ) (E X : Matrix (Fin m) (Fin d) ℝ) (hA : (Eᵀ * E).IsHermitian), X.rank ≤ r →
    ∑ i : Fin (Fintype.card (Fin d)), (if r ≤ (i : ℕ) then hA.eigenvalues₀ i else 0) ≤
      ∑ t, ∑ i, (E t i - X t i) ^ 2

end BetaSpec
