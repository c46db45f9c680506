"""Compiled kernels over packed keys: logits and one decode step of attention, against dense baselines.

One decode step of one layer: B = 1, H kv heads, G query heads per kv head (GQA), one query each.
The codes are synthetic (random bytes, α and float16 rank-r coefficients: the kernels' time does not
depend on their values) for a `TransformCodec` with b bits and rank r; every token is coded.

* logits — `impl.cache.kernels.transform_scores` (one fused kernel: α_t Σ_j T_j(β_{t,j}) + ⟪BᵀRq, ĉ_t⟫)
  against dense fp32 and fp16 `q·Kᵀ` over full-precision keys and `torch.clone` of the fp16 keys
  (the bandwidth yardstick: one read and one write of the keys);
* attention — `impl.cache.kernels.attend_coded` (logits, online softmax and the weighted sum of
  fp32 values in one pass) against `torch.nn.functional.scaled_dot_product_attention` with fp32
  keys and values (GQA), dense fp32 and fp16 `softmax(q·Kᵀ)·V`, and the clone of the fp16 keys.

Ratios are time(kernel) / time(baseline) (below 1: the kernel is faster), medians over `--repeat`
repetitions in which the candidates alternate; nothing is asserted. Threads: torch's count (numba
uses the same; `--threads N` sets both).

    python benchmarks/bench_kernels.py             # T ∈ {4k, 16k, 32k, 64k, 128k}, d ∈ {64, 128, 256}, b ∈ {1..4}, r ∈ {0, d/8}
    python benchmarks/bench_kernels.py --quick     # a small grid
    python benchmarks/bench_kernels.py --contexts 65536 --dims 128 --bits 1 --ranks 0
    python benchmarks/bench_kernels.py --device cuda   # the Triton kernels on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from impl.cache.codecs.transform import TransformCodec
from impl.cache.kernels import attend_coded, backend_for, transform_scores


def median_times(candidates: dict, repeat: int, device: torch.device) -> dict[str, float]:
    """Median seconds per candidate; each is run once to warm up (compiles), then the candidates
    alternate. On CUDA the device is synchronised before and after each call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in candidates.values():
        fn()
    runs: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(repeat):
        for k, fn in candidates.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            runs[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in runs.items()}


def synthetic(H: int, T: int, d: int, bits: int, rank: int, gen: torch.Generator, device=None):
    """A codec with b bits and rank r (identity rotation, orthonormal basis) and random codes of T tokens."""
    codec = TransformCodec.identity(H, d, bits=bits)
    if rank:
        codec = replace(codec, basis=torch.linalg.qr(torch.randn(H, d, rank, generator=gen)).Q)
    width = (d * bits + 7) // 8
    codes = {"codes": torch.randint(0, 256, (1, H, T, width), dtype=torch.uint8, generator=gen),
             "scale": (0.05 + 0.1 * torch.rand(1, H, T, generator=gen)).half()}
    if rank:
        codes["coeffs"] = (0.1 * torch.randn(1, H, T, rank, generator=gen)).half()
    if device is not None:
        codec, codes = codec.to(device), {k: v.to(device) for k, v in codes.items()}
    return codec, codes


def code_bytes(codes: dict) -> int:
    return sum(t.numel() * t.element_size() for t in codes.values())


def baseline_times(q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, repeat: int, device: torch.device):
    """Dense baselines for queries q (1, H, G, 1, d) against keys and values (1, H, T, d)."""
    H, G, d = q.shape[1], q.shape[2], q.shape[-1]
    K16, V16 = K.half(), V.half()
    q4, q16 = q[:, :, :, 0], q[:, :, :, 0].half()
    qh = q4.reshape(1, H * G, 1, d)
    scale = d ** -0.5
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def dense_attn(qq, kk, vv):
        return torch.softmax((qq @ kk.transpose(-1, -2)) * scale, dim=-1) @ vv

    return median_times({
        "fp32": lambda: q4 @ K.transpose(-1, -2),
        "fp16": lambda: q16 @ K16.transpose(-1, -2),
        "clone16": lambda: K16.clone(),
        "sdpa32": lambda: sdpa(qh, K, V, scale=scale, enable_gqa=True),
        "attn32": lambda: dense_attn(q4, K, V),
        "attn16": lambda: dense_attn(q16, K16, V16),
    }, repeat, device)


