import Mathlib

/-!
# Name check

Compile on its own (`lake env lean Proofs/NameCheck.lean`); it is not imported by `Proofs.lean`.
One `#check @Name` per Mathlib declaration that the proofs rely on, with the Mathlib file in which
it was seen (stored Mathlib source, read without a compiler). A wrong or renamed name fails here
first.
-/

/-! ## Proofs I -/

-- Mathlib/Algebra/Order/BigOperators/Ring/Finset.lean
#check @Finset.sum_sq_le_sq_sum_of_nonneg
-- Mathlib/Analysis/Real/Sqrt.lean
#check @Real.sqrt_nonneg
#check @Real.sq_sqrt
#check @Real.mul_self_sqrt
#check @Real.sqrt_pos
#check @Real.sqrt_lt_sqrt
#check @Real.lt_sqrt
#check @Real.sqrt_lt'
-- Mathlib/Algebra/Order/GroupWithZero/Unbundled/Basic.lean (the `₀` order lemmas)
#check @div_le_one₀
#check @div_lt_one₀
#check @lt_div_iff₀
#check @div_lt_iff₀
#check @div_le_iff₀
#check @div_le_div_of_nonneg_left
#check @div_le_div_of_nonneg_right
-- Mathlib/Algebra/GroupWithZero/Units/Basic.lean
#check @div_eq_iff
#check @eq_div_iff
#check @div_mul_cancel₀
#check @mul_div_mul_right
-- Mathlib/MeasureTheory/Integral/Gamma.lean
#check @integral_rpow_mul_exp_neg_rpow
-- Mathlib/Analysis/SpecialFunctions/Gamma/Basic.lean
#check @Real.Gamma_one
#check @Real.Gamma_add_one
#check @Real.Gamma_pos_of_pos
-- Mathlib/Analysis/SpecialFunctions/Gamma/BohrMollerup.lean
#check @Real.Gamma_two
-- Mathlib/Analysis/SpecialFunctions/Gaussian/GaussianIntegral.lean
#check @Real.Gamma_one_half_eq
-- Mathlib/Analysis/Real/Pi/Bounds.lean
#check @Real.pi_gt_d4
#check @Real.pi_lt_d4
-- Mathlib/Data/Matrix/Mul.lean
#check @dotProduct
#check @smul_dotProduct
#check @Matrix.mul_apply
#check @Matrix.smul_mul
#check @Matrix.mul_smul
#check @Matrix.dotProduct_mulVec
#check @Matrix.mulVec_transpose
#check @Matrix.mulVec_mulVec
#check @Matrix.one_mulVec
#check @Matrix.smul_mulVec
#check @Matrix.sub_mulVec
-- Mathlib/Data/Matrix/Defs.lean (transpose lemmas)
#check @Matrix.transpose_sub
#check @Matrix.transpose_smul
-- Mathlib/Algebra/BigOperators/Ring/Finset.lean
#check @Fintype.prod_sum
#check @Finset.mul_sum
#check @Finset.sum_mul
-- Mathlib/Algebra/BigOperators/Group/Finset/Basic.lean
#check @Finset.sum_congr
#check @Finset.sum_const
#check @Finset.prod_const
#check @Finset.prod_mul_distrib
#check @Finset.sum_add_sum_compl
-- Mathlib/Analysis/Calculus/Deriv/Mul.lean
#check @HasDerivAt.mul_const
#check @HasDerivAt.fun_div
-- Mathlib/Analysis/Calculus/Deriv/Add.lean
#check @HasDerivAt.add
#check @HasDerivAt.const_add
-- Mathlib/Analysis/Calculus/Deriv/Pow.lean
#check @hasDerivAt_pow
-- Mathlib/Analysis/Calculus/Deriv/Basic.lean
#check @hasDerivAt_id'
#check @HasDerivAt.congr_deriv
#check @HasDerivAt.congr_of_eventuallyEq
-- Mathlib/Topology/MetricSpace/Pseudo/Basic.lean (Metric namespace)
#check @Metric.eventually_nhds_iff

/-! ## Proofs II

`IsotropicLimit.lean` and `KyFan.lean`. Names used only inside a `first | … | …` fallback are
not listed (`memLp_id_gaussianReal'`, `RCLike.inner_apply`,
`Matrix.toEuclideanLin_apply`, `Matrix.toLpLin_apply`, `Matrix.isSymmetric_toEuclideanLin_iff`);
the primary route does not need them. -/

