"""What every scorer shares: settings, per-document results, and the scorer protocol."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from mdlbench.corpora import Document

FirstToken = Literal["bos", "uniform"]
End = Literal["eos", "none"]


@dataclass(frozen=True, slots=True)
class ScoringSettings:
    """How a document becomes a code. Every field changes numbers (except batch_size, which must not)."""

    window: int | None = None  # tokens per forward pass; None = the model's context (capped, see models.py)
    stride: int | None = None  # new tokens scored per window after the first; None = window // 2
    first_token: FirstToken = "bos"
    end: End = "eos"
    batch_size: int = 8
    per_token: bool = False


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
    first_token_bits: float  # the part charged for token 0 (0 under bos: the model's prediction is in the total)
    end_bits: float  # the part charged for EOS (0 with end=none)
    tokenizer_roundtrip_ok: bool
    n_forward_tokens: int = 0  # tokens the model read (throughput accounting)
    tokens: TokenCodes | None = field(default=None)


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
    name: str
    vocab_size: int

    def prepare(self, docs: Iterable[tuple[int, Document]]) -> list[Any]:
        """CPU-side preparation of a chunk (tokenization, window plans); may run in a background thread."""
        ...

    def run(self, pool: list[Any]) -> Iterator[DocumentCode]:
        """Code a prepared chunk; yields in any order, each document exactly once."""
        ...

    def score(self, docs: Iterable[tuple[int, Document]]) -> Iterator[DocumentCode]:
        """prepare + run."""
        ...
