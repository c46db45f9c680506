"""Calibration time per layer: the learned rotation (1-bit L1-max objective and the 2-bit distortion
objective) against the data-free SRHT, in one run; scoring benchmarks live in bench_kernels.py.

    python benchmarks/bench_calibration.py            # SmolLM2-like and Gemma-3-like layers
    python benchmarks/bench_calibration.py --quick    # one small layer
"""

from __future__ import annotations

import argparse
import time

import torch

from impl.calibration.fit import fit_codec


def bench_calibration(configs, tokens, steps):
    print(f"calibration of one layer ({tokens} tokens, learned rotation {steps} steps, rank d/8), seconds per layer")
    for name, heads, d in configs:
        keys = torch.randn(heads, tokens, d, generator=torch.Generator().manual_seed(1)) + 1.0
        times = {}
        for label, kw in (("learned b=1", dict(rotation="learned", bits=1, steps=steps)),
                          ("learned b=2", dict(rotation="learned", bits=2, steps=steps)),
                          ("SRHT b=1", dict(rotation="srht", bits=1))):
            t0 = time.perf_counter()
            fit_codec(keys, center=True, rank=d // 8, batch_size=4096, **kw)
            times[label] = time.perf_counter() - t0
        base = times["SRHT b=1"]
        print(f"{name:>12}: H={heads} d={d}: " + ", ".join(f"{k} {v:.2f} s (×{v / base:.0f} SRHT)" for k, v in times.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        bench_calibration([("SmolLM2-like", 3, 64)], tokens=2048, steps=20)
    else:
        bench_calibration([("SmolLM2-like", 3, 64), ("Gemma3-like", 1, 256)], tokens=8192, steps=100)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
