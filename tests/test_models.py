"""Keys and perplexity on tiny random models (fast), and on the real offline models (slow, skipped
when the assets are not fetched)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from betaspec.data.catalog import MODELS
from betaspec.data.load import load_model
from betaspec.data.locations import asset_present
from betaspec.data.models import (
    cache_kwarg,
    collect_keys,
    perplexity,
    text_windows,
    tiny_gemma3,
    tiny_llama,
)
from betaspec.data.offline import offline_transformers

TINY = {"llama": tiny_llama, "gemma3": tiny_gemma3}


@pytest.fixture(scope="module", params=list(TINY))
def tiny(request) -> torch.nn.Module:
    return TINY[request.param](seed=0)


def _windows(n: int, width: int, vocab: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, width), generator=torch.Generator().manual_seed(seed))


def _rope(model: torch.nn.Module, layer: int, keys: torch.Tensor) -> torch.Tensor:
    """RoPE as the model applies it, to keys (n, H, W, d) at positions 0..W-1 — computed independently
    of betaspec from the model's own rotary embedding and rotate_half."""
    modeling = importlib.import_module(type(model).__module__)
    positions = torch.arange(keys.shape[2])[None]
    layer_types = getattr(model.config, "layer_types", None)
    if getattr(model.config, "model_type", "").startswith("gemma3"):
        cos, sin = model.model.rotary_emb(keys, positions, layer_types[layer])
    else:
        cos, sin = model.model.rotary_emb(keys, positions)
    return keys * cos[:, None] + modeling.rotate_half(keys) * sin[:, None]


