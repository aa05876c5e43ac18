"""PURE lockstep batch plan: which documents are coded side by side, and at which step each one starts.

Encoder and decoder must compute bit-identical probability rows, and a row depends on the batch it was computed
in (its shape, and where the document's keys sit in the padded KV cache). So the batches are not chosen at run
time: they follow from the recorded settings and the documents' prediction counts alone, and both sides replay
them. Two levels::

    chunks   consecutive documents in corpus order; a chunk closes after the document that brings it to
             ``chunk_docs`` documents or ``chunk_predictions`` model predictions. Chunks are coded independently
             (the unit of resume after a crash, and what `decompress --doc` decodes to reach one document).
    slots    inside a chunk, ``batch_size`` slots code one document each, one prediction per step. Documents enter
             longest first (ties: corpus order); a slot whose document ends at step s takes the next document at
             step s + 1 (the slot that frees first, lowest slot index on ties). A slot with nothing left to take
             leaves the batch.

    >>> assign_slots([5, 3, 0, 4], batch_size=2)
    [Assignment(doc=0, slot=0, start=0), Assignment(doc=3, slot=1, start=0), Assignment(doc=1, slot=1, start=4)]

Invariants (tested property-based): every document with M > 0 predictions runs exactly M consecutive steps in one
slot; documents in a slot never overlap; at most ``batch_size`` run at once; no slot idles while a document waits.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import NamedTuple


class Assignment(NamedTuple):
    doc: int  # index within the chunk
    slot: int
    start: int  # the step of the document's first prediction (u = 0); it runs steps start .. start + M - 1


def entry_order(n_predictions: Sequence[int]) -> list[int]:
    """Documents with at least one prediction, longest first; ties keep corpus order."""
    return sorted((i for i, m in enumerate(n_predictions) if m > 0), key=lambda i: (-n_predictions[i], i))


def assign_slots(n_predictions: Sequence[int], batch_size: int) -> list[Assignment]:
    """Greedy longest-first slot assignment (see the module docstring), in order of entry."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    order = entry_order(n_predictions)
    free: list[tuple[int, int]] = [(0, slot) for slot in range(min(batch_size, len(order)))]  # (free at step, slot)
    heapq.heapify(free)
    out = []
    for doc in order:
        start, slot = heapq.heappop(free)
        out.append(Assignment(doc, slot, start))
        heapq.heappush(free, (start + n_predictions[doc], slot))
    return out


def plan_chunks(n_predictions: Sequence[int], chunk_docs: int, chunk_predictions: int) -> list[range]:
    """Consecutive document ranges; a chunk closes after the document that reaches either limit."""
    if chunk_docs < 1 or chunk_predictions < 1:
        raise ValueError(f"chunk limits must be >= 1, got {chunk_docs} documents, {chunk_predictions} predictions")
    chunks, start, total = [], 0, 0
    for i, m in enumerate(n_predictions):
        total += m
        if i + 1 - start >= chunk_docs or total >= chunk_predictions:
            chunks.append(range(start, i + 1))
            start, total = i + 1, 0
    if start < len(n_predictions):
        chunks.append(range(start, len(n_predictions)))
    return chunks


def chunk_closes(n_docs: int, n_predictions_total: int, chunk_docs: int, chunk_predictions: int) -> bool:
    """The streaming form of :func:`plan_chunks`: does the chunk close after its n_docs-th document?"""
    return n_docs >= chunk_docs or n_predictions_total >= chunk_predictions
