"""betaspec: the spec tooling and user-facing front of the 1-bit key-cache project.

The registry (``registry.yaml``) ties each theorem of SPEC.md to its Lean declaration, its
``impl`` function and its tests; ``betaspec check`` keeps them in agreement and ``betaspec
lean-md`` renders ``lean.md``.
"""

__version__ = "0.1.0"
