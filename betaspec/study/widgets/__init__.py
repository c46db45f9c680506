"""The eleven widgets of the research write-up, in its order (one module each)."""

from __future__ import annotations

import importlib

from ..widget import Widget

_MODULES = (
    "w01_moment_geometry",
    "w02_isotropic_floor",
    "w03_learned_rotation",
    "w04_centering",
    "w05_last_mile",
    "w06_rank_correction",
    "w07_perplexity_memory",
    "w08_layer_profile",
    "w09_pareto",
    "w10_front_tokens",
    "w11_ffn_weights",
)


def _load() -> list[Widget]:
    out = []
    for name in _MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        out.append(module.WIDGET)
    return out


def __getattr__(name: str):
    # Loaded on first use (PEP 562), so importing one widget module does not import all eleven.
    if name == "WIDGETS":
        value = _load()
        globals()["WIDGETS"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
