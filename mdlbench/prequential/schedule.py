"""PURE arithmetic of prequential codes: block boundaries, the uniform first-block cost, byte attribution.

No torch here; everything is a typed function of integers and floats, so the accounting can be tested exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Voita & Titov (2020), footnote 4: block ends at these fractions of the corpus (0.1 % ... 100 %).
DEFAULT_BLOCK_FRACTIONS: tuple[float, ...] = (
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0,
)


def check_fractions(fractions: Sequence[float]) -> None:
    """Raise ValueError unless the fractions strictly increase within (0, 1] and end at exactly 1.0."""
    if not fractions:
        raise ValueError("block fractions: need at least one (the last must be 1.0)")
    previous = 0.0
    for f in fractions:
        if not (isinstance(f, (int, float)) and math.isfinite(f)) or not previous < f <= 1.0:
            raise ValueError(f"block fractions {list(fractions)!r}: must strictly increase within (0, 1]")
        previous = float(f)
    if fractions[-1] != 1.0:
        raise ValueError(f"block fractions {list(fractions)!r}: the last must be 1.0 so every token is coded")


def block_boundaries(n_tokens: int, fractions: Sequence[float] = DEFAULT_BLOCK_FRACTIONS,
                     min_block_tokens: int = 1) -> list[int]:
    """Token offsets ``[0 = t_0 < t_1 < ... < t_S = n_tokens]`` from cumulative fractions of the corpus.

    ``t_i = round(fractions[i-1] * n_tokens)``; boundaries that round onto an earlier one (or onto 0) are
    dropped, so there are no empty blocks. Then blocks shorter than ``min_block_tokens`` are merged into the
    following block (the last block, if short, into the one before). Example: n_tokens=1000 with the default
    fractions gives [0, 1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]; with min_block_tokens=10 it gives
    [0, 16, 32, 62, 125, 250, 500, 1000].

    Invariant: the blocks ``[t_i, t_{i+1})`` partition ``[0, n_tokens)`` (no gap, no overlap); for
    ``n_tokens == 0`` the result is ``[0]`` (no blocks).
    """
    if n_tokens < 0:
        raise ValueError(f"n_tokens {n_tokens}: must be >= 0")
    if min_block_tokens < 1:
        raise ValueError(f"min_block_tokens {min_block_tokens}: must be >= 1")
    check_fractions(fractions)
    bounds = [0]
    for f in fractions[:-1]:
        t = round(f * n_tokens)
        if bounds[-1] < t < n_tokens:
            bounds.append(t)
    if n_tokens == 0:
        return bounds
    bounds.append(n_tokens)
    merged = [0]
    for t in bounds[1:-1]:
        if t - merged[-1] >= min_block_tokens:
            merged.append(t)
    if len(merged) > 1 and n_tokens - merged[-1] < min_block_tokens:
        merged.pop()  # a short last block joins the one before it
    merged.append(n_tokens)
    return merged


def batch_boundaries(n_tokens: int, batch_tokens: int) -> list[int]:
    """Offsets of consecutive batches of ``batch_tokens`` tokens (the last one may be shorter).

    Example: batch_boundaries(10, 4) == [0, 4, 8, 10]. The online estimator's batches, written as blocks.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens {batch_tokens}: must be >= 1")
    return [*range(0, n_tokens, batch_tokens), n_tokens] if n_tokens > 0 else [0]


def uniform_code_length_bits(n_tokens: int, vocab_size: int) -> float:
    """The code agreed in advance for the first block: ``n_tokens * log2(vocab_size)`` bits, exactly this product."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size {vocab_size}: must be >= 1")
    return n_tokens * math.log2(vocab_size)


def prequential_code_length_bits(block_code_length_bits: Sequence[float]) -> float:
    """L_preq = Σ over blocks of their code lengths (block 1 included once), an exactly rounded float64 sum.

    Voita & Titov eq. 3: ``t_1 log2|V| + Σ_{i>=1} -log2 p_{θ_i}(block i+1)``; the caller passes the first block's
    uniform cost as the first element, and it is not added anywhere else (METHODS §3.5: a public implementation
    counts it twice).
    """
    return math.fsum(float(b) for b in block_code_length_bits)


def sequence_spans(token_start: int, token_end: int, context_tokens: int) -> list[tuple[int, int, int]]:
    """The fixed grid of coding/training sequences that covers tokens ``[token_start, token_end)``.

    The stream is cut into sequences ``[k*C, (k+1)*C)``, C = ``context_tokens``. Returns, for each sequence that
    overlaps the range, ``(sequence_start, first_scored, end)``: the model reads tokens
    ``[sequence_start, end - 1)`` after a fixed start symbol and is scored on ``[first_scored, end)``, where
    ``first_scored = max(sequence_start, token_start)`` and ``end = min((k+1)*C, token_end)``. Example:
    sequence_spans(5, 12, 4) == [(4, 5, 8), (8, 8, 12)].

    Invariant: the scored ranges partition ``[token_start, token_end)``; a token never reads a token at or
    after ``token_end`` (nor at or after itself), nor one before its sequence start.
    """
    if context_tokens < 1:
        raise ValueError(f"context_tokens {context_tokens}: must be >= 1")
    spans: list[tuple[int, int, int]] = []
    if token_end <= token_start:
        return spans
    k = token_start // context_tokens
    while k * context_tokens < token_end:
        start = k * context_tokens
        spans.append((start, max(start, token_start), min(start + context_tokens, token_end)))
        k += 1
    return spans


def proportional_byte_attribution(n_tokens: int, n_bytes: int) -> list[int]:
    """Split ``n_bytes`` over ``n_tokens`` tokens as evenly as integers allow: token j gets
    ``floor((j+1)*B/n) - floor(j*B/n)`` bytes. Example: (3, 7) -> [2, 2, 3]. Invariant: the sum is exactly B.
    """
    if n_tokens <= 0:
        if n_bytes:
            raise ValueError(f"cannot attribute {n_bytes} bytes to zero tokens")
        return []
    return [(j + 1) * n_bytes // n_tokens - j * n_bytes // n_tokens for j in range(n_tokens)]
