"""Online softmax: partial sums of blocks of tokens, merged without revisiting the tokens
(online_softmax_merge).

For one query row with logits `x_t` and values `v_t`, a block `S` of tokens is summarised by its
state `(μ, Z, N)`: `μ = max_{t∈S} x_t`, `Z = Σ_{t∈S} exp(x_t − μ)`, `N = Σ_{t∈S} exp(x_t − μ) v_t`.
Two disjoint blocks merge with any shift `μ` — the kernels take `μ = max(μ_A, μ_B)`, so no
exponential exceeds 1 — as

    Z = exp(μ_A − μ) Z_A + exp(μ_B − μ) Z_B,    N = exp(μ_A − μ) N_A + exp(μ_B − μ) N_B,

and softmax attention is `N / Z` for the union (softmax_weighted_sum_eq_ratio), whatever the
shift. A block whose tokens are all masked has `μ = −∞`, `Z = 0`, `N = 0` and contributes nothing
(its weight `exp(−∞ − μ)` is taken as 0, also when `μ = −∞`); a row with every token masked
attends to nothing (`N / Z` read as 0), the convention of `impl.attention.masked_softmax`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class SoftmaxState(NamedTuple):
    """Partial softmax sums of a block of tokens, per query row: `max` μ (...), `denom` Z (...),
    `numer` N (..., dv) — see the module docstring."""

    max: Tensor
    denom: Tensor
    numer: Tensor


def softmax_block_state(logits: Tensor, values: Tensor) -> SoftmaxState:
    """The state of one block: logits (..., T) (−∞ = masked), values (..., T, dv) broadcastable
    against them; computed in the logits' dtype."""
    mu = logits.amax(dim=-1) if logits.shape[-1] else logits.new_full(logits.shape[:-1], float("-inf"))
    finite = torch.isfinite(mu)
    e = torch.exp(logits - torch.where(finite, mu, torch.zeros_like(mu)).unsqueeze(-1))   # exp(−∞) = 0
    numer = e.unsqueeze(-2) @ values.to(e.dtype)
    return SoftmaxState(mu, e.sum(-1), numer.squeeze(-2))


def reduce_softmax_blocks(state: SoftmaxState, dim: int) -> SoftmaxState:
    """Merge the blocks stacked along dimension `dim` of `state.max` / `state.denom` (the same
    dimension of `state.numer`) into one state, with the shift `μ = max_k μ_k`:
    `Z = Σ_k exp(μ_k − μ) Z_k`, `N = Σ_k exp(μ_k − μ) N_k` (online_softmax_merge, applied to all
    blocks at once: by associativity the same as merging them two at a time)."""
    d = dim % state.max.dim()
    mu = state.max.amax(dim=d)
    safe = torch.where(torch.isfinite(mu), mu, torch.zeros_like(mu))
    w = torch.exp(state.max - safe.unsqueeze(d))            # a fully masked block (μ_k = −∞) weighs 0
    denom = (w * state.denom).sum(d)
    numer = (w.unsqueeze(-1) * state.numer).sum(d)
    return SoftmaxState(mu, denom, numer)


def merge_softmax_blocks(a: SoftmaxState, b: SoftmaxState) -> SoftmaxState:
    """Merge the partial softmax states of two disjoint blocks A and B (online_softmax_merge):

        μ = max(μ_A, μ_B),  Z = exp(μ_A − μ) Z_A + exp(μ_B − μ) Z_B,
        N = exp(μ_A − μ) N_A + exp(μ_B − μ) N_B,

    the state of A ∪ B with shift μ; `softmax_output` of it is softmax attention over A ∪ B. States
    are `SoftmaxState(max (...), denom (...), numer (..., dv))` of equal shapes; a block with
    μ = −∞ (every token masked) contributes nothing."""
    if a.max.shape != b.max.shape or a.numer.shape != b.numer.shape:
        raise ValueError(f"a and b must be states of the same shape, got max {tuple(a.max.shape)} / "
                         f"{tuple(b.max.shape)}, numer {tuple(a.numer.shape)} / {tuple(b.numer.shape)}")
    return reduce_softmax_blocks(SoftmaxState(torch.stack([a.max, b.max]), torch.stack([a.denom, b.denom]),
                                              torch.stack([a.numer, b.numer])), dim=0)


def softmax_output(state: SoftmaxState) -> Tensor:
    """`N / Z` (..., dv): softmax attention of the merged blocks; 0 for a row with every token masked."""
    pos = state.denom > 0
    z = torch.where(pos, state.denom, torch.ones_like(state.denom)).unsqueeze(-1)
    return torch.where(pos.unsqueeze(-1), state.numer / z, torch.zeros_like(state.numer))
