"""Running causal LMs for the study: their keys (post- and pre-RoPE), their perplexity, text windows,
and tiny randomly initialised models for fast tests.

Works with the offline models of :mod:`betaspec.data` (Llama-architecture SmolLM2, Gemma-3 with
QK-norm) and with any Hugging Face decoder built the same way (``model.model.layers[i].self_attn``
with ``k_proj``, optionally ``k_norm``, and ``model.lm_head``).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.nn.functional as F

from .catalog import model_spec
from .corpus import token_ids, window_token_count
from .corpus import windows as cut_windows
from .offline import offline_transformers

KEY_VIEWS = ("post_rope", "pre_rope")


# ------------------------------------------------------------------------------------- plumbing


def cache_kwarg(module: torch.nn.Module) -> str:
    """The keyword under which ``module.forward`` takes a KV cache: ``cache`` (transformers ≥ 5.2x,
    where ``past_key_values`` is deprecated) or ``past_key_values`` (older releases)."""
    params = inspect.signature(module.forward).parameters
    if "cache" in params:
        return "cache"
    if "past_key_values" in params:
        return "past_key_values"
    raise ValueError(f"module: {type(module).__name__}.forward takes neither `cache` nor `past_key_values`")


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder blocks of a causal LM (``model.model.layers`` for Llama and Gemma-3)."""
    layers = getattr(model.base_model, "layers", None)
    if layers is None:
        raise ValueError(f"model: {type(model).__name__} has no `base_model.layers`; expected a decoder-only LM")
    return layers


def _check_windows(windows_: torch.Tensor) -> torch.Tensor:
    if windows_.dim() != 2 or windows_.dtype not in (torch.int64, torch.int32) or windows_.shape[1] < 2:
        raise ValueError(
            f"windows: expected an integer tensor of shape (n, W) with W >= 2, got {windows_.dtype} "
            f"{tuple(windows_.shape)}"
        )
    return windows_.long()


