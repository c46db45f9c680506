"""Benchmark: impl.hadamard.fwht against a dense Hadamard matmul and torch.clone.

torch.clone of the same tensor is the memory-bandwidth yardstick: it reads the input once and
writes a fresh output once, which is the least any out-of-place transform must do. The dense
matmul `x @ (2^{−n/2} H_n)` is the obvious O(d²) alternative. All three allocate their output,
so page-fault costs are shared. Timings are the median of interleaved repetitions (the three
candidates alternate, so background load hits them alike); the ratios are computed from one run.

    python benchmarks/bench_fwht.py            # about 1 minute on 2 CPU cores
    python benchmarks/bench_fwht.py --elems 22 --reps 3 --device cuda

Not part of the test suite; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from impl.hadamard import fwht, hadamard_matrix


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, x: torch.Tensor) -> float:
    _sync(x.device)
    t0 = time.perf_counter()
    fn(x)
    _sync(x.device)
    return time.perf_counter() - t0


def bench(d: int, rows: int, reps: int, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    g = torch.Generator().manual_seed(d)
    x = torch.randn(rows, d, generator=g).to(dtype=dtype, device=device)
    n = d.bit_length() - 1
    H = hadamard_matrix(n, dtype=dtype, device=device) * 2.0 ** (-n / 2)
    candidates = {
        "clone": torch.clone,
        "fwht": fwht,
        "dense": lambda t: t @ H,
    }
    # agreement check (not timed): fwht equals the dense product
    ref = x[:64] @ H
    assert torch.allclose(fwht(x[:64]), ref, rtol=0, atol=1e-4 * float(ref.abs().max()) + 1e-6)
    for fn in candidates.values():  # warm-up (allocator, kernels, cached blocks)
        fn(x)
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(reps):
        for k, fn in candidates.items():
            times[k].append(_time(fn, x))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256, 1024])
    ap.add_argument("--elems", type=int, default=25, help="log2 of the elements per size (rows = 2^elems / d)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, dtype {args.dtype}")
    print(
        f"{'d':>6} {'rows':>9} {'clone ms':>9} {'fwht ms':>9} {'dense ms':>9} {'GB/s clone':>10}"
        f" {'fwht/clone':>10} {'dense/fwht':>10}"
    )
    total_rows = 0
    for d in args.dims:
        rows = (1 << args.elems) // d
        total_rows += rows
        t = bench(d, rows, args.reps, device, dtype)
        nbytes = 2 * rows * d * torch.finfo(dtype).bits // 8  # one read + one write
        print(
            f"{d:>6} {rows:>9} {t['clone'] * 1e3:>9.1f} {t['fwht'] * 1e3:>9.1f} {t['dense'] * 1e3:>9.1f}"
            f" {nbytes / t['clone'] / 1e9:>10.2f} {t['fwht'] / t['clone']:>10.2f} {t['dense'] / t['fwht']:>10.2f}"
        )
    print(f"rows in total: {total_rows}")


if __name__ == "__main__":
    main()