def kernel_times(codec, codes, q: torch.Tensor, V: torch.Tensor, repeat: int, device: torch.device):
    """The fused logits and the fused decode attention over the codes."""
    scale = q.shape[-1] ** -0.5
    return median_times({
        "logits": lambda: transform_scores(codec, q[:, :, :, 0], codes),
        "attn": lambda: attend_coded(codec, q, V, scale, codes),
    }, repeat, device)


def run(contexts, dims, bits_list, rank_modes, heads, groups, repeat, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads")
    print(f"one decode step of one layer: H = {heads} kv heads × G = {groups} query heads; torch {torch.__version__}, "
          f"{where}; kernel backend: {backend_for(device)}")
    logit_rows, attn_rows = [], []
    for d in dims:
        for T in contexts:
            K = torch.randn(1, heads, T, d, generator=gen).to(device)
            V = torch.randn(1, heads, T, d, generator=gen).to(device)
            q = torch.randn(1, heads, groups, 1, d, generator=gen).to(device)
            base = baseline_times(q, K, V, repeat, device)
            fp16_bytes = K.numel() * 2
            for bits in bits_list:
                for mode in rank_modes:
                    r = 0 if mode == "0" else max(1, d // 8)
                    codec, codes = synthetic(heads, T, d, bits, r, gen, device)
                    t = kernel_times(codec, codes, q, V, repeat, device)
                    logit_rows.append((d, T, bits, r, t["logits"] / base["fp32"], t["logits"] / base["fp16"],
                                       t["logits"] / base["clone16"], fp16_bytes / code_bytes(codes), t["logits"] * 1e3))
                    attn_rows.append((d, T, bits, r, t["attn"] / base["sdpa32"], t["attn"] / base["attn32"],
                                      t["attn"] / base["attn16"], t["attn"] / base["clone16"], t["attn"] * 1e3,
                                      base["sdpa32"] * 1e3))
                    print(f"d={d:>3} T={T:>6} b={bits} r={r:>2} | logits {t['logits'] * 1e3:8.2f} ms: "
                          f"/fp32 {logit_rows[-1][4]:5.2f} /fp16 {logit_rows[-1][5]:5.2f} /clone16 {logit_rows[-1][6]:5.2f} | "
                          f"attention {t['attn'] * 1e3:8.2f} ms: /sdpa32 {attn_rows[-1][4]:5.2f} /fp32 {attn_rows[-1][5]:5.2f} "
                          f"/fp16 {attn_rows[-1][6]:5.2f}", flush=True)
    return logit_rows, attn_rows


def markdown(logit_rows, attn_rows) -> None:
    print("\nlogits: time(kernel) / time(baseline)\n")
    print("| d | T | b | r | /dense fp32 | /dense fp16 | /clone fp16 | bytes fp16/codes | kernel ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for d, T, b, r, a, f, c, by, ms in logit_rows:
        print(f"| {d} | {T:,} | {b} | {r} | {a:.2f} | {f:.2f} | {c:.2f} | {by:.1f} | {ms:.2f} |".replace(",", " "))
    print("\ndecode attention: time(kernel) / time(baseline)\n")
    print("| d | T | b | r | /SDPA fp32 | /dense fp32 | /dense fp16 | /clone fp16 | kernel ms | SDPA ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for d, T, b, r, s, a, f, c, ms, sms in attn_rows:
        print(f"| {d} | {T:,} | {b} | {r} | {s:.2f} | {a:.2f} | {f:.2f} | {c:.2f} | {ms:.2f} | {sms:.2f} |".replace(",", " "))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contexts", type=int, nargs="+", default=[4096, 16384, 32768, 65536, 131072])
    p.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--bits", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--ranks", nargs="+", default=["0", "d/8"], choices=["0", "d/8"])
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu (numba kernels) or cuda (Triton kernels)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and the kernels (default: torch's)")
    p.add_argument("--quick", action="store_true", help="T ∈ {4k, 16k}, d ∈ {64, 128}, b ∈ {1, 4}, r = 0")
    p.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.contexts, a.dims, a.bits, a.ranks, a.repeat = [4096, 16384], [64, 128], [1, 4], ["0"], 3
    rows = run(a.contexts, a.dims, a.bits, a.ranks, a.heads, a.groups, a.repeat, torch.device(a.device))
    if a.markdown:
        markdown(*rows)


if __name__ == "__main__":
    main()
