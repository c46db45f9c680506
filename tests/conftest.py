"""Shared test configuration: Hypothesis profiles and the `device` fixture.

Without a GPU, ``TRITON_INTERPRET=1`` is set here so the Triton kernels run in Triton's CPU
interpreter (`tests/test_kernels.py` checks them on tiny shapes).

Profiles: ``ci`` (selected when the environment variable ``CI`` is set) is derandomized, runs a
bounded number of examples and has no deadline, so CI is reproducible and never flaky on a slow
machine; ``dev`` (default) explores more examples with fresh randomness each run, and its
dimension strategies also reach the real head dims 64, 128 and 256 (``strategies.dims``).
The choice is ``strategies.PROFILE``, so the strategies and the settings always agree.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run in its CPU interpreter where no GPU is present. `triton.jit` reads this when
    # it decorates, and other packages (transformers) may import triton first: set it before any test.
    os.environ.setdefault("TRITON_INTERPRET", "1")
from hypothesis import HealthCheck, settings
from strategies import PROFILE

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(PROFILE)


@pytest.fixture(scope="session", params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Run a property on CPU, and on CUDA when a GPU is present (skipped cleanly otherwise).

    Session-scoped so Hypothesis' function-scoped-fixture health check does not apply; it only
    returns a device and holds no state."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)
