"""End-to-end greedy generation on SmolLM2 after a long prompt: decode tokens per second with
full-precision keys (`DynamicCache`) against the packed 1-bit key cache.

The prompt is a held-out text window of `--prompt` tokens (default 7680, under SmolLM2's 8192
positions). Each cache is pre-filled in chunks of `--chunk` tokens (the packed attention scores a
chunk of queries against the whole store, so a one-shot 7680-token prefill would need a
7680 × 7680 logit block per head); the prompt's last token is left for `model.generate`, whose
`--new` greedy steps (one query each: the decode phase) are timed on their own.

Candidates:
* ``dynamic`` — transformers' `DynamicCache`, float32 keys and values, the model's SDPA attention;
* ``1bit`` — `impl.cache.hf.QuantizedKeyCache` with 1-bit codes (data-free SRHT codecs, or a
  calibration artifact with `--artifact STEM`) through the packed attention
  (``with cache.attached(model)``): each decode step runs the fused numba kernel
  (`impl.cache.kernels.decode_attention`);
* ``1bit-torch`` — the same cache with the kernels switched off (`use_backend("torch")`): the
  unfused path (logits from the codes, softmax, values) for comparison.

Nothing is asserted; ratios are against ``dynamic`` in the same run.

    python benchmarks/bench_generate.py                       # 7680-token prompt, 32 new tokens
    python benchmarks/bench_generate.py --prompt 2048 --new 16
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

from betaspec.data.load import load_model
from betaspec.data.locations import asset_present
from betaspec.data.models import cache_kwarg, text_windows
from impl.cache.hf import QuantizedKeyCache
from impl.cache.kernels import backend_for, use_backend
from impl.calibration.fit import data_free_codecs


def codecs_for(model, artifact: str | None, bits: int):
    cfg = model.config
    if artifact:
        from betaspec.keycache.artifacts import load_calibration

        return load_calibration(artifact).codecs
    heads, dim = cfg.num_key_value_heads, getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    return data_free_codecs("srht", cfg.num_hidden_layers, heads, dim, bits=bits)


def run_one(model, ids: torch.Tensor, cache, new: int, chunk: int, attached: bool, backend: str | None):
    """Prefill all but the last prompt token in chunks, then time `generate` for `new` tokens."""
    kw = cache_kwarg(model)
    attach = cache.attached(model) if attached else contextlib.nullcontext()
    force = use_backend(backend) if backend else contextlib.nullcontext()
    with torch.no_grad(), attach, force:
        t0 = time.perf_counter()
        for s in range(0, ids.shape[1] - 1, chunk):
            part = ids[:, s:min(s + chunk, ids.shape[1] - 1)]
            model(part, use_cache=True, **{kw: cache})
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                             do_sample=False, **{kw: cache})
        decode = time.perf_counter() - t0
    return out[0, ids.shape[1]:], prefill, decode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompt", type=int, default=7680, help="prompt tokens (held-out text)")
    p.add_argument("--new", type=int, default=32, help="new tokens generated greedily")
    p.add_argument("--chunk", type=int, default=512, help="prefill chunk (tokens per forward)")
    p.add_argument("--bits", type=int, default=1, help="code bits for the data-free codecs")
    p.add_argument("--artifact", default=None, help="calibration artifact stem (default: data-free SRHT codecs)")
    p.add_argument("--n-protect", type=int, default=0, help="front tokens kept exact")
    p.add_argument("--window", type=int, default=0, help="recent tokens kept exact")
    p.add_argument("--candidates", nargs="+", default=["dynamic", "1bit", "1bit-torch"],
                   choices=["dynamic", "1bit", "1bit-torch"])
    a = p.parse_args()
    if not asset_present("smollm2") or not asset_present("text"):
        print("SmolLM2 or the text corpus is not fetched (`betaspec fetch-assets`): nothing to measure")
        return
    from transformers import DynamicCache

    model, tok = load_model("smollm2", progress=False)
    ids = text_windows("smollm2", tok, "heldout", 1, a.prompt, progress=False)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"SmolLM2, prompt {ids.shape[1]} tokens, {a.new} new tokens (greedy); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; kernel backend on CPU: {backend_for('cpu')}; load average {load:.1f}")
    results = {}
    for name in a.candidates:
        if name == "dynamic":
            cache, attached, backend = DynamicCache(), False, None
        else:
            cache = QuantizedKeyCache(codecs_for(model, a.artifact, a.bits), n_protect=a.n_protect, window=a.window)
            attached, backend = True, ("torch" if name == "1bit-torch" else None)
        tokens, prefill, decode = run_one(model, ids, cache, a.new, a.chunk, attached, backend)
        mem = cache.memory().nbytes_used if hasattr(cache, "memory") else None
        results[name] = (tokens, prefill, decode, mem)
        print(f"{name:>10}: prefill {prefill:7.2f} s, decode {decode:7.2f} s = {a.new / decode:6.2f} tokens/s"
              + (f", key bytes {mem / 2**20:.1f} MiB" if mem is not None else "")
              + (f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""), flush=True)
    base = next(iter(results))
    _, _, base_decode, _ = results[base]
    cfg = model.config
    full_bytes = cfg.num_hidden_layers * cfg.num_key_value_heads * ids.shape[1] * cfg.head_dim * 4
    print(f"\n| cache | decode tokens/s | decode speed / {base} | prefill s | key bytes | "
          "greedy tokens before the first difference from: dynamic / 1bit-torch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")

    def agree(x, name):
        if name not in results:
            return "–"
        return str(int((x == results[name][0]).cumprod(0).sum()))

    for name, (tokens, prefill, decode, mem) in results.items():
        kb = f"{(mem if mem is not None else full_bytes) / 2**20:.1f} MiB"
        print(f"| {name} | {a.new / decode:.2f} | {base_decode / decode:.2f} | {prefill:.1f} | {kb} | "
              f"{agree(tokens, 'dynamic')} / {agree(tokens, '1bit-torch')} of {a.new} |")


if __name__ == "__main__":
    main()
