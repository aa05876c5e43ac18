"""Chunked scoring: documents in fixed chunks, each scored as one pool and checkpointed atomically.

A chunk is ``checkpoint_docs`` consecutive documents; chunk k belongs to shard ``k % n_shards`` (run/state.py).
Because a chunk is always scored as the same pool of documents, a resumed, sharded or distributed run reproduces
an uninterrupted one bit for bit (same batch size and thread count).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from mdlbench import tables
from mdlbench.context_curve import combine_curves
from mdlbench.corpora import Corpus, Document, StreamHasher
from mdlbench.progress import Progress
from mdlbench.run.state import RunState, Shard
from mdlbench.scoring.base import DocumentCode, Scorer

Chunk = list[tuple[int, Document]]


def document_rows(model: str, corpus: str, codes: Sequence[DocumentCode]) -> list[dict[str, Any]]:
    """Rows of the ``documents`` table."""
    return [{"model": model, "corpus": corpus, "doc_index": c.doc_index, "doc_id": c.doc.doc_id, "domain": c.doc.domain,
             "n_bytes": c.doc.n_bytes, "n_chars": c.doc.n_chars, "n_tokens": c.n_tokens,
             "code_length_bits": c.code_length_bits, "first_token_bits": c.first_token_bits,
             "end_bits": c.end_bits, "tokenizer_roundtrip_ok": c.tokenizer_roundtrip_ok,
             "n_replaced_bytes": c.doc.n_replaced_bytes} for c in codes]


def token_columns(model: str, corpus: str, codes: Sequence[DocumentCode]) -> dict[str, Any]:
    """Columns of the ``tokens`` table (one row per coded symbol)."""
    parts = [c for c in codes if c.tokens is not None]
    n_rows = sum(len(c.tokens.token_index) for c in parts)

    def cat(attr: str) -> np.ndarray:
        arrays = [getattr(c.tokens, attr) for c in parts]
        return np.concatenate(arrays) if arrays else np.zeros(0)

    doc_index = np.concatenate([np.full(len(c.tokens.token_index), c.doc_index) for c in parts]) if parts else \
        np.zeros(0, dtype=np.int64)
    return {"model": [model] * n_rows, "corpus": [corpus] * n_rows, "doc_index": doc_index,
            "doc_id": [c.doc.doc_id for c in parts for _ in range(len(c.tokens.token_index))],
            **{k: cat(k) for k in ("token_index", "token_id", "byte_start", "byte_end", "context_tokens",
                                   "code_length_bits")}}


def score_corpus(scorer: Scorer, corpus: Corpus) -> tuple[list[DocumentCode], str]:
    """Code every document of a corpus as one pool (tests and small corpora): codes in order, stream sha256."""
    hasher = StreamHasher()
    docs = []
    for i, doc in enumerate(corpus.documents()):
        hasher.update(doc)
        docs.append((i, doc))
    codes = sorted(scorer.score(docs), key=lambda c: c.doc_index)
    if [c.doc_index for c in codes] != list(range(len(docs))):
        raise AssertionError("scorer lost or duplicated documents")  # an internal bug, never user input
    return codes, hasher.hexdigest()


def iter_chunks(corpus: Corpus, chunk_docs: int) -> Iterator[Chunk]:
    """The corpus in consecutive chunks of ``chunk_docs`` (index, document) pairs; the last may be shorter."""
    chunk: Chunk = []
    for i, doc in enumerate(corpus.documents()):
        chunk.append((i, doc))
        if len(chunk) == chunk_docs:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _owned_chunks(corpus: Corpus, state: RunState, shard: Shard, chunk_docs: int, hasher: StreamHasher,
                  counter: list[int], progress: Progress) -> Iterator[tuple[int, Chunk]]:
    """Yield (k, chunk) for this shard's chunks that are not done; hash and count every document on the way."""
    for k, chunk in enumerate(iter_chunks(corpus, chunk_docs)):
        for _, doc in chunk:
            hasher.update(doc)
        counter[0] += len(chunk)
        if shard.owns(k) and not state.chunk_done(k):
            yield k, chunk
        else:
            progress.update(len(chunk), sum(d.n_bytes for _, d in chunk), 0)


def score_chunks(scorer: Scorer, model: str, corpus: Corpus, state: RunState, shard: Shard, *, chunk_docs: int,
                 per_token: bool, progress: Progress) -> tuple[int, str]:
    """Score this shard's chunks that are not done yet; returns (documents in the corpus, stream sha256).

    Reading and tokenizing chunk k+1 runs in a background thread while the model codes chunk k, and chunk k's
    checkpoint (Arrow conversion, Parquet write, fsync) in another while the model codes chunk k+1. At most one
    write is in flight, so memory stays bounded and a write error surfaces at the next chunk. A crash loses only
    chunks whose write had not finished; a resume redoes them.
    """
    hasher = StreamHasher()
    counter = [0]
    counted = [0]  # bytes of the current chunk already reported per batch

    def on_batch(n_predictions: int, n_bytes: int) -> None:
        counted[0] += n_bytes
        progress.update(0, n_bytes, n_predictions)

    scorer.on_progress = on_batch
    chunks = _owned_chunks(corpus, state, shard, chunk_docs, hasher, counter, progress)

    def next_prepared() -> tuple[int, Chunk, Any] | None:
        item = next(chunks, None)
        return None if item is None else (item[0], item[1], scorer.prepare(item[1]))

    def write(k: int, codes: list[DocumentCode], seconds: float) -> None:
        docs_table = tables.to_arrow("documents", document_rows(model, corpus.name, codes))
        tokens_table = tables.columns_to_arrow("tokens", token_columns(model, corpus.name, codes)) if per_token \
            else None
        curve = [{"model": model, "corpus": corpus.name, **row}
                 for row in combine_curves((c.doc.domain, c.curve) for c in codes if c.curve is not None)]
        state.write_chunk(k, docs_table, tokens_table, seconds, tables.to_arrow("context_curve", curve))

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdlbench-prepare") as pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdlbench-write") as writer:
            pending = pool.submit(next_prepared)
            written: Future[None] | None = None
            while (item := pending.result()) is not None:
                k, chunk, prepared = item
                pending = pool.submit(next_prepared)
                t0 = time.perf_counter()
                counted[0] = 0
                codes = sorted(scorer.run(prepared), key=lambda c: c.doc_index)
                if [c.doc_index for c in codes] != [i for i, _ in chunk]:
                    raise AssertionError("scorer lost or duplicated documents")  # an internal bug, never user input
                seconds = time.perf_counter() - t0
                if written is not None:
                    written.result()
                written = writer.submit(write, k, codes, seconds)
                # Tokens and most bytes were counted per forward batch (on_progress); the rest of the chunk's bytes
                # (the first token under --first-token uniform) and a scorer without a model count here.
                live = any(c.n_forward_tokens for c in codes)
                progress.update(len(chunk), sum(c.doc.n_bytes for c in codes) - counted[0],
                                0 if live else sum(c.n_tokens for c in codes))
            if written is not None:
                written.result()
    finally:
        scorer.on_progress = None
    return counter[0], hasher.hexdigest()
