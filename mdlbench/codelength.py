"""PURE arithmetic on code lengths: unit conversions, sum-then-divide rates, and the document bootstrap.

Every corpus rate is a ratio of sums (Σ bits / Σ bytes), never a mean of per-document ratios, so that
``bits_per_byte * n_bytes == bits_per_char * n_chars == code_length_bits`` up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

ArrayOrFloat = TypeVar("ArrayOrFloat")  # a float, a numpy array or a torch tensor

LN2 = math.log(2.0)
BITS_PER_BYTE = 8  # a raw byte costs 8 bits: the uniform code over 256 byte values, and the unit of every file size


def nats_to_bits(nats: ArrayOrFloat) -> ArrayOrFloat:
    """Natural-log code lengths to bits (a number or an array). Example: nats_to_bits(math.log(2)) == 1.0."""
    return nats / LN2


def bytes_to_bits(n_bytes: int) -> int:
    """Size of a file or stream in bits. Example: a 20-byte gzip header is 160 bits."""
    return BITS_PER_BYTE * n_bytes


def uniform_bits(vocab_size: int) -> float:
    """Cost of one symbol under the uniform code over ``vocab_size`` symbols: log2|V|."""
    return math.log2(vocab_size)


def rate(code_length_bits: float, n_units: int) -> float:
    """Bits per unit (byte, char, token); NaN when there are no units (an all-empty corpus), never a ZeroDivision."""
    return code_length_bits / n_units if n_units > 0 else math.nan


def bits_per_byte(code_length_bits: float, n_bytes: int) -> float:
    return rate(code_length_bits, n_bytes)


def bits_per_char(code_length_bits: float, n_chars: int) -> float:
    return rate(code_length_bits, n_chars)


def bits_per_token(code_length_bits: float, n_tokens: int) -> float:
    return rate(code_length_bits, n_tokens)


def fsum_bits(values: Sequence[float] | np.ndarray) -> float:
    """Exactly rounded float64 sum (math.fsum): totals do not depend on summation order or batch layout."""
    return math.fsum(np.asarray(values, dtype=np.float64).tolist())


def bootstrap_ratio_ci(numerators: Sequence[float], denominators: Sequence[float], *, n_samples: int = 10_000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of Σ num / Σ den under resampling documents with replacement (METHODS §7).

    Documents, not tokens, are resampled: tokens within a document are dependent. Returns (nan, nan) when
    there are fewer than 2 documents or no resample has a positive denominator.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    n = len(num)
    if n < 2 or n_samples <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    ratios = np.empty(n_samples, dtype=np.float64)
    chunk = max(1, 2_000_000 // n)  # bound memory: resample indices in chunks
    for start in range(0, n_samples, chunk):
        stop = min(start + chunk, n_samples)
        idx = rng.integers(0, n, size=(stop - start, n))
        d = den[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios[start:stop] = np.where(d > 0, num[idx].sum(axis=1) / d, np.nan)
    ratios = ratios[~np.isnan(ratios)]
    if len(ratios) == 0:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_bootstrap_diff_ci(bits_a: Sequence[float], bits_b: Sequence[float], n_bytes: Sequence[float], *,
                             n_samples: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """ΔR = Σ(b_A − b_B)/Σ n with a CI from resampling documents (same indices for both models)."""
    a = np.asarray(bits_a, dtype=np.float64)
    b = np.asarray(bits_b, dtype=np.float64)
    diff = a - b
    point = rate(fsum_bits(diff), int(np.sum(n_bytes)))
    low, high = bootstrap_ratio_ci(diff, n_bytes, n_samples=n_samples, seed=seed, level=level)
    return point, low, high
