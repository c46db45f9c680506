import Lake
open Lake DSL

/-! The Lean layer of betaspec: proofs of the theorems named in SPEC.md.
Mathlib is pinned to a release tag; `lean-toolchain` is the toolchain that tag ships. -/

package betaspec where
  leanOptions := #[⟨`autoImplicit, false⟩]

require mathlib from git
  "https://github.com/leanprover-community/mathlib4" @ "v4.28.0"

@[default_target]
lean_lib Proofs where
  roots := #[`Proofs]