def _per_window(keys: torch.Tensor, n: int) -> torch.Tensor:
    """(H, n·W, d) → (n, H, W, d)."""
    h, nw, d = keys.shape
    return keys.view(h, n, nw // n, d).transpose(0, 1)


# ------------------------------------------------------------------------------------- keys


def test_collect_keys_shapes(tiny):
    cfg = tiny.config
    w = _windows(3, 20)  # longer than the tiny Gemma's sliding window of 8: all tokens must come back
    for view in ("post_rope", "pre_rope"):
        k = collect_keys(tiny, w, view=view, progress=False)
        assert k.shape == (cfg.num_hidden_layers, cfg.num_key_value_heads, 3 * 20, cfg.head_dim)
        assert k.dtype == torch.float32 and torch.isfinite(k).all()


def test_post_rope_keys_are_rope_of_pre_rope_keys(tiny):
    n, width = 2, 20
    w = _windows(n, width, seed=1)
    post = collect_keys(tiny, w, view="post_rope", progress=False)
    pre = collect_keys(tiny, w, view="pre_rope", progress=False)
    assert not torch.allclose(post, pre)
    for layer in range(post.shape[0]):
        rotated = _rope(tiny, layer, _per_window(pre[layer], n))
        torch.testing.assert_close(rotated, _per_window(post[layer], n), rtol=0, atol=1e-6)


def test_post_rope_keys_are_what_a_dynamic_cache_stores(tiny):
    w = _windows(1, 12, seed=2)
    tf = offline_transformers()
    cache = tf.DynamicCache()
    with torch.no_grad():
        tiny(w, **{cache_kwarg(tiny): cache}, use_cache=True)
    k = collect_keys(tiny, w, view="post_rope", progress=False)
    for layer in range(k.shape[0]):
        assert torch.equal(k[layer], cache.layers[layer].keys[0])


def test_collect_keys_layer_choice_and_skip_first(tiny):
    n, width = 2, 10
    w = _windows(n, width, seed=3)
    full = collect_keys(tiny, w, progress=False)
    picked = collect_keys(tiny, w, layers=[1, 0], skip_first=1, progress=False)
    expect = torch.stack([_per_window(full[j], n)[:, :, 1:] for j in (1, 0)])  # (L, n, H, W-1, d)
    expect = expect.transpose(1, 2).flatten(2, 3)
    assert torch.equal(picked, expect)
    only_first = collect_keys(tiny, w, view="pre_rope", layers=[0], progress=False)
    assert torch.equal(only_first[0], collect_keys(tiny, w, view="pre_rope", progress=False)[0])


def test_collect_keys_rejects_bad_arguments(tiny):
    w = _windows(1, 8)
    with pytest.raises(ValueError, match="view"):
        collect_keys(tiny, w, view="rope", progress=False)
    with pytest.raises(ValueError, match="windows"):
        collect_keys(tiny, w[0], progress=False)
    with pytest.raises(ValueError, match="layers"):
        collect_keys(tiny, w, layers=[5], progress=False)
    with pytest.raises(ValueError, match="skip_first"):
        collect_keys(tiny, w, skip_first=8, progress=False)


# ------------------------------------------------------------------------------------- perplexity


def test_perplexity_is_exp_of_hf_loss(tiny):
    w = _windows(3, 24, seed=4)
    with torch.no_grad():
        losses = torch.stack([tiny(w[i : i + 1], labels=w[i : i + 1]).loss for i in range(3)])
    res = perplexity(tiny, w, progress=False, logits_chunk=5)
    assert res.n_tokens == 3 * 23
    torch.testing.assert_close(res.window_nll, losses, rtol=0, atol=1e-5)
    assert res.nll == pytest.approx(losses.double().mean().item(), abs=1e-5)
    assert res.ppl == pytest.approx(math.exp(res.nll))


def test_perplexity_gets_a_fresh_cache_per_window(tiny):
    tf = offline_transformers()
    made = []

    def factory():
        made.append(tf.DynamicCache())
        return made[-1]

    w = _windows(2, 16, seed=5)
    with_cache = perplexity(tiny, w, cache_factory=factory, progress=False)
    assert len(made) == 2 and all(c.get_seq_length() == 16 for c in made)
    without = perplexity(tiny, w, progress=False)
    torch.testing.assert_close(with_cache.window_nll, without.window_nll, rtol=0, atol=1e-5)


def test_tiny_models_are_seeded_and_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = tiny_llama(seed=0), tiny_llama(seed=0), tiny_llama(seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    pa, pb, pc = (m.model.layers[0].self_attn.k_proj.weight for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    cfg = a.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.head_dim) == (256, 64, 2, 4, 2, 16)


def test_cache_kwarg_follows_the_forward_signature(tiny):
    assert cache_kwarg(tiny) in ("cache", "past_key_values")

    class Old(torch.nn.Module):
        def forward(self, input_ids, past_key_values=None):
            return input_ids

    assert cache_kwarg(Old()) == "past_key_values"
    with pytest.raises(ValueError, match="neither"):
        cache_kwarg(torch.nn.Linear(1, 1))


# ------------------------------------------------------------------------------------- real models


def _real(name: str):
    if not (asset_present(name) and asset_present("text")):
        pytest.skip(f"{name} or the text is not fetched: run `betaspec fetch-assets`")
    return load_model(name, progress=False)


@pytest.mark.slow
def test_smollm2_config_keys_and_heldout_perplexity():
    model, tok = _real("smollm2")
    spec, cfg = MODELS["smollm2"], model.config
    assert (cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim) == (30, 3, 64)
    assert (spec.num_layers, spec.num_kv_heads, spec.head_dim) == (30, 3, 64)
    w = text_windows("smollm2", tok, "heldout", 2, 256, progress=False)
    assert w.shape == (2, 256) and w[0, 0] != tok.bos_token_id
    res = perplexity(model, w, progress=False)
    assert 10 < res.ppl < 100, res
    keys = collect_keys(model, w[:1], layers=[0, 29], progress=False)
    assert keys.shape == (2, 3, 256, 64)


@pytest.mark.slow
def test_gemma3_bos_windows_all_keys_past_the_sliding_window_and_perplexity():
    model, tok = _real("gemma3")
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, cfg.sliding_window) == (18, 1, 256, 512)
    w = text_windows("gemma3", tok, "heldout", 1, 600, progress=False)
    assert (w[:, 0] == tok.bos_token_id).all()
    keys = collect_keys(model, w, layers=[0, 5], progress=False)  # sliding layer 0 keeps all 600 too
    assert keys.shape == (2, 1, 600, 256)
    res = perplexity(model, w[:, :256], progress=False)
    assert 10 < res.ppl < 150, res
