"""Running a real model with the 1-bit key cache: perplexity and generation, next to the same model
with full-precision keys, so a user can see what survives."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from impl.cache.hf import OneBitKeyCache
from impl.cache.store import KeyCodec, MemoryReport
from impl.calibration.fit import data_free_codecs

from ..data.catalog import model_spec
from ..data.models import PerplexityResult, cache_kwarg, perplexity
from .artifacts import load_calibration


def codecs_for(model_name: str, calibration: Path | str | None = None, rotation: str = "srht",
               seed: int = 0) -> tuple[list[KeyCodec], str]:
    """Per-layer codecs from a calibration artifact, or data-free ones; and a label saying which."""
    spec = model_spec(model_name)
    if calibration is not None:
        calib = load_calibration(calibration)
        if calib.model != model_name:
            raise ValueError(f"calibration: {calibration} was fitted on {calib.model!r}, not {model_name!r}")
        if calib.layers != spec.num_layers:
            raise ValueError(f"calibration: {calibration} covers {calib.layers} layers; {model_name} has {spec.num_layers}")
        if calib.view != "post_rope":
            raise ValueError(f"calibration: {calibration} was fitted on {calib.view} keys; the cache stores post_rope keys")
        s = calib.settings
        return calib.codecs, f"calibrated ({s['rotation']}, centre={s['center']}, r={s['rank']})"
    return data_free_codecs(rotation, spec.num_layers, spec.num_kv_heads, spec.head_dim, seed), f"{rotation}, uncalibrated"


@dataclass(frozen=True)
class CacheEval:
    label: str
    ppl: float
    bits_per_coordinate: float
    seconds: float


def onebit_perplexity(model, windows: torch.Tensor, codecs: list[KeyCodec], n_protect: int = 0,
                      scale_dtype: torch.dtype = torch.float16,
                      progress: bool = True) -> tuple[PerplexityResult, MemoryReport]:
    """Perplexity of ``model`` on ``windows`` with a fresh `OneBitKeyCache` per window, and the
    exact key memory that cache reports after the last window."""
    caches: list[OneBitKeyCache] = []

    def factory() -> OneBitKeyCache:
        caches.append(OneBitKeyCache(codecs, n_protect=n_protect, scale_dtype=scale_dtype))
        return caches[-1]

    res = perplexity(model, windows, cache_factory=factory, progress=progress)
    return res, caches[-1].memory()


def perplexity_pair(model, windows: torch.Tensor, codecs: list[KeyCodec], label: str, n_protect: int = 0,
                    progress: bool = True) -> tuple[CacheEval, CacheEval]:
    """Perplexity with full-precision keys and with the 1-bit key cache, on the same windows."""
    t0 = time.perf_counter()
    ref = perplexity(model, windows, progress=progress)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    onebit, mem = onebit_perplexity(model, windows, codecs, n_protect=n_protect, progress=progress)
    t_1b = time.perf_counter() - t0
    bits = mem.bits_per_coordinate
    key_bits = torch.finfo(next(model.parameters()).dtype).bits
    return (CacheEval("full-precision keys", ref.ppl, float(key_bits), t_ref),
            CacheEval(f"1-bit keys: {label}, protect {n_protect}", onebit.ppl, bits, t_1b))


@torch.no_grad()
def generate_pair(model, tokenizer, prompt: str, codecs: list[KeyCodec], n_protect: int = 0,
                  max_new_tokens: int = 40) -> dict[str, object]:
    """Greedy continuations of `prompt` with full-precision keys and with the packed 1-bit cache."""
    enc = tokenizer(prompt, return_tensors="pt")
    ids, am = enc["input_ids"], enc["attention_mask"]
    kw = cache_kwarg(model)
    ref = model.generate(ids, attention_mask=am, max_new_tokens=max_new_tokens, do_sample=False)
    cache = OneBitKeyCache(codecs, n_protect=n_protect)
    with cache.attached(model):
        out = model.generate(ids, attention_mask=am, max_new_tokens=max_new_tokens, do_sample=False, **{kw: cache})
    mem = cache.memory()
    n = ids.shape[1]
    return {
        "full_precision": tokenizer.decode(ref[0, n:], skip_special_tokens=True),
        "one_bit": tokenizer.decode(out[0, n:], skip_special_tokens=True),
        "same_tokens": int((ref[0, n:] == out[0, n: n + ref.shape[1] - n]).sum()) if out.shape == ref.shape else None,
        "new_tokens": int(ref.shape[1] - n),
        "bits_per_coordinate": mem.bits_per_coordinate,
        "key_bytes": mem.nbytes_used,
        "fp16_key_bytes": mem.coordinates * 2,
    }
