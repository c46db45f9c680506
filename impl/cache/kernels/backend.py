"""Which implementation computes a kernel call: ``"numba"`` (CPU), ``"triton"`` (CUDA), or the
torch reference (``"torch"``, any device; the tests' oracle).

`backend_for(device)` picks the compiled kernel for the device when its package imports, and the
torch reference otherwise — on CPU after a one-time warning that numba is missing and how to get
it. `use_backend(name)` forces one inside a ``with`` block (tests and benchmarks compare them);
forcing ``"triton"`` on CPU tensors needs ``TRITON_INTERPRET=1`` set before triton is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

import torch

BACKENDS = ("torch", "numba", "triton")

NUMBA_MISSING = ("betaspec: numba is not installed, so scores and decode attention from packed key codes run "
                 "on the torch reference on CPU (correct, but several times slower). Install the compiled "
                 "kernels with `pip install betaspec[kernels]` (or `pip install numba`).")

_forced: str | None = None
_modules: dict[str, ModuleType | None] = {}
_warned = False


def _load(name: str) -> ModuleType | None:
    """The kernel module of backend `name`, or None when its package does not import."""
    if name not in _modules:
        module = {"numba": "impl.cache.kernels.cpu", "triton": "impl.cache.kernels.triton_kernels"}[name]
        try:
            _modules[name] = importlib.import_module(module)
        except ImportError:
            _modules[name] = None
    return _modules[name]


def cpu_kernels() -> ModuleType | None:
    """The numba kernels (`impl.cache.kernels.cpu`), or None — with a one-time warning per
    process — when numba is not installed."""
    global _warned
    mod = _load("numba")
    if mod is None and not _warned:
        _warned = True
        warnings.warn(NUMBA_MISSING, RuntimeWarning, stacklevel=3)
    return mod


def gpu_kernels() -> ModuleType | None:
    """The Triton kernels (`impl.cache.kernels.triton_kernels`), or None when triton does not import."""
    return _load("triton")


def triton_interpreted() -> bool:
    """Whether ``TRITON_INTERPRET=1`` is set now (Triton kernels decorated now run in its CPU
    interpreter; the loaded kernels record theirs in `triton_kernels.INTERPRETED`)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def backend_for(device: torch.device | str) -> str:
    """The backend a call on `device` uses: the forced one inside `use_backend`, else numba on CPU
    and triton on CUDA when they import, else "torch"."""
    if _forced is not None:
        return _forced
    dev = torch.device(device)
    if dev.type == "cpu":
        return "numba" if cpu_kernels() is not None else "torch"
    if dev.type == "cuda":
        return "triton" if gpu_kernels() is not None else "torch"
    return "torch"


def kernel_module(backend: str) -> ModuleType:
    """The module of a compiled backend; RuntimeError when its package is missing."""
    mod = _load(backend)
    if mod is None:
        raise RuntimeError(f"backend {backend!r} is not available: its package does not import "
                           f"(`pip install betaspec[kernels]`)")
    return mod


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Force every kernel call inside the block onto backend `name` ("torch", "numba" or "triton");
    RuntimeError when a compiled backend's package is missing."""
    global _forced
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name != "torch":
        kernel_module(name)
    previous, _forced = _forced, name
    try:
        yield name
    finally:
        _forced = previous
