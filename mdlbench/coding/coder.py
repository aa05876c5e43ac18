"""Real compression: range-code documents with a model's per-token probabilities, and decode them back.

What is coded (the same stream and windows as ``mdlbench run``, scoring/hf.py and windowing.py)::

    stream = [prefix] + tokens + [eos]    prefix under first_token="bos" (context only, never coded);
                                          eos under end="eos" (coded, so its cost is in the code length)
    stream[0] under first_token="uniform" is coded with the uniform distribution over the model's |V|;
    stream[u + 1], u = 0 .. M-1, is coded with p(. | stream[w.input_start : u + 1]) where w is the window of
    plan_windows(M, window, stride) that owns u (M = len(stream) - 1).

The index stores each document's token count n: the decoder needs M to rebuild the same window plan (the last
window of ``plan_windows`` starts at M - window) and the same batch plan, and uses n to stop. Under end="eos" the
EOS is still coded (its bits are part of the code length that ``mdlbench run`` reports) and the decoder checks
that it decodes EOS there.

Documents are coded in lockstep batches (lockstep.py, plan.py): B documents side by side, one token each per
step, with a KV cache, so one forward serves B symbols. Coder: constriction 0.5's ``RangeEncoder``/``RangeDecoder``
(32-bit words, 24-bit probabilities) with ``Categorical(perfect=False)``, one coder per document, so
``coded_bits = 8 * payload_bytes`` is a multiple of 32 per document; each token is coded in two levels, its block
of ⌈√V⌉ ids and its place in the block (rows.py). ``ideal_bits`` is Σ −log2 p of the float32 softmax rows the
coder is given, each normalized by its float64 sum (rows.ideal_bits), i.e. the code length ``mdlbench run``
measures up to the KV-cache vs batched-forward rounding (README: within 1e-6 relative, tested).

Fallback: bytes that are not valid UTF-8, text the tokenizer does not round-trip, or token ids outside the
model's output layer are stored as raw bytes (method "raw-bytes": exactly 8 bits per byte, which is the uniform
256-symbol code); the index says why. ``--model uniform-bytes`` always does this (method "uniform-bytes").

Determinism conditions. Decoding recomputes every probability row, and it works only if the decoder's rows are
bit-identical to the encoder's. Both sides therefore run one code path and one batch plan: the plan follows from
the recorded batch size, chunk limits and the documents' token counts (and is stored and checked); rows depend on
the batch layout, so decoding with another batch size is refused. Bit-identical rows additionally need: the same
weights (sha256 checked) and tokenizer (sha256 checked); the same window, stride, first-token and end settings and
BOS/EOS ids (stored, checked); the same dtype (stored, used when loading); and the same numerical environment —
device type and hardware, torch and transformers versions (kernel and attention implementation choice), and
torch's intra-op thread count (CPU reductions can split differently). The environment is recorded in the header
and any difference is reported as a warning before decoding. CPU runs in one environment are deterministic; on
CUDA, identical GPU model, driver and library versions are needed and this was not tested. A row does not depend
on the values in the batch's other rows (only on the layout), which is what lets a document with a damaged
payload be skipped while the others decode. If anything differs, decoding fails with
:class:`DecodeMismatchError` (each original's length and sha256 are checked), never with silent garbage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mdlbench.codelength import bytes_to_bits
from mdlbench.coding.archive import (
    CHUNK_STEPS,
    BatchSettings,
    Source,
    batch_settings,
    compress_documents,
    decode_archive,
    open_archive,
)
from mdlbench.coding.identity import (
    CodingModel,
    End,
    FirstToken,
    Method,
    ModelMismatchError,
    check_model_arg,
    environment_warnings,
    resolve_settings,
)
from mdlbench.corpora import Document
from mdlbench.tables import to_arrow

FILE_BATCH = BatchSettings(1, 1, CHUNK_STEPS)  # a single document: one slot, one chunk


@dataclass(frozen=True, slots=True)
class Compressed:
    """One document in a container of kind "file"."""

    blob: bytes  # the whole .mdlz file
    meta: dict[str, Any]  # the header
    entry: dict[str, Any]  # the document's index entry
    header_bytes: int  # fixed part + header + index
    payload_bytes: int
    ideal_bits: float  # Σ −log2 p of the coded symbols, from the rows the coder used
    n_symbols: int  # symbols coded: tokens (+ first token under uniform, + EOS), or bytes for raw methods
    method: Method
    fallback_reason: str  # "" unless the raw-bytes fallback was taken
    seconds: float

    @property
    def coded_bits(self) -> int:
        return bytes_to_bits(self.payload_bytes)


@dataclass(frozen=True, slots=True)
class Decompressed:
    data: bytes
    meta: dict[str, Any]
    n_symbols: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


def compress_bytes(model: CodingModel, data: bytes, *, window: int | None = None, stride: int | None = None,
                   first_token: FirstToken | None = None, end: End | None = None, name: str = "input",
                   progress: Any = None) -> Compressed:
    """Code ``data`` as one document into a complete ``.mdlz`` container (see the module docstring).

    Example: with ``model="uniform-bytes"``, b"abc" gives a payload of exactly 3 bytes (24 bits).
    """
    check_model_arg(model)
    start = time.perf_counter()
    settings = None if isinstance(model, str) else resolve_settings(model, window=window, stride=stride,
                                                                      first_token=first_token, end=end)
    packed = compress_documents(model, [Source(name, data)], settings=settings, batch=FILE_BATCH, kind="file",
                                progress=progress)
    assert packed.blob is not None
    entry = packed.entries[0]
    return Compressed(packed.blob, packed.header, entry, packed.header_bytes, int(entry["payload_bytes"]),
                      float(entry["ideal_bits"]), int(entry["n_symbols"]), entry["method"],
                      entry.get("fallback_reason", ""), time.perf_counter() - start)


def decompress_bytes(blob: bytes, model: CodingModel | None = None, *, name: str = "input", progress: Any = None,
                     batch_size: int | None = None) -> Decompressed:
    """Decode a one-document container. ``model`` is needed only for method "model"; it must be the compressor."""
    start = time.perf_counter()
    c = open_archive(blob, name=name)
    if len(c.entries) != 1:
        raise ModelMismatchError(f"{name} is an archive of {len(c.entries)} documents; use decompress_archive "
                                 "(`mdlbench decompress ARCHIVE -o DEST`)")
    warnings = environment_warnings(c.header, model) if not isinstance(model, str | None) else []
    [doc] = list(decode_archive(c, model, batch_size=batch_size, progress=progress))
    if doc.data is None:
        assert doc.error is not None
        raise type(doc.error)(" ".join([str(doc.error), *warnings]))
    return Decompressed(doc.data, c.header, int(doc.entry["n_symbols"]), time.perf_counter() - start, warnings)


# -- verification for `mdlbench run --verify-coding` ---------------------------------------------------------
CODING_TABLE = "coding"  # its schema: tables.TABLES["coding"]


def verify_coding(loaded_model: CodingModel, docs: Sequence[Document], *, window: int,
                  stride: int | None = None, first_token: FirstToken = "bos", end: End = "eos",
                  doc_indices: Sequence[int] | None = None, batch_size: int | None = None) -> list[dict[str, Any]]:
    """Compress the documents into one archive, decompress it, and give one row per document (``coding`` table).

    ``ideal_bits`` equals the ``code_length_bits`` that ``mdlbench run`` reports for the same document and
    settings (same stream, same windows) up to float rounding of the incremental vs batched forward.
    A decode that does not reproduce the document gives ``roundtrip_ok = False``; other errors propagate.
    """
    check_model_arg(loaded_model)
    if isinstance(loaded_model, str):
        settings, batch = None, batch_settings(batch_size, loaded_model, None)
    else:
        settings = resolve_settings(loaded_model, window=window, stride=stride, first_token=first_token, end=end)
        batch = batch_settings(batch_size, loaded_model, settings.window)
    sources = [Source(d.doc_id, d.text.encode("utf-8"), d.domain) for d in docs]
    packed = compress_documents(loaded_model, sources, settings=settings, batch=batch)
    assert packed.blob is not None
    c = open_archive(packed.blob, name="verify-coding")
    decoded = {d.index: d for d in decode_archive(c, loaded_model)}
    return coding_rows(packed.entries, packed.header_bytes, packed.seconds,
                       [decoded[i].data == sources[i].data for i in range(len(sources))],
                       [decoded[i].seconds for i in range(len(sources))], doc_indices)


def coding_rows(entries: Sequence[dict[str, Any]], header_bytes: int, encode_seconds: Sequence[float],
                roundtrip_ok: Sequence[bool], decode_seconds: Sequence[float],
                doc_indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The ``coding`` table's rows for an archive's entries (tables.py says how the shared bytes are split)."""
    n = len(entries)
    share, rest = divmod(header_bytes, n) if n else (0, 0)
    rows = []
    for i, e in enumerate(entries):
        coded = bytes_to_bits(int(e["payload_bytes"]))
        ideal = float(e["ideal_bits"])
        rows.append({"doc_index": int(doc_indices[i]) if doc_indices is not None else i, "doc_id": e["id"],
                     "method": e["method"],
                     "n_tokens": int(e["n_tokens"]) if e["method"] == "model" else int(e["original_bytes"]),
                     "ideal_bits": ideal, "coded_bits": coded, "overhead_bits": coded - ideal,
                     "header_bytes": share + (i < rest), "roundtrip_ok": bool(roundtrip_ok[i]),
                     "encode_seconds": float(encode_seconds[i]), "decode_seconds": float(decode_seconds[i])})
    return rows


def coding_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows of :func:`verify_coding` -> the ``coding`` Arrow table (commit it under the run's run_id)."""
    return to_arrow(CODING_TABLE, rows)
