"""The spec tooling: the theorem registry, the Lean source audit, the build record, the test
markers, lean.md, and `betaspec check`, which keeps them in agreement."""
