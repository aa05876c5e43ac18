"""A lockstep step's rows: probabilities from the logits, ideal bits, and the two levels each symbol is coded in.

Two levels: the vocabulary is cut into blocks of ``block_symbols(V)`` = ⌈√V⌉ consecutive ids. A symbol t is coded
as its block ``t // S`` under the row's block masses (Σ p over each block), then as ``t % S`` under the row's
probabilities within that block; constriction normalizes both rows itself. The product of the two is p[t] up to
the coder's 24-bit quantization of each level, so the code length is still −log2 p[t]; what changes is the
coder's work per symbol — about 2√V entries instead of V — while the block masses cost one vectorized reduction
per step for the whole batch.
"""

from __future__ import annotations

import math
from typing import Any

from mdlbench.codelength import nats_to_bits
from mdlbench.errors import ScoringError

# Below this a float32 probability is close to losing precision (subnormal under 2^-126): such a row's ideal bits
# come from its logits in float64 instead.
TINY_PROBABILITY = 2.0 ** -100


def probability_rows(logits: Any) -> Any:
    """softmax over the vocabulary, in float32 (float64 for a float64 model): one fused kernel per row, which
    reads a row once from memory and keeps it in cache for its max, its sum and the division.

    Any non-finite logit makes its whole row NaN (the row maximum propagates NaN; an infinite logit turns its entry
    into inf - inf), so one column tells whether a row is usable."""
    import torch

    z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    p = torch.softmax(z, dim=-1)
    bad = torch.isnan(p[:, 0])
    if bool(bad.any()):
        raise ScoringError(f"the model produced non-finite logits (batch row {int(bad.nonzero()[0, 0])}); nothing "
                           "was written — check the weights and the dtype (float16 overflows on some models; use "
                           "float32)")
    return p


def ideal_bits(logits: Any, p: Any, targets: Any, masses: Any) -> Any:
    """−log2 of each row's target probability in float64: p[target] / Σ p, with Σ p the float64 sum of the row's
    block masses (``block_masses``), because torch's float32 softmax rows do not sum to 1 — on SmolLM2's 49,152
    entries they sum to 1 + 6e-6 on average (every p a little high, the bits a little low: −3e-6 to −5e-6 of a
    document's code length against a float64 log-softmax; with the float64 sum, within 1e-8). The coder is not
    affected: constriction normalizes each row it is given. Rows whose target probability is below
    TINY_PROBABILITY use log Σ exp(logits) − logits[target] in float64 instead."""
    import torch

    p_target = p.gather(1, targets[:, None])[:, 0].double()
    nats = torch.log(masses.sum(dim=-1, dtype=torch.float64)) - torch.log(p_target)
    low = p_target < TINY_PROBABILITY
    if bool(low.any()):
        rows = low.nonzero()[:, 0]
        z = logits[rows].double()
        nats[rows] = torch.logsumexp(z, dim=-1) - z.gather(1, targets[rows, None])[:, 0]
    return nats_to_bits(nats)


def block_symbols(vocab_size: int) -> int:
    """Symbols per block: ⌈√V⌉, so that both levels' rows are about √V long. Example: 50,257 -> 225."""
    return math.isqrt(max(vocab_size, 1) - 1) + 1


def block_masses(p: Any, block: int) -> Any:
    """(R, ⌈V / block⌉): Σ p over each block of ``block`` consecutive ids (the last block may be shorter)."""
    n_rows, vocab = p.shape
    n_full = vocab // block
    masses = p.new_empty((n_rows, -(-vocab // block)))
    masses[:, :n_full] = p[:, :n_full * block].view(n_rows, n_full, block).sum(dim=-1)
    if n_full * block < vocab:
        masses[:, n_full] = p[:, n_full * block:].sum(dim=-1)
    return masses
