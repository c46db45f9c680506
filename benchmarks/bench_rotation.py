"""Benchmark: learn_rotation optimisation steps per second.

Each step evaluates R = exp(A)·R₀ (or the Cayley map), the mean cosSign of the rotated rows,
its gradient through the parametrisation, and one Adam update. Reported for both
parametrisations, full-batch and minibatch, at d = 64 and 256.

    python benchmarks/bench_rotation.py        # about 1 minute on 2 CPU cores

Not part of the test suite; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import time

import torch

from impl.rotation import learn_rotation


def steps_per_second(keys: torch.Tensor, steps: int, **kw) -> float:
    learn_rotation(keys, steps=2, **kw)  # warm-up
    t0 = time.perf_counter()
    learn_rotation(keys, steps=steps, **kw)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rows {args.rows}, float32")
    print(f"{'d':>5} {'param':>7} {'batch':>7} {'steps/s':>9} {'ms/step':>9}")
    for d in args.dims:
        g = torch.Generator().manual_seed(d)
        keys = torch.randn(args.rows, d, generator=g) * torch.rand(d, generator=g) * 3 + 1.0
        for param in ("exp", "cayley"):
            for batch in (None, args.batch):
                sps = steps_per_second(keys, args.steps, lr=1e-2, parametrization=param, batch_size=batch, generator=0)
                label = "all" if batch is None else str(batch)
                print(f"{d:>5} {param:>7} {label:>7} {sps:>9.1f} {1e3 / sps:>9.1f}")


if __name__ == "__main__":
    main()