def _check_layers(layers: list[int] | tuple[int, ...] | range | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    out = list(layers)
    bad = [i for i in out if not (isinstance(i, int) and 0 <= i < num_layers)]
    if bad or not out or len(set(out)) != len(out):
        raise ValueError(f"layers: expected distinct indices in [0, {num_layers}), got {out}")
    return out


class _StopForward(Exception):
    """Raised by a hook once the last layer we need has run; the rest of the forward is skipped."""


def _stop_after(module: torch.nn.Module):
    def hook(mod, args, output):
        raise _StopForward

    return module.register_forward_hook(hook)


def _progress(iterable, total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False)


# ------------------------------------------------------------------------------------- keys


def _key_heads_hook(attn: torch.nn.Module, sink: dict[int, torch.Tensor], idx: int):
    """Hook that records attention ``attn``'s keys just before RoPE as ``(B, H_kv, S, d)``: the
    ``k_norm`` output where the model has QK-norm (Gemma-3), else the ``k_proj`` output."""
    head_dim = attn.head_dim
    if hasattr(attn, "k_norm"):
        def from_norm(mod, args, out):
            sink[idx] = out.detach()  # k_norm acts on (B, H_kv, S, d), after the head split

        return attn.k_norm.register_forward_hook(from_norm)

    def from_proj(mod, args, out):
        b, s, _ = out.shape
        sink[idx] = out.detach().view(b, s, -1, head_dim).transpose(1, 2)

    return attn.k_proj.register_forward_hook(from_proj)


@torch.no_grad()
def collect_keys(
    model: torch.nn.Module,
    windows: torch.Tensor,
    view: str = "post_rope",
    layers: list[int] | tuple[int, ...] | range | None = None,
    progress: bool = True,
    skip_first: int = 0,
) -> torch.Tensor:
    """The keys of ``model`` on each window, shape ``(L, H_kv, n·(W − skip_first), d)``, float32.

    ``view="post_rope"`` — what the KV cache stores: read from a config-less ``DynamicCache`` (the
    default cache of a model keeps only the last ``sliding_window − 1`` tokens on Gemma's sliding
    layers). ``view="pre_rope"`` — the same keys before the rotary embedding: the ``k_proj`` output
    (Llama) or the ``k_norm`` output (Gemma-3, after QK-norm). Each window is run from scratch;
    token ``t`` of window ``i`` lands at index ``i·(W − skip_first) + t − skip_first``.
    ``layers`` picks (and orders) layers; the forward stops after the last one needed.
    ``skip_first`` drops each window's first positions (e.g. ``<bos>``, an attention sink).
    """
    if view not in KEY_VIEWS:
        raise ValueError(f"view: expected one of {KEY_VIEWS}, got {view!r}")
    windows = _check_windows(windows)
    n, width = windows.shape
    if not 0 <= skip_first < width:
        raise ValueError(f"skip_first: expected 0 <= skip_first < W = {width}, got {skip_first}")
    blocks = decoder_layers(model)
    chosen = _check_layers(layers, len(blocks))
    tf = offline_transformers()
    kw = cache_kwarg(model)
    device = next(model.parameters()).device
    kept = width - skip_first
    out: torch.Tensor | None = None
    for i in _progress(range(n), n, f"keys ({view})", progress):
        ids = windows[i : i + 1].to(device)
        captured: dict[int, torch.Tensor] = {}
        hooks = [_stop_after(blocks[max(chosen)])]
        cache = None
        if view == "pre_rope":
            hooks += [_key_heads_hook(blocks[j].self_attn, captured, j) for j in chosen]
        else:
            cache = tf.DynamicCache()  # no config: every layer keeps every token
        try:
            model(ids, **{kw: cache}, use_cache=cache is not None, logits_to_keep=1)
        except _StopForward:
            pass
        finally:
            for h in hooks:
                h.remove()
        for row, j in enumerate(chosen):
            k = captured[j] if view == "pre_rope" else cache.layers[j].keys
            k = k[0, :, skip_first:].float()  # (H_kv, kept, d)
            if out is None:
                out = torch.empty(len(chosen), k.shape[0], n * kept, k.shape[-1], dtype=torch.float32)
            out[row, :, i * kept : (i + 1) * kept] = k.cpu()
    assert out is not None
    return out


# ------------------------------------------------------------------------------------- attention inputs

_CAPTURE = "betaspec_capture"
_SINK = "_betaspec_capture_sink"


def _capture_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    sink = getattr(module, _SINK, None)
    if sink is not None:
        sink[module.layer_idx] = {"q": query.detach().float(), "k": key.detach(), "v": value.detach().float(),
                                  "mask": attention_mask.detach() if torch.is_tensor(attention_mask) else None,
                                  "scaling": scaling, "softcap": kwargs.get("softcap")}
    if kwargs.get("softcap") is None:
        kwargs.pop("softcap", None)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _capture_mask(*args, **kwargs):
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False  # always the explicit 4-D mask, so it can be reused
    return sdpa_mask(*args, **kwargs)


@contextlib.contextmanager
def attention_inputs(model: torch.nn.Module):
    """Inside the block, every forward of `model` records each layer's attention inputs into the
    yielded dict (layer → post-RoPE ``q`` (B, Hq, Q, d), ``k``, ``v``, ``mask``, ``scaling``,
    ``softcap``); the attention itself is unchanged (sdpa). Restored on exit, also after an error."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(_CAPTURE, _capture_attention)
    AttentionMaskInterface.register(_CAPTURE, _capture_mask)
    modules = [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups")]
    sink: dict[int, dict[str, Any]] = {}
    previous = model.config._attn_implementation
    model.set_attn_implementation(_CAPTURE)
    for m in modules:
        setattr(m, _SINK, sink)
    try:
        yield sink
    finally:
        for m in modules:
            if hasattr(m, _SINK):
                delattr(m, _SINK)
        model.set_attn_implementation(previous)


@torch.no_grad()
def query_second_moments(model: torch.nn.Module, windows: torch.Tensor, progress: bool = True) -> torch.Tensor:
    """`E[q qᵀ]` of the post-RoPE queries that read each kv head, over every position of `windows`
    (n, W): shape (L, H_kv, d, d), float64 — the query statistics a query-weighted code scale uses
    (`impl.multilevel.weighted_ls_scale`). The G query heads that share a kv head are pooled."""
    windows = _check_windows(windows)
    device = next(model.parameters()).device
    sums: torch.Tensor | None = None
    count = 0
    for i in _progress(range(windows.shape[0]), windows.shape[0], "query moments", progress):
        with attention_inputs(model) as sink:
            model(windows[i: i + 1].to(device), use_cache=False, logits_to_keep=1)
        layers = sorted(sink)
        q = torch.stack([sink[j]["q"][0].double().cpu() for j in layers])            # (L, Hq, Q, d)
        k_heads = sink[layers[0]]["k"].shape[1]
        L, Hq, Q, d = q.shape
        q = q.reshape(L, k_heads, (Hq // k_heads) * Q, d)
        part = q.transpose(-1, -2) @ q                                                 # (L, H, d, d)
        sums = part if sums is None else sums + part
        count += (Hq // k_heads) * Q
    assert sums is not None
    return sums / count


# ------------------------------------------------------------------------------------- perplexity


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity ``exp(nll)`` of the mean next-token NLL (nats) over ``n_tokens`` predicted tokens;
    ``window_nll[i]`` is the mean NLL within window ``i``."""

    ppl: float
    nll: float
    n_tokens: int
    window_nll: torch.Tensor


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    windows: torch.Tensor,
    cache_factory: Callable[[], Any] | None = None,
    progress: bool = True,
    logits_chunk: int = 256,
    cache_context: Callable[[Any], ContextManager] | None = None,
    **forward_kwargs: Any,
) -> PerplexityResult:
    """Perplexity of ``model`` on ``windows`` (n, W): every window is run from scratch and its tokens
    1..W−1 are predicted from the ones before, ``n·(W − 1)`` predictions in all.

    ``cache_factory()`` gives a fresh cache per window (e.g. a quantized key cache), passed to the
    model with ``use_cache=True``; without it no cache is used. ``cache_context(cache)``, when
    given, is entered around each window's forward (e.g. ``lambda c: c.attached(model)``, the packed
    attention path). ``forward_kwargs`` go to the model's
    forward too (they reach the attention function). Logits are computed ``logits_chunk`` positions
    at a time from the final hidden states, so Gemma's 262k vocabulary never needs a full (W, V)
    logit matrix; ``final_logit_softcapping`` is applied when the config has it.
    """
    windows = _check_windows(windows)
    if logits_chunk < 1:
        raise ValueError(f"logits_chunk: expected a positive count, got {logits_chunk}")
    n, width = windows.shape
    body, head = model.base_model, model.get_output_embeddings()
    kw = cache_kwarg(body)
    cap = getattr(model.config, "final_logit_softcapping", None)
    device = next(model.parameters()).device
    sums = torch.zeros(n, dtype=torch.float64)
    for i in _progress(range(n), n, "perplexity", progress):
        ids = windows[i : i + 1].to(device)
        cache = cache_factory() if cache_factory is not None else None
        with cache_context(cache) if cache_context is not None else contextlib.nullcontext():
            hidden = body(ids, **{kw: cache}, use_cache=cache is not None, **forward_kwargs).last_hidden_state
        for s in range(0, width - 1, logits_chunk):
            e = min(s + logits_chunk, width - 1)
            logits = head(hidden[0, s:e]).float()
            if cap is not None:
                logits = torch.tanh(logits / cap) * cap
            sums[i] += F.cross_entropy(logits, ids[0, s + 1 : e + 1], reduction="sum").double().item()
    per_window = sums / (width - 1)
    nll = float(sums.sum() / (n * (width - 1)))
    return PerplexityResult(ppl=math.exp(nll), nll=nll, n_tokens=n * (width - 1), window_nll=per_window.float())


