"""`uniform-bytes`: the non-neural sanity line. Every byte costs exactly 8 bits; nothing else is charged."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from mdlbench.codelength import BITS_PER_BYTE
from mdlbench.config import UNIFORM_BYTES
from mdlbench.context_curve import document_curve
from mdlbench.corpora import Document
from mdlbench.scoring.base import DocumentCode, TokenCodes


class UniformBytesScorer:
    """Implements ``scoring.base.Scorer``; nothing runs a model, so there is no per-batch progress."""

    name = UNIFORM_BYTES
    vocab_size = 256

    def __init__(self, per_token: bool = False) -> None:
        self.per_token = per_token
        self.on_progress: Callable[[int, int], None] | None = None

    def prepare(self, docs: Iterable[tuple[int, Document]]) -> list[tuple[int, Document]]:
        return list(docs)

    def run(self, pool: list[tuple[int, Document]]) -> Iterator[DocumentCode]:
        return self.score(pool)

    def score(self, docs: Iterable[tuple[int, Document]]) -> Iterator[DocumentCode]:
        for doc_index, doc in docs:
            data = doc.text.encode("utf-8")
            n = len(data)
            idx = np.arange(n, dtype=np.int64)
            context, bits = np.zeros(n, dtype=np.int64), np.full(n, float(BITS_PER_BYTE))  # no model: no context
            tokens = TokenCodes(idx, np.frombuffer(data, dtype=np.uint8).astype(np.int64), idx, idx + 1, context,
                                bits) if self.per_token else None
            first_bits = float(BITS_PER_BYTE) if n else 0.0
            yield DocumentCode(doc_index, doc, n, float(BITS_PER_BYTE * n), first_bits, 0.0, True, 0, tokens,
                               document_curve(context, bits, idx, idx + 1))
