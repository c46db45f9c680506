"""Compiled kernels that score and attend straight from packed codes.

Entry points (each dispatches on the tensors' device, `backend.backend_for`: numba on CPU, Triton
on CUDA, the torch reference when the package is missing — on CPU after a one-time warning — or
for float64 queries, which keep float64):

* `level_scores(q, packed, levels, bits, d)` — `⟪q, ℓ[idx_t]⟫` against packed `b`-bit codes, the one
  call the codecs make (`sign_scores`: the same for sign codes, levels (−1, 1));
* `fused_logits(...)` / `transform_scores(codec, q, codes)` — a transform code's whole logit
  `α_t Σ_j T_j(β_{t,j}) + ⟪Bᵀ R q, ĉ_t⟫` in one kernel (fused_logit_identity);
* `decode_attention(store, query, values, scaling, mask, softcap)` — one decode step of attention
  over a `KeyStore` in one pass over the codes, with online softmax (online_softmax_merge).

The theorems' statements in code: `lookup_tables` (packed_score_lut_identity), `fused_logits`
(fused_logit_identity) and `merge_softmax_blocks` (online_softmax_merge); the compiled kernels are
tested against them and against float64 logits of the dequantised keys.
"""

from __future__ import annotations

import torch
from torch import Tensor

from impl.cache.kernels.backend import backend_for, kernel_module, use_backend
from impl.cache.kernels.decode import (
    attend_coded,
    decode_attention,
    fused_decode_available,
    reference_decode_attention,
)
from impl.cache.kernels.fused import (
    FusedInputs,
    check_fused_inputs,
    coefficient_values,
    query_transform,
    reference_logits,
    transform_inputs,
    transform_query,
)
from impl.cache.kernels.lut import (
    MAX_TABLE_BITS,
    group_codes,
    group_layout,
    lookup_tables,
    table_scores,
)
from impl.cache.kernels.softmax import (
    SoftmaxState,
    merge_softmax_blocks,
    reduce_softmax_blocks,
    softmax_block_state,
    softmax_output,
)
from impl.cache.packing import packed_level_scores, packed_sign_scores
from impl.validation import check_tensor

__all__ = [
    "FusedInputs", "SoftmaxState", "attend_coded", "backend_for", "check_fused_inputs", "coefficient_values",
    "decode_attention", "fused_decode_available", "fused_logits", "group_codes", "group_layout",
    "level_scores", "lookup_tables", "merge_softmax_blocks", "query_transform", "reduce_softmax_blocks",
    "reference_decode_attention", "reference_logits", "sign_scores", "softmax_block_state", "softmax_output",
    "table_scores", "transform_inputs", "transform_query", "transform_scores", "use_backend",
]


def _compiled(x: FusedInputs) -> str:
    """The backend for checked inputs: a compiled one only for float32 queries."""
    return backend_for(x.q_rot.device) if x.q_rot.dtype == torch.float32 else "torch"


def _logits(x: FusedInputs) -> Tensor:
    backend = _compiled(x)
    out = reference_logits(x) if backend == "torch" else kernel_module(backend).fused_scores(x)
    return out.reshape(*x.lead, *out.shape[-2:])


def fused_logits(q_rot: Tensor, packed: Tensor, levels: Tensor, bits: int, d: int, scale: Tensor,
                 q_basis: Tensor | None = None, coeffs: Tensor | None = None, *, coef_bits: int = 16,
                 coef_scale: Tensor | None = None) -> Tensor:
    """The fused logit of fused_logit_identity for every query and coded token:

        s_t = α_t Σ_j T_j(β_{t,j}) + ⟪q_basis, ĉ_t⟫  =  α_t ⟪q_rot, ℓ[idx_t]⟫ + ⟪q_basis, ĉ_t⟫,

    which for `q_rot = (R q) ⊙ σ` and `q_basis = Bᵀ R q` is `⟪q, Rᵀ(α_t σ ⊙ ℓ[idx_t] + B ĉ_t) + m⟫ − ⟪q, m⟫`:
    the logit of the dequantised key without the token-independent `⟪q, m⟫`. `T_j` are the lookup
    tables of `q_rot` (`lookup_tables`) and `β_{t,j}` the group patterns of the packed indices.

    ``q_rot`` (..., N, d); ``packed`` (..., T, ⌈d·b/8⌉) uint8, b ≤ 4 for the compiled kernels;
    ``levels`` (..., 2^b); ``scale`` α (..., T) float16/bfloat16/float32; optional ``q_basis``
    (..., N, r) with ``coeffs`` (..., T, r) float (``coef_bits = 16``) or packed `c`-bit integers
    (..., T, ⌈r·c/8⌉) uint8 with ``coef_scale`` (..., T) (``coef_bits`` 8 or 4; `ĉ = s·(i − 2^{c−1} + 1)`).
    Returns (..., N, T): float32 (float64 for float64 queries, computed by the torch reference).
    Stored fields are read through their strides; nothing is copied unless leading dimensions
    must be broadcast."""
    x = check_fused_inputs(q_rot, packed, levels, bits, d, scale, q_basis, coeffs, coef_bits=coef_bits,
                           coef_scale=coef_scale)
    return _logits(x)


def transform_scores(codec, q: Tensor, codes: dict[str, Tensor]) -> Tensor:
    """`TransformCodec.scores` in one kernel call: `α_t ⟪R q ⊙ σ, ℓ[idx_t]⟫ + ⟪Bᵀ R q, ĉ_t⟫`
    (fused_logit_identity) for queries (B, H, Q, d) → (B, H, Q, T)."""
    return _logits(transform_inputs(codec, q, codes, query_transform(q)))


def level_scores(q: Tensor, packed: Tensor, levels: Tensor, bits: int, d: int) -> Tensor:
    """`⟪q, ℓ[idx_t]⟫` for queries (..., Q, d) against packed `b`-bit codes (..., T, ⌈d·b/8⌉) with
    levels (..., 2^b) (per head: (H, 2^b)), by one table look-up per group of codes
    (packed_score_lut_identity); float32 out (float64 for float64 queries, by the torch reference
    `impl.cache.packing.packed_level_scores`, which also serves b > 4)."""
    qc = check_tensor(q, "q", min_dim=2)
    if qc.dtype != torch.float32 or backend_for(qc.device) == "torch" or not 1 <= bits <= MAX_TABLE_BITS \
            or not isinstance(packed, Tensor) or packed.dim() < 2:
        return packed_level_scores(q, packed, levels, bits, d)
    ones = torch.ones((), dtype=torch.float32, device=qc.device).expand(*packed.shape[:-1])
    return fused_logits(qc, packed, levels, bits, d, ones)


_SIGN_LEVELS: dict[torch.device, Tensor] = {}


def sign_scores(q: Tensor, packed: Tensor, d: int) -> Tensor:
    """`⟪q, s_t⟫` for sign codes `s_t ∈ {±1}^d` packed one bit per coordinate (bit 1 ↦ +1): the
    1-bit `level_scores` with levels (−1, +1) (packed_score_lut_identity with eight coordinates per
    byte). Shapes and dtypes as `impl.cache.packing.packed_sign_scores`, its torch reference."""
    qc = check_tensor(q, "q", min_dim=2)
    if qc.dtype != torch.float32 or backend_for(qc.device) == "torch":
        return packed_sign_scores(q, packed, d)
    lv = _SIGN_LEVELS.get(qc.device)
    if lv is None:
        lv = _SIGN_LEVELS[qc.device] = torch.tensor([-1.0, 1.0], device=qc.device)
    return level_scores(qc, packed, lv, 1, d)

