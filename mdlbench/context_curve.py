"""PURE (numpy + stdlib): bits against context length, aggregated into power-of-two buckets.

A prediction's context length is ``context_tokens`` exactly as in the ``tokens`` table: the number of tokens it
conditions on, the prefix (BOS) token included; 0 for a symbol coded without a model (a uniform first token,
``uniform-bytes``). Bucket k holds context lengths in [start_k, end_k):

    k = 0: [0, 1)    k = 1: [1, 2)    k = 2: [2, 4)    k = 3: [4, 8)    ...    k: [2^(k-1), 2^k)

so k is the bit length of the context length (``context_bucket(c) == int(c).bit_length()``). Buckets are pure
powers of two whatever the window, so runs at different windows share them; the bucket holding the window size W
ends at the next power of two above W even though no prediction sees more than W tokens.

Use:
    partial = document_curve(context_tokens, code_length_bits, byte_start, byte_end)   # one document, any order
    rows = combine_curves([(domain, partial), ...])                                     # a run: table rows
    rows = merge_curve_rows([rows_of_chunk_0, rows_of_chunk_1, ...])                    # chunks of a run: the same

Rows carry the ``context_curve`` columns (all but the partition key ``run_id``): one row per (domain, non-empty
bucket), domain "" = all documents; documents without a domain count only in "". Sums are exactly rounded
(math.fsum), so the buckets of a run add up to its code length up to the rounding of one final addition.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ALL_DOMAINS = ""


def context_bucket(context_tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """Bucket index of each context length: its bit length (0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...).

    Example: context_bucket([0, 1, 2, 3, 4, 7, 8, 2048]) -> [0, 1, 2, 2, 3, 3, 4, 12].
    """
    c = np.asarray(context_tokens, dtype=np.int64)
    if c.size and int(c.min()) < 0:
        raise ValueError(f"context lengths must be >= 0, got {int(c.min())}")
    # frexp(c) = (m, e) with c = m * 2^e and 0.5 <= m < 1, so e is the bit length (exact below 2^53; frexp(0) = 0).
    return np.frexp(c.astype(np.float64))[1].astype(np.int64)


def bucket_start(k: int) -> int:
    """First context length of bucket k (0 for k = 0, else 2^(k-1))."""
    return 0 if k == 0 else 1 << (k - 1)


def bucket_end(k: int) -> int:
    """One past the last context length of bucket k (2^k)."""
    return 1 << k


@dataclass(frozen=True, slots=True)
class CurvePartial:
    """Per-bucket sums of one document (or of several, see merge_curves); arrays indexed by bucket 0..K-1."""

    n_tokens: np.ndarray  # int64: coded symbols (EOS included)
    n_bytes: np.ndarray | None  # int64: bytes of their spans; None = unknown (a symbol without a byte span)
    code_length_bits: np.ndarray  # float64: exactly rounded sums

    @property
    def total_bits(self) -> float:
        return math.fsum(self.code_length_bits.tolist())


def document_curve(context_tokens: Sequence[int] | np.ndarray, code_length_bits: Sequence[float] | np.ndarray,
                   byte_start: Sequence[int] | np.ndarray | None = None,
                   byte_end: Sequence[int] | np.ndarray | None = None) -> CurvePartial:
    """Per-bucket sums of one document's coded symbols (aligned arrays, one entry per symbol, any order).

    ``byte_start``/``byte_end`` are the symbols' byte spans as in the ``tokens`` table (EOS: an empty span); bytes
    are unknown (``n_bytes`` None) when they are not given or any start is -1 (tokens that do not map to bytes).

    Example: context [1, 2, 3, 4] (BOS, then 3 tokens and EOS in one window), bits [5, 3, 2, 1], spans
    [0,2) [2,3) [3,5) [5,5) -> bucket 1: 1 token, 2 bytes, 5 bits; bucket 2: 2 tokens, 3 bytes, 5 bits;
    bucket 3: 1 token (EOS), 0 bytes, 1 bit.
    """
    ctx = np.asarray(context_tokens, dtype=np.int64)
    bits = np.asarray(code_length_bits, dtype=np.float64)
    if ctx.shape != bits.shape or ctx.ndim != 1:
        raise ValueError(f"context_tokens {ctx.shape} and code_length_bits {bits.shape} must be aligned 1-d arrays")
    k = context_bucket(ctx)
    n_buckets = int(k.max()) + 1 if k.size else 0
    n_tokens = np.bincount(k, minlength=n_buckets).astype(np.int64)
    n_bytes = None
    if byte_start is not None and byte_end is not None:
        start = np.asarray(byte_start, dtype=np.int64)
        end = np.asarray(byte_end, dtype=np.int64)
        if start.shape != ctx.shape or end.shape != ctx.shape:
            raise ValueError("byte_start and byte_end must be aligned with context_tokens")
        if not (start < 0).any():
            width = end - start
            if (width < 0).any():
                raise ValueError("a byte span ends before it starts")
            n_bytes = np.bincount(k, weights=width, minlength=n_buckets).astype(np.int64)
    order = np.argsort(k, kind="stable")
    groups = np.split(bits[order], np.cumsum(n_tokens)[:-1]) if n_buckets else []
    sums = np.array([math.fsum(g.tolist()) for g in groups], dtype=np.float64)
    return CurvePartial(n_tokens, n_bytes, sums)


def merge_curves(partials: Iterable[CurvePartial]) -> CurvePartial:
    """The per-bucket sums of several partials (documents, or chunks of documents): exact counts, fsum'd bits;
    bytes unknown if they are unknown in any part."""
    parts = list(partials)
    n_buckets = max((len(p.n_tokens) for p in parts), default=0)
    n_tokens = np.zeros(n_buckets, dtype=np.int64)
    n_bytes: np.ndarray | None = np.zeros(n_buckets, dtype=np.int64)
    bits: list[list[float]] = [[] for _ in range(n_buckets)]
    for p in parts:
        m = len(p.n_tokens)
        n_tokens[:m] += p.n_tokens
        if p.n_bytes is None or n_bytes is None:
            n_bytes = None
        else:
            n_bytes[:m] += p.n_bytes
        for i, b in enumerate(p.code_length_bits.tolist()):
            bits[i].append(b)
    return CurvePartial(n_tokens, n_bytes, np.array([math.fsum(b) for b in bits], dtype=np.float64))


def curve_rows(domain: str, partial: CurvePartial) -> list[dict[str, Any]]:
    """Table rows of one domain's partial: one per non-empty bucket, in bucket order."""
    rows = []
    for k in range(len(partial.n_tokens)):
        n = int(partial.n_tokens[k])
        if n == 0:
            continue
        bits = float(partial.code_length_bits[k])
        nb = None if partial.n_bytes is None else int(partial.n_bytes[k])
        rows.append({"domain": domain, "context_bucket_start": bucket_start(k), "context_bucket_end": bucket_end(k),
                     "n_tokens": n, "n_bytes": nb, "code_length_bits": bits, "bits_per_token": bits / n,
                     "bits_per_byte": None if nb is None else (bits / nb if nb > 0 else math.nan)})
    return rows


