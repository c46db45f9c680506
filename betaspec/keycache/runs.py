"""Running a real model with the quantized key cache — perplexity and generation next to the same model
with full-precision keys, so a user can see what survives — and choosing the codecs for it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from impl.cache.codecs import codec_class, peer_codecs
from impl.cache.codecs.base import KeyCodec
from impl.cache.hf import QuantizedKeyCache
from impl.cache.store import MemoryReport, check_exact_dtype
from impl.calibration.fit import data_free_codecs
from impl.validation import check_positive_int

from ..data.catalog import model_spec
from ..data.models import PerplexityResult, cache_kwarg, perplexity
from .artifacts import ArtifactError, load_calibration


@dataclass(frozen=True)
class CachePolicy:
    """Which keys the cache keeps exact: the first `n_protect` tokens, a recent `window` coded
    `flush_block` tokens at a time (None: the codec's token block), stored in `exact_dtype` (None:
    the model's dtype). See `impl.cache.store`."""

    n_protect: int = 0
    window: int = 0
    flush_block: int | None = None
    exact_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        check_positive_int(self.n_protect, "n_protect", minimum=0)
        check_positive_int(self.window, "window", minimum=0)
        if self.flush_block is not None:
            check_positive_int(self.flush_block, "flush_block")
        check_exact_dtype(self.exact_dtype)

    def cache(self, codecs: list[KeyCodec]) -> QuantizedKeyCache:
        return QuantizedKeyCache(codecs, **asdict(self))

    def describe(self) -> str:
        parts = [f"protect {self.n_protect}"]
        if self.window or self.flush_block:
            parts.append(f"window {self.window}" + (f", flush {self.flush_block}" if self.flush_block else ""))
        return ", ".join(parts)


def codecs_for(model_name: str, *, calibration: Path | str | None = None, codec: str | None = None,
               n_protect: int = 0, seed: int = 0, **settings: Any) -> tuple[list[KeyCodec], str]:
    """Per-layer codecs for `model_name` and a label saying which.

    With `calibration`, the artifact's codecs — checked against the model (name, layers, the
    post-RoPE view the cache stores), against `codec` when one is named, and against the cache's
    `n_protect`: an artifact fitted without the first `protect` positions (`calibrate --protect`)
    codes them badly, so it is refused for a cache that keeps fewer of them exact. Without it,
    data-free codecs: `codec` (default ``"transform"``) with `settings` — for ``"transform"`` a
    `rotation` (``"srht"`` default, or ``"identity"``) and `bits`; for a peer its own settings
    (`impl.cache.codecs.peer_codecs`)."""
    spec = model_spec(model_name)
    if codec is not None:
        codec_class(codec)
    if calibration is not None:
        calib = load_calibration(calibration)
        if calib.model != model_name:
            raise ArtifactError(f"calibration: {calibration} was fitted on {calib.model!r}, not {model_name!r}")
        if calib.layers != spec.num_layers:
            raise ArtifactError(f"calibration: {calibration} covers {calib.layers} layers; {model_name} has {spec.num_layers}")
        if calib.view != "post_rope":
            raise ArtifactError(f"calibration: {calibration} was fitted on {calib.view} keys; the cache stores post_rope keys")
        if codec is not None and calib.kind != codec:
            raise ArtifactError(f"calibration: {calibration} holds {calib.kind!r} codecs, not {codec!r}")
        protect = int(calib.settings.get("protect", 0))
        if protect > n_protect:
            raise ArtifactError(
                f"calibration: {calibration} was fitted without each window's first {protect} position(s) "
                f"(calibrate --protect {protect}), but the cache keeps only n_protect = {n_protect} exact and would code "
                f"them with a codec that never saw them (on SmolLM2 this cost perplexity ×2.19 against ×1.58): "
                f"use --protect {protect} or recalibrate with --protect {n_protect}")
        return calib.codecs, f"calibrated {calib.codecs[0].label()}"
    kind = codec or "transform"
    if kind == "transform":
        rotation = settings.pop("rotation", "srht")
        bits = settings.pop("bits", 1)
        if settings:
            raise ValueError(f"settings: unknown for the data-free transform codec: {sorted(settings)}")
        codecs = data_free_codecs(rotation, spec.num_layers, spec.num_kv_heads, spec.head_dim, seed, bits=bits)
        return codecs, f"{codecs[0].label()}, {rotation}, uncalibrated"
    codecs = peer_codecs(kind, spec.num_layers, spec.num_kv_heads, spec.head_dim, seed=seed, **settings)
    return codecs, codecs[0].label()


@dataclass(frozen=True)
class CacheEval:
    label: str
    ppl: float
    bits_per_coordinate: float
    seconds: float


def cache_perplexity(model, windows: torch.Tensor, codecs: list[KeyCodec], policy: CachePolicy = CachePolicy(),
                     packed: bool = True, progress: bool = True
                     ) -> tuple[PerplexityResult, MemoryReport, QuantizedKeyCache]:
    """Perplexity of ``model`` on ``windows`` with a fresh `QuantizedKeyCache` per window, the exact key
    memory that cache reports after the last window, and that cache.

    ``packed`` runs the packed attention (`cache.attached(model)`): each query scores the codes as
    they stood when its token was appended, as a token-by-token decode would; otherwise the model's
    own attention reads the keys as they stand after each window's prefill (`impl.cache.hf`)."""
    caches: list[QuantizedKeyCache] = []

    def factory() -> QuantizedKeyCache:
        caches.append(policy.cache(codecs))
        return caches[-1]

    res = perplexity(model, windows, cache_factory=factory, progress=progress,
                     cache_context=(lambda c: c.attached(model)) if packed else None)
    return res, caches[-1].memory(), caches[-1]


def perplexity_pair(model, windows: torch.Tensor, codecs: list[KeyCodec], label: str,
                    policy: CachePolicy = CachePolicy(), progress: bool = True) -> tuple[CacheEval, CacheEval]:
    """Perplexity with full-precision keys and with the quantized key cache, on the same windows."""
    t0 = time.perf_counter()
    ref = perplexity(model, windows, progress=progress)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    quant, mem, _ = cache_perplexity(model, windows, codecs, policy, progress=progress)
    t_q = time.perf_counter() - t0
    key_bits = torch.finfo(next(model.parameters()).dtype).bits
    return (CacheEval("full-precision keys", ref.ppl, float(key_bits), t_ref),
            CacheEval(f"{label}, {policy.describe()}", quant.ppl, mem.bits_per_coordinate, t_q))


@torch.no_grad()
def generate_pair(model, tokenizer, prompt: str, codecs: list[KeyCodec], policy: CachePolicy = CachePolicy(),
                  max_new_tokens: int = 40) -> dict[str, object]:
    """Greedy continuations of `prompt` with full-precision keys and with the packed quantized cache."""
    enc = tokenizer(prompt, return_tensors="pt")
    ids, am = enc["input_ids"], enc["attention_mask"]
    kw = cache_kwarg(model)
    ref = model.generate(ids, attention_mask=am, max_new_tokens=max_new_tokens, do_sample=False)
    cache = policy.cache(codecs)
    with cache.attached(model):
        out = model.generate(ids, attention_mask=am, max_new_tokens=max_new_tokens, do_sample=False, **{kw: cache})
    mem = cache.memory()
    n = ids.shape[1]
    return {
        "full_precision": tokenizer.decode(ref[0, n:], skip_special_tokens=True),
        "quantized": tokenizer.decode(out[0, n:], skip_special_tokens=True),
        "same_tokens": int((ref[0, n:] == out[0, n: n + ref.shape[1] - n]).sum()) if out.shape == ref.shape else None,
        "new_tokens": int(ref.shape[1] - n),
        "bits_per_coordinate": mem.bits_per_coordinate,
        "key_bytes": mem.nbytes_used,
        "fp16_key_bytes": mem.coordinates * 2,
    }