-- Mathlib/Probability/StrongLaw.lean
#check @ProbabilityTheory.strong_law_ae_real
-- Mathlib/Probability/Independence/Basic.lean
#check @ProbabilityTheory.IndepFun.comp
-- Mathlib/Probability/IdentDistrib.lean
#check @ProbabilityTheory.IdentDistrib
#check @ProbabilityTheory.IdentDistrib.comp
-- Mathlib/Probability/Moments/Variance.lean
#check @ProbabilityTheory.variance_nonneg
#check @ProbabilityTheory.variance_eq_sub
#check @ProbabilityTheory.variance_of_integral_eq_zero
-- Mathlib/Probability/Distributions/Gaussian/Real.lean
#check @ProbabilityTheory.gaussianReal
#check @ProbabilityTheory.gaussianPDFReal
#check @ProbabilityTheory.integral_gaussianReal_eq_integral_smul
#check @ProbabilityTheory.integral_id_gaussianReal
#check @ProbabilityTheory.variance_id_gaussianReal
#check @ProbabilityTheory.memLp_id_gaussianReal
-- Mathlib/MeasureTheory/Function/LpOrder.lean
#check @MeasureTheory.MemLp.abs
-- Mathlib/MeasureTheory/Function/LpSeminorm/Basic.lean
#check @MeasureTheory.MemLp.comp_of_map
-- Mathlib/MeasureTheory/Function/L1Space/Integrable.lean
#check @MeasureTheory.MemLp.integrable
#check @MeasureTheory.Integrable.abs
-- Mathlib/MeasureTheory/Function/L2Space.lean
#check @MeasureTheory.MemLp.integrable_sq
-- Mathlib/MeasureTheory/Integral/Bochner/Basic.lean
#check @MeasureTheory.integral_congr_ae
#check @MeasureTheory.integral_map
#check @MeasureTheory.integral_const_mul
#check @MeasureTheory.integral_nonneg
-- Mathlib/MeasureTheory/OuterMeasure/AE.lean
#check @MeasureTheory.ae_of_all
-- Mathlib/MeasureTheory/Measure/Lebesgue/Integral.lean
#check @integral_comp_abs
-- Mathlib/MeasureTheory/Integral/Gamma.lean
#check @integral_rpow_mul_exp_neg_mul_rpow
-- Mathlib/MeasureTheory/Function/StronglyMeasurable/AEStronglyMeasurable.lean
#check @Continuous.aestronglyMeasurable
-- Mathlib/MeasureTheory/Constructions/BorelSpace/Basic.lean
#check @Continuous.measurable
-- Mathlib/MeasureTheory/MeasurableSpace/Defs.lean
#check @measurable_id'
-- Mathlib/MeasureTheory/Measure/AEMeasurable.lean
#check @Measurable.aemeasurable
-- Mathlib/Topology/Algebra/Order/Group.lean
#check @continuous_abs
-- Mathlib/Topology/Algebra/Monoid.lean
#check @continuous_pow
-- Mathlib/Topology/Algebra/GroupWithZero.lean
#check @Filter.Tendsto.div
-- Mathlib/Order/Filter/Tendsto.lean
#check @Filter.Tendsto.congr
#check @Filter.Tendsto.comp
-- Mathlib/Order/Filter/AtTopBot/Basic.lean
#check @Filter.tendsto_add_atTop_nat
-- Mathlib/Analysis/Real/Sqrt.lean
#check @Filter.Tendsto.sqrt
#check @Real.sqrt_mul
#check @Real.mul_self_sqrt
#check @Real.sqrt_pos
#check @Real.sq_sqrt
#check @Real.sqrt_sq
#check @Real.sqrt_one
-- Mathlib/Analysis/SpecialFunctions/Pow/Real.lean
#check @Real.rpow_one
#check @Real.rpow_two
#check @Real.rpow_neg_one
-- Mathlib/Analysis/SpecialFunctions/Gamma/Basic.lean
#check @Real.Gamma_one
-- Mathlib/Analysis/SpecialFunctions/Trigonometric/Basic.lean
#check @Real.pi_ne_zero
-- Mathlib/Algebra/BigOperators/Fin.lean
#check @Fin.sum_univ_eq_sum_range
-- Mathlib/Algebra/GroupWithZero/Units/Basic.lean
#check @mul_div_mul_left
#check @div_eq_div_iff
-- Mathlib/Algebra/Group/Basic.lean
#check @div_div
#check @inv_inv
-- Mathlib/Algebra/GroupWithZero/Basic.lean
#check @div_pow
-- Mathlib/Algebra/Order/Ring/Abs.lean
#check @sq_abs
-- Mathlib/Algebra/Order/Monoid/Canonical/Defs.lean
#check @pos_iff_ne_zero
-- Mathlib/Data/NNReal/Defs.lean
#check @NNReal.coe_one
-- Mathlib/Order/Basic.lean
#check @LE.le.trans_eq
#check @Eq.trans_le
-- Mathlib/Analysis/InnerProductSpace/Spectrum.lean
#check @LinearMap.IsSymmetric.eigenvalues
#check @LinearMap.IsSymmetric.eigenvectorBasis
#check @LinearMap.IsSymmetric.apply_eigenvectorBasis
#check @LinearMap.IsSymmetric.eigenvalues_antitone
-- Mathlib/Analysis/InnerProductSpace/PiL2.lean
#check @OrthonormalBasis.sum_inner_mul_inner
#check @OrthonormalBasis.orthonormal
#check @PiLp.inner_apply
#check @finrank_euclideanSpace
#check @Matrix.toEuclideanLin
-- Mathlib/Analysis/Normed/Lp/WithLp.lean
#check @WithLp.toLp
#check @WithLp.ofLp
-- Mathlib/Analysis/InnerProductSpace/Basic.lean
#check @real_inner_smul_left
#check @real_inner_smul_right
#check @real_inner_comm
#check @real_inner_self_eq_norm_sq
-- Mathlib/Analysis/InnerProductSpace/Orthonormal.lean
#check @orthonormal_iff_ite
#check @Orthonormal.sum_inner_products_le
-- Mathlib/Analysis/Normed/Group/Basic.lean (`Real.norm_eq_abs`)
#check @Real.norm_eq_abs
-- Mathlib/LinearAlgebra/Matrix/Spectrum.lean
#check @Matrix.IsHermitian.eigenvalues₀
#check @Matrix.IsHermitian.eigenvalues
#check @Matrix.IsHermitian.trace_eq_sum_eigenvalues
#check @Matrix.isHermitian_iff_isSymmetric
-- Mathlib/LinearAlgebra/Matrix/Trace.lean
#check @Matrix.trace
-- Mathlib/Data/Matrix/Mul.lean
#check @Matrix.mulVec
-- Mathlib/Algebra/BigOperators/Group/Finset/Defs.lean and …/Basic.lean
#check @Finset.sum_bij
#check @Finset.sum_comm
#check @Finset.sum_filter
#check @Finset.sum_ite_eq
#check @Finset.sum_add_distrib
#check @Finset.sum_sub_distrib
#check @Finset.sum_eq_zero
#check @Equiv.sum_comp
-- Mathlib/Algebra/BigOperators/Pi.lean
#check @Finset.sum_apply
-- Mathlib/Algebra/Order/BigOperators/Group/Finset.lean
#check @Finset.sum_nonneg
-- Mathlib/Data/Finset/Filter.lean
#check @Finset.mem_filter
-- Mathlib/Data/Fintype/EquivFin.lean
#check @Fintype.equivOfCardEq
-- Mathlib/Data/Fintype/Card.lean
#check @Fintype.card_fin