def combine_curves(partials: Iterable[tuple[str, CurvePartial]]) -> list[dict[str, Any]]:
    """``context_curve`` rows (without ``run_id``) from (domain, partial) pairs, one pair per document or chunk.

    Rows: domain "" (all documents) first, then each non-empty domain in sorted order; buckets ascending.
    """
    by_domain: dict[str, list[CurvePartial]] = defaultdict(list)
    everything = []
    for domain, p in partials:
        everything.append(p)
        if domain:
            by_domain[domain].append(p)
    rows = curve_rows(ALL_DOMAINS, merge_curves(everything))
    for domain in sorted(by_domain):
        rows += curve_rows(domain, merge_curves(by_domain[domain]))
    return rows


def merge_curve_rows(row_lists: Iterable[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of several disjoint sets of documents (e.g. the checkpoint chunks of a run, each from combine_curves)
    merged into the rows of their union: counts added, bits fsum'd, rates recomputed; bytes null if null in any.

    The same rows as combine_curves over all the documents at once (bits up to the rounding of one addition).
    """
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for rows in row_lists:
        for r in rows:
            groups[(str(r["domain"]), int(r["context_bucket_start"]))].append(r)
    out = []
    for domain, start in sorted(groups, key=lambda k: (k[0] != ALL_DOMAINS, k)):
        g = groups[(domain, start)]
        k = int(start).bit_length()
        partial = CurvePartial(np.array([int(r["n_tokens"]) for r in g], dtype=np.int64),
                               None if any(r["n_bytes"] is None for r in g) else
                               np.array([int(r["n_bytes"]) for r in g], dtype=np.int64),
                               np.array([float(r["code_length_bits"]) for r in g], dtype=np.float64))
        n, bits = int(partial.n_tokens.sum()), partial.total_bits
        nb = None if partial.n_bytes is None else int(partial.n_bytes.sum())
        out.append({"domain": domain, "context_bucket_start": bucket_start(k), "context_bucket_end": bucket_end(k),
                    "n_tokens": n, "n_bytes": nb, "code_length_bits": bits, "bits_per_token": bits / n,
                    "bits_per_byte": None if nb is None else (bits / nb if nb > 0 else math.nan)})
    return out


def curve_from_tokens(tokens: Any, domains: Mapping[int, str]) -> list[dict[str, Any]]:
    """``context_curve`` rows of one run from its ``tokens`` rows (a DataFrame or a mapping of column -> array with
    ``doc_index``, ``context_tokens``, ``code_length_bits``, ``byte_start``, ``byte_end``) and each document's
    domain by ``doc_index``. Same rows as the scorer's per-document partials combined."""
    doc = np.asarray(tokens["doc_index"], dtype=np.int64)
    ctx = np.asarray(tokens["context_tokens"], dtype=np.int64)
    bits = np.asarray(tokens["code_length_bits"], dtype=np.float64)
    start = np.asarray(tokens["byte_start"], dtype=np.int64)
    end = np.asarray(tokens["byte_end"], dtype=np.int64)
    order = np.argsort(doc, kind="stable")
    doc, ctx, bits, start, end = doc[order], ctx[order], bits[order], start[order], end[order]
    cuts = np.flatnonzero(np.diff(doc)) + 1
    pairs = []
    for s, e in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(doc)]]), strict=True):
        if e > s:
            pairs.append((domains[int(doc[s])], document_curve(ctx[s:e], bits[s:e], start[s:e], end[s:e])))
    return combine_curves(pairs)
