#!/usr/bin/env bash
# One prepared check for a lent GPU machine; run from anywhere (it works in the repository root):
#
#   1. what the machine is: GPU, driver, torch, triton, numba;
#   2. the CUDA variants of the property tests: `pytest -m cuda` (every test parametrised by the
#      `device` fixture of tests/conftest.py — the kernel tests of tests/test_kernels.py run the
#      compiled Triton kernels there — derandomised by CI=1);
#   3. the kernel benchmarks on the GPU (benchmarks/bench_kernels.py --device cuda): Triton logits and
#      decode attention against dense fp32/fp16 q·Kᵀ, SDPA and a clone of the fp16 keys.
#
# Robust by design: no downloads (the package need not be installed: the repository root goes on
# PYTHONPATH), models and assets absent is fine (those tests skip), test modules that cannot be
# imported there do not stop the others, each step has its own time limit and the script goes on
# after a failure (its exit status says whether any step failed). Budget: about 5 minutes on an H100
# (tests ≤ 4 min, benchmarks ≤ 2.5 min), well inside 8.
#
#   bash benchmarks/gpu_check.sh                # PYTHON=... to pick the interpreter
#
# The repository's .venv is a CPU build and cannot travel to the GPU machine: there the image's
# python3 (with its CUDA torch) runs, which is why nothing here needs the package installed.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    PYTHON=.venv/bin/python
  else
    PYTHON=python3
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CI=1
unset TRITON_INTERPRET   # compiled Triton kernels on the GPU
"$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || { echo "gpu_check: $PYTHON sees no CUDA device; nothing to check"; exit 1; }
failed=0

echo "== 1. environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: not available"
"$PYTHON" - <<'PY' || failed=1
import importlib, sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device: {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB")
for name in ("triton", "numba", "hypothesis", "pytest", "transformers"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"{name}: not importable ({type(exc).__name__}: {exc})")
from impl.cache.kernels import backend_for
print("kernel backend on cuda:", backend_for("cuda"), "| on cpu:", backend_for("cpu"))
PY

echo
echo "== 2. CUDA variants of the property tests (pytest -m cuda)"
# only the modules with device-parametrised tests (a bare GPU image may lack jsonschema, which the
# study and report tests import); results also go to $OUT when the device tool provides it
DEVICE_TESTS=$(grep -l "def test.*\bdevice\b" tests/test_*.py | tr '\n' ' ')
timeout 240 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider -rfEs --durations=10 \
  ${OUT:+--junitxml="$OUT/cuda-tests.xml"} $DEVICE_TESTS || failed=1

echo
echo "== 3. kernel benchmarks on the GPU"
timeout 150 "$PYTHON" benchmarks/bench_kernels.py --device cuda --contexts 4096 16384 65536 131072 \
  --dims 64 128 256 --bits 1 2 --ranks 0 d/8 --repeat 10 --markdown ${OUT:+| tee "$OUT/bench_kernels.md"} || failed=1

echo
echo "== gpu_check: $([ "$failed" = 0 ] && echo "all steps passed" || echo "a step FAILED (see above)")"
exit "$failed"