/-! ## Proofs I (continued)

Names below marked `seen` were read in the stored Mathlib source (declaration or a use inside
Mathlib); the rest are long-stable core/Mathlib names whose file is given from memory and which
were not re-read individually. -/

-- Mathlib/Algebra/Order/GroupWithZero/Unbundled/Basic.lean (seen)
#check @div_pos
-- Mathlib/Algebra/GroupWithZero/Defs.lean (seen)
#check @mul_inv_cancel₀
-- Mathlib/Algebra/GroupWithZero/Units/Basic.lean (seen)
#check @div_eq_one_iff_eq
-- Mathlib/Analysis/Real/Sqrt.lean (seen, used there)
#check @one_div_div
#check @Nat.cast_nonneg
-- Mathlib/Algebra/BigOperators/Group/Finset/Basic.lean (seen; `sum_*` are the `to_additive`
-- forms of the `prod_*` declarations read there)
#check @Finset.sum_ite_mem_eq
#check @Finset.prod_congr
#check @Finset.sum_sub_distrib
#check @Finset.sum_add_distrib
-- Mathlib/Algebra/BigOperators/Group/Finset/Defs.lean or Basic.lean (used in Mathlib files read)
#check @Finset.sum_comm
#check @Finset.sum_eq_zero
#check @Finset.sum_apply
#check @Finset.prod_eq_zero
-- Mathlib/Algebra/Order/BigOperators/Group/Finset.lean (seen)
#check @Finset.sum_nonpos
#check @Finset.sum_nonneg
#check @Finset.sum_le_sum
#check @Finset.single_le_sum
#check @Finset.sum_eq_zero_iff_of_nonneg
-- Mathlib/Algebra/BigOperators/Fin.lean (seen)
#check @Fin.prod_univ_succ
-- Mathlib/Topology/Algebra/InfiniteSum/... uses `Fintype.prod_bool` (seen); additive form
#check @Fintype.sum_bool
-- Mathlib/Data/Fintype/Card.lean (used as `s.card_le_univ`, seen downstream)
#check @Finset.card_le_univ
-- Mathlib/Order/Fin/Basic.lean / Mathlib/Logic/Embedding (seen `Fin.valEmbedding`)
#check @Fin.valEmbedding
-- Mathlib/Data/Matrix/Mul.lean (seen)
#check @sub_dotProduct
#check @dotProduct_sub
#check @dotProduct_comm
#check @Matrix.vecMulVec
#check @Matrix.vecMulVec_apply
#check @Matrix.mulVec
-- Mathlib/Data/Matrix/Diagonal.lean or Basic.lean (seen)
#check @Matrix.one_apply
#check @Matrix.transpose_one
-- Mathlib/Data/Matrix/Defs.lean (not re-read)
#check @Matrix.smul_apply
#check @Matrix.transpose_apply
-- Mathlib/Logic/Function/Basic.lean (used in Mathlib/Data/Matrix/Mul.lean, seen)
#check @Function.ne_iff
-- Mathlib/Analysis/SpecialFunctions/Exp.lean / Exponential (not re-read)
#check @Real.exp_add
#check @Real.exp_pos
-- Mathlib/Analysis/Real/Pi/Bounds.lean, Mathlib/Analysis/SpecialFunctions/Trigonometric (not re-read)
#check @Real.pi_pos
-- Mathlib/Topology/MetricSpace/Pseudo/Defs.lean (not re-read)
#check @Real.dist_eq
-- Mathlib/Data/Finset/Basic.lean, Mathlib/Data/Finset/Card.lean, Mathlib/Data/Finset/Range
-- (not re-read)
#check @Finset.mem_univ
#check @Finset.mem_compl
#check @Finset.mem_filter
#check @Finset.mem_map
#check @Finset.mem_range
#check @Finset.card_map
#check @Finset.card_range
#check @Finset.card_univ
#check @Fintype.card_fin
-- core / Mathlib/Data/Fin/Tuple/Basic.lean (not re-read)
#check @Fin.cons_zero
#check @Fin.cons_succ
#check @Fin.elim0
#check @Nat.eq_zero_or_pos
#check @Bool.and_comm
-- Mathlib/Data/Nat/Cast/Order/*.lean (not re-read)
#check @Nat.cast_pos
#check @Nat.cast_ne_zero
-- Mathlib/Algebra/Group/Basic.lean, Mathlib/Algebra/Ring/*, Mathlib/Algebra/Order/*
-- (standard algebra and order lemmas; not re-read)
#check @nsmul_eq_mul
#check @smul_eq_mul
#check @smul_zero
#check @smul_smul
#check @smul_mul_assoc
#check @mul_smul_comm
#check @add_smul
#check @one_smul
#check @Pi.add_apply
#check @Pi.sub_apply
#check @Pi.smul_apply
#check @Pi.zero_apply
#check @mul_neg_one
#check @mul_one
#check @one_mul
#check @mul_zero
#check @zero_mul
#check @mul_comm
#check @mul_assoc
#check @mul_add
#check @sub_mul
#check @mul_sub
#check @two_mul
#check @add_comm
#check @sub_self
#check @sub_zero
#check @sq
#check @sq_abs
#check @sq_nonneg
#check @pow_ne_zero
#check @pow_pos
#check @one_pow
#check @div_pow
#check @mul_pow
#check @inv_pow
#check @mul_div_assoc
#check @two_ne_zero
#check @two_pos
#check @one_pos
#check @mul_pos
#check @mul_nonneg
#check @sub_nonneg
#check @mul_le_mul_of_nonneg_left
#check @le_antisymm
#check @lt_of_le_of_ne
#check @lt_of_lt_of_le
#check @max_le
#check @not_le
#check @if_pos
#check @if_neg
#check @abs_nonneg
#check @abs_pos
#check @abs_zero
#check @abs_mul
#check @abs_lt
#check @abs_le
#check @abs_of_pos
#check @abs_of_nonneg
#check @abs_of_neg
-- Mathlib/Algebra/GroupWithZero/Basic.lean (seen)
#check @pow_eq_zero_iff

/-! ## Review (names introduced by the compile review)

`RCLike.ofReal_real_eq_id` is read in the stored source (`@[simp] theorem ofReal_real_eq_id :
@ofReal ℝ _ = id := rfl`); `id_eq` is core. Both appear only in a `first | … | …` fallback of
`sum_sqnorm_eq_sum_eigenvalues₀`. -/

-- Mathlib/Analysis/RCLike/Basic.lean
#check @RCLike.ofReal_real_eq_id
-- core (Init/Core.lean)
#check @id_eq

/-! ## Section 7 (`MultiLevel.lean`)

Names used by `Proofs/MultiLevel.lean`, each read in the stored Mathlib source (the file named
above it) unless marked otherwise. `Fintype.sum_prod_type` takes `f` explicitly in recent trees
and implicitly in older ones; the proof passes it as the named argument `(f := …)`, which works
either way. Names already listed above (`Finset.sum_congr`, `Finset.mul_sum`, `Equiv.sum_comp`,
`Matrix.dotProduct_mulVec`, `Matrix.mulVec_transpose`, `MeasureTheory.integral_const_mul`,
`ProbabilityTheory.gaussianReal`, `NNReal.coe_one`, `div_mul_cancel₀`, `div_eq_iff`,
`mul_div_mul_left`, `abs_le`, `abs_mul`, `abs_of_pos`, `Real.exp_add`, `Real.exp_pos`, …) are
not repeated. -/

-- Mathlib/Algebra/BigOperators/Group/Finset/Basic.lean (`to_additive` of
-- `prod_fiberwise_of_maps_to` and `prod_union`; signatures
-- `{g : ι → κ} (h : ∀ i ∈ s, g i ∈ t) (f : ι → M)` and `(h : Disjoint s₁ s₂)`)
#check @Finset.sum_fiberwise_of_maps_to
#check @Finset.sum_union
-- Mathlib/Data/Finset/Image.lean
#check @Finset.image
#check @Finset.mem_image_of_mem
-- Mathlib/Data/Finset/Filter.lean (not re-read)
#check @Finset.filter
-- Mathlib/Algebra/BigOperators/Field.lean
#check @Finset.sum_div
-- Mathlib/Algebra/Order/Round.lean
#check @round
#check @abs_sub_round
-- Mathlib/Logic/Equiv/Fin/Basic.lean (`toFun x := ⟨x.2 + n * x.1, _⟩`)
#check @finProdFinEquiv
-- Mathlib/Data/Fintype/BigOperators.lean
#check @Fintype.sum_prod_type
-- Mathlib/Data/Matrix/Mul.lean (`x ᵥ* Aᵀ = A *ᵥ x`)
#check @Matrix.vecMul_transpose
-- Mathlib/Algebra/Group/Basic.lean (`a / b * c = a * c / b`)
#check @div_mul_eq_mul_div
-- Mathlib/Algebra/GroupWithZero/Basic.lean (`div_self` seen; `div_zero` not re-read)
#check @div_self
#check @div_zero
-- Mathlib/MeasureTheory/Integral/Bochner/Basic.lean
#check @MeasureTheory.integral_add
#check @MeasureTheory.integral_div
-- Mathlib/MeasureTheory/Function/L1Space/Integrable.lean
#check @MeasureTheory.Integrable.add
#check @MeasureTheory.Integrable.const_mul
-- Mathlib/MeasureTheory/Constructions/Pi.lean (no `SigmaFinite` needed for the definition)
#check @MeasureTheory.Measure.pi
-- Mathlib/Algebra/Notation/Indicator.lean (file listed in the store; declaration not re-read)
#check @Set.indicator
-- Mathlib/Order/Monotone/Defs.lean, Mathlib/MeasureTheory/MeasurableSpace/Defs.lean (not re-read)
#check @StrictMono
#check @Measurable
-- core (Nat.Basic; not re-read)
#check @Nat.add_comm
-- Mathlib/Analysis/Real/Sqrt.lean, Mathlib/Analysis/Real/Pi/Bounds.lean,
-- Mathlib/Analysis/SpecialFunctions/Exp.lean, Mathlib/Data/Matrix/Defs.lean (not re-read)
#check @Real.sqrt
#check @Real.pi
#check @Real.exp
#check @Matrix.transpose
-- core (Init/Prelude.lean, Init/Core.lean)
#check @congrArg
#check @funext
