"""Scores over packed 1-bit keys vs dense q·Kᵀ, and calibration time per layer.

One decode step of one layer: B = 1, H kv heads, G query heads per kv head, one query each.
Baselines, measured in the same run: dense fp32 and fp16 `q·Kᵀ` over full-precision keys, and
`torch.clone` of the fp16 keys (the memory-bandwidth yardstick: any method must at least read
its keys once). Ratios are reported, not lone times; bytes are the key storage each method reads.

    python benchmarks/bench_kvcache.py            # contexts 4k–64k, d ∈ {64, 128, 256}
    python benchmarks/bench_kvcache.py --quick    # a smaller grid
"""

from __future__ import annotations

import argparse
import time

import torch

from impl.cache.store import KeyCodec, OneBitKeyStore
from impl.calibration.fit import fit_codec


def _time(fn, repeat: int) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_scores(contexts, dims, heads=4, groups=4, repeat=5):
    print(f"decode scores, one layer: H={heads} kv heads × G={groups} query heads, fp32/fp16 dense vs packed 1-bit")
    print(
        f"{'d':>4} {'T':>6} | {'packed/fp32':>11} {'packed/fp16':>11} {'packed/clone16':>14} | "
        f"{'lut/fp32':>9} | {'bytes fp16/packed':>17}"
    )
    g = torch.Generator().manual_seed(0)
    rows = []
    for d in dims:
        for T in contexts:
            keys = torch.randn(1, heads, T, d, generator=g)
            q = torch.randn(1, heads, groups, 1, d, generator=g)
            store = OneBitKeyStore(KeyCodec.identity(heads, d), n_protect=0)
            store.append(keys)
            k32, k16 = keys, keys.half()
            q32, q16 = q.reshape(1, heads, groups, d), q.reshape(1, heads, groups, d).half()
            t32 = _time(lambda: q32 @ k32.transpose(-1, -2), repeat)
            t16 = _time(lambda: q16 @ k16.transpose(-1, -2), repeat)
            tclone = _time(lambda: k16.clone(), repeat)
            tpack = _time(lambda: store.logits(q), repeat)
            tlut = _time(lambda: store.logits(q, method="lut"), repeat)
            packed_bytes = store.memory().nbytes_used
            fp16_bytes = k16.numel() * 2
            rows.append((d, T, tpack / t32, tpack / t16, tpack / tclone, tlut / t32, fp16_bytes / packed_bytes))
            print(
                f"{d:>4} {T:>6} | {tpack / t32:>11.2f} {tpack / t16:>11.2f} {tpack / tclone:>14.2f} | "
                f"{tlut / t32:>9.2f} | {fp16_bytes / packed_bytes:>17.2f}"
            )
    return rows


def bench_calibration(configs, tokens, steps):
    print(f"\ncalibration of one layer ({tokens} tokens, learned rotation {steps} steps, rank d/8), seconds per layer")
    for name, heads, d in configs:
        keys = torch.randn(heads, tokens, d, generator=torch.Generator().manual_seed(1)) + 1.0
        t0 = time.perf_counter()
        fit_codec(keys, rotation="learned", center=True, rank=d // 8, steps=steps, batch_size=4096)
        t_learn = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit_codec(keys, rotation="srht", center=True, rank=d // 8)
        t_srht = time.perf_counter() - t0
        print(
            f"{name:>12}: H={heads} d={d}: learned {t_learn:.2f} s, SRHT {t_srht:.3f} s "
            f"(learned/SRHT = {t_learn / t_srht:.0f}×)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    if args.quick:
        bench_scores([4096, 16384], [64, 256], repeat=3)
        bench_calibration([("SmolLM2-like", 3, 64)], tokens=2048, steps=20)
    else:
        bench_scores([4096, 16384, 65536], [64, 128, 256])
        bench_calibration([("SmolLM2-like", 3, 64), ("Gemma3-like", 1, 256)], tokens=8192, steps=100)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
