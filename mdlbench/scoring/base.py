"""What every scorer shares: per-document results and the scorer protocol (settings live in config.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mdlbench.context_curve import CurvePartial
from mdlbench.corpora import Document


@dataclass(slots=True)
class TokenCodes:
    """Per-token rows of one document (only with --per-token). Arrays are aligned."""

    token_index: np.ndarray  # int64: index into the document's tokens (n_tokens = the EOS row, if any)
    token_id: np.ndarray  # int64
    byte_start: np.ndarray  # int64; -1 where the tokenizer's tokens do not map to exact byte spans
    byte_end: np.ndarray  # int64
    context_tokens: np.ndarray  # int64: tokens the prediction conditioned on (0 for a uniform code)
    code_length_bits: np.ndarray  # float64


@dataclass(slots=True)
class DocumentCode:
    """The code length of one document, with its parts."""

    doc_index: int
    doc: Document
    n_tokens: int  # tokens of the text (BOS/EOS not counted)
    code_length_bits: float  # everything: first token + model predictions + end
    first_token_bits: float  # the part charged for token 0: log2|V| under uniform, the model's bits given BOS under bos
    end_bits: float  # the part charged for EOS (0 with end=none)
    tokenizer_roundtrip_ok: bool
    n_forward_tokens: int = 0  # tokens the model read (throughput accounting)
    tokens: TokenCodes | None = field(default=None)  # only with --per-token
    curve: CurvePartial | None = field(default=None)  # bits by context length (context_curve.py)


@dataclass(frozen=True, slots=True)
class ScoredPositions:
    """The inputs of one forward batch whose next-token predictions are coded: batch row ``rows[i]``, column
    ``cols[i]`` (torch int64 tensors on the model's device, one entry per coded prediction, each stream position
    once), and ``documents[r]``, the document in batch row r."""

    rows: Any
    cols: Any
    documents: tuple[Document, ...]


class ForwardObserver(Protocol):
    """Sees the scoring forward passes (e.g. through module hooks) without changing them: ``begin`` right before a
    batch's forward, ``commit`` once its code lengths are computed. A batch that fails (an out-of-memory retry)
    gets ``begin`` again without ``commit``, so what it recorded must be dropped."""

    def begin(self, positions: ScoredPositions) -> None: ...

    def commit(self) -> None: ...


class Scorer(Protocol):
    """A code for documents. ``HFScorer`` (a language model) and ``UniformBytesScorer`` implement it."""

    name: str
    vocab_size: int
    # Called after every forward batch with the predictions it coded and the bytes of the tokens they predicted
    # (live tokens/s, bytes and ETA between checkpoints); None: nobody asked.
    on_progress: Callable[[int, int], None] | None

    def prepare(self, docs: Iterable[tuple[int, Document]]) -> list[Any]:
        """CPU-side preparation of a chunk (tokenization, window plans); may run in a background thread."""
        ...

    def run(self, pool: list[Any]) -> Iterator[DocumentCode]:
        """Code a prepared chunk; yields in any order, each document exactly once."""
        ...

    def score(self, docs: Iterable[tuple[int, Document]]) -> Iterator[DocumentCode]:
        """prepare + run."""
        ...