# ------------------------------------------------------------------------------------- text windows


def text_windows(
    name: str,
    tokenizer,
    split: str,
    n: int,
    length: int,
    root: Path | str | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """``n`` consecutive windows of ``length`` tokens of ``split`` for model ``name``, shape (n, length).

    Models whose entry says ``adds_bos`` (Gemma) get the tokenizer's BOS at the start of every window
    — without it Gemma's perplexity rises from about 44 to about 69 — and ``length − 1`` text tokens.
    """
    bos = model_spec(name).adds_bos
    ids = token_ids(split, tokenizer, window_token_count(length, n, bos), root=root, progress=progress)
    return cut_windows(ids, length, n, bos_id=tokenizer.bos_token_id if bos else None)


# ------------------------------------------------------------------------------------- tiny models


def _tiny(config, seed: int, attn_implementation: str | None) -> torch.nn.Module:
    tf = offline_transformers()
    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.AutoModelForCausalLM.from_config(config, **kwargs)
    return model.eval()


def tiny_llama(seed: int = 0, attn_implementation: str | None = None) -> torch.nn.Module:
    """A randomly initialised tiny Llama (vocab 256, hidden 64, 2 layers, 4 heads, 2 KV heads,
    head_dim 16), float32, eval mode; the same weights for the same ``seed``; no download."""
    tf = offline_transformers()
    config = tf.LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
    )
    return _tiny(config, seed, attn_implementation)


def tiny_gemma3(seed: int = 0, attn_implementation: str | None = None) -> torch.nn.Module:
    """A randomly initialised tiny Gemma-3 text model (vocab 256, hidden 64, 2 layers — one sliding
    with window 8, one full — 4 heads, 1 KV head, head_dim 16, QK-norm), float32, eval mode."""
    tf = offline_transformers()
    config = tf.Gemma3TextConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
        sliding_window=8, layer_types=["sliding_attention", "full_attention"], max_position_embeddings=1024,
    )
    return _tiny(config, seed, attn_implementation)
