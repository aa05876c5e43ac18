"""Classical compressor baselines on exactly the bytes the models scored, kept in the ``baselines`` table.

Bytes. ``documents_factory()`` yields one ``bytes`` per document: the UTF-8 of the exact text the model scored, so
``n_bytes`` here is the denominator of the model's bits per byte (METHODS.md §5.1).

Modes (all three are always reported; METHODS.md §5.3 says why both granularities matter):

* ``concatenated``: the corpus as ONE stream, ``doc_0 + SEP + doc_1 + ... + SEP + doc_{k-1}`` with
  ``SEP = b"\\n\\n"`` between documents (none after the last). The separator is part of the stream, so its bytes
  ARE counted in ``n_bytes`` (``n_separator_bytes = 2·(k-1)``): ``compressed_bytes`` and ``n_bytes`` describe the
  same stream. The separator stands in for the document boundaries that the model pays for with its end code
  (it is a fixed convention, not a guaranteed-unique delimiter). The stream goes through the library's streaming
  API (documents arrive from an iterator, in batches of about 1 MiB; memory stays bounded) and is a stream of
  unknown size, as ``cat corpus | tool`` would make.
* ``per_document``: each document compressed alone with the one-shot API (size known, as ``tool FILE`` does);
  ``compressed_bytes = Σ|C(doc)|``, ``n_bytes = Σ|doc|``.
* ``per_document_header_once``: ``Σ|C(doc)| − h·(k−1)`` with ``h = |C(b"\\x00")|``, as DeepMind's
  ``count_header_only_once``. ``h`` includes one byte of payload, so this slightly overstates the header saving.

Round trips. Every stream and every document is decoded (streaming, bounded memory) and compared with a separate
iteration of ``documents_factory`` through sha256 digests (boundaries included); ``roundtrip_verified`` is True
only when the decode finished cleanly and the digests match. Otherwise the row is still written, with
``roundtrip_verified=False`` and the reason in ``roundtrip_error``: never trust an unverified decode (PPMd, see
``compressors``).

``zstd-19-dict`` (a trained dictionary is a model, so its size is part of the code length). Cross-fitting: each
document falls in fold ``sha256(doc)[0] mod 2`` (deterministic, independent of order, and duplicates share a
fold, so no document is ever coded with a dictionary that saw a copy of it). Fold f is coded with a dictionary
trained only on the other fold's documents (at most ``MAX_TRAIN_BYTES_PER_FOLD``, taken in corpus order), of
``min(110 KiB, training bytes / 100)`` (zstd's default size and its rule of thumb of 100× as much training data).
``concatenated`` is then two streams, one per fold (so ``n_separator_bytes = 2·(k-2)``); all modes add both
dictionaries' sizes (``model_bytes``).
With too few documents or bytes per fold the row is skipped with the reason (``status="skipped"``).

Reuse. ``baseline_id`` = first 16 hex digits of sha256 of (corpus_sha256, compressor, mode, library_version):
the numbers depend only on the corpus bytes and the pinned compressor, so ``ensure_baselines`` computes and
commits only missing rows and returns stored ones with ``status="reused"`` (their timings are the stored ones,
and the corpus is not read at all when everything is stored). The names carry the settings, so a changed setting
needs a new name. The ``corpus`` column keeps the name the row was first computed under.

Columns, in order: ``corpus, corpus_sha256, compressor, library, library_version, mode, n_docs, n_bytes,
compressed_bytes, bits_per_byte, compress_seconds, decompress_seconds, roundtrip_verified``, then
``setting`` (every parameter that changes the output), ``n_separator_bytes`` (separator bytes inside
``n_bytes``), ``header_bytes`` (h above, for every mode), ``model_bytes`` (dictionary bytes inside
``compressed_bytes``; 0 without a dictionary) and ``roundtrip_error`` ("" when verified). Seconds are spent inside
the library calls only (not reading the corpus); the header-once row repeats the per-document timings.
"""

from __future__ import annotations

import array
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from mdlbench.baselines.compressors import (
    CompressorSpec,
    DecodeResult,
    FramesHasher,
    decode_frames,
    get_compressor,
)
from mdlbench.codelength import bits_per_byte, bytes_to_bits
from mdlbench.errors import InputError
from mdlbench.fsio import check_out_dir
from mdlbench.tables import TABLES, commit, partition_dir, partition_exists, to_arrow

TABLE = "baselines"
SEPARATOR = b"\n\n"
Mode = Literal["concatenated", "per_document", "per_document_header_once"]
MODES: tuple[Mode, ...] = ("concatenated", "per_document", "per_document_header_once")
Status = Literal["computed", "reused", "skipped"]

N_FOLDS = 2
DICT_MAX_BYTES = 112_640  # zstd --train's default dictionary size (110 KiB)
DICT_MIN_BYTES = 256  # libzstd's smallest dictionary (ZDICT_DICTSIZE_MIN)
TRAIN_BYTES_PER_DICT_BYTE = 100  # zstd's rule of thumb: about 100× as much training data as dictionary
MIN_TRAIN_DOCS = 8  # libzstd's trainer rejects fewer samples than about this
MAX_TRAIN_BYTES_PER_FOLD = 16 << 20  # bounds the trainer's memory and time (samples are held in memory)

PARTITION_KEY, SCHEMA = TABLES[TABLE]

DocumentsFactory = Callable[[], Iterable[bytes]]
# on_progress(label, bytes done, total bytes or None): called after each document of a pass.
ProgressFn = Callable[[str, int, "int | None"], None]


# ---------------------------------------------------------------------------------------------------------------
# Pure arithmetic.

def header_once_total(per_document_bytes: int, header_bytes: int, n_docs: int) -> int:
    """Σ|C(doc)| − h·(k−1): the container header paid once, not k times. Example: (300, 20, 4) -> 240.

    No documents means no files: (0, h, 0) -> 0.
    """
    return per_document_bytes - header_bytes * max(n_docs - 1, 0)


def n_separator_bytes(n_docs: int) -> int:
    """Separator bytes in a concatenated stream of n_docs documents. Example: 3 documents -> 4 (b"\\n\\n" twice)."""
    return len(SEPARATOR) * max(n_docs - 1, 0)


def baseline_id(corpus_sha256: str, compressor: str, mode: str, library_version: str) -> str:
    """Partition value: the row depends on nothing else (the name carries the setting)."""
    key = "\0".join((corpus_sha256, compressor, mode, library_version)).encode("utf-8")
    return hashlib.sha256(key).hexdigest()[:16]


def fold_of(document: bytes) -> int:
    """Cross-fitting fold of a document: sha256(doc)[0] mod 2 (order-free; identical documents share a fold)."""
    return hashlib.sha256(document).digest()[0] % N_FOLDS


def dictionary_size_bytes(n_train_bytes: int) -> int:
    """min(110 KiB, training bytes / 100). Example: 150_000 -> 1_500; 50 MB -> 112_640."""
    return min(DICT_MAX_BYTES, n_train_bytes // TRAIN_BYTES_PER_DICT_BYTE)


# ---------------------------------------------------------------------------------------------------------------
# Records.

@dataclass(frozen=True)
class BaselineRow:
    """One row of the ``baselines`` table (field order = column order)."""

    corpus: str
    corpus_sha256: str
    compressor: str
    library: str
    library_version: str
    mode: str
    n_docs: int
    n_bytes: int
    compressed_bytes: int
    bits_per_byte: float
    compress_seconds: float
    decompress_seconds: float
    roundtrip_verified: bool
    setting: str
    n_separator_bytes: int
    header_bytes: int
    model_bytes: int
    roundtrip_error: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


assert [f.name for f in fields(BaselineRow)] == SCHEMA.names


@dataclass(frozen=True)
class Skipped:
    compressor: str
    reason: str


@dataclass(frozen=True)
class Reference:
    """Digests of the original units, from an iteration of the corpus independent of the compression pass."""

    n_docs: int
    n_doc_bytes: int
    per_document: str  # frames_sha256 of the documents
    concatenated: str  # frames_sha256 of [the concatenated stream]
    fold_streams: tuple[str, ...]  # frames_sha256 of [fold f's stream], f = 0..N_FOLDS-1
    fold_n_docs: tuple[int, ...]


def reference_digests(documents: Iterable[bytes], on_progress: ProgressFn | None = None) -> Reference:
    """One pass over the corpus computing what every decode is compared with."""
    per_doc = FramesHasher()
    concat = FramesHasher()
    folds = [FramesHasher() for _ in range(N_FOLDS)]
    fold_n_docs = [0] * N_FOLDS
    n_docs = 0
    for doc in documents:
        if n_docs:
            concat.update(SEPARATOR)
        concat.update(doc)
        per_doc.update(doc)
        per_doc.end_frame()
        f = fold_of(doc)
        if fold_n_docs[f]:
            folds[f].update(SEPARATOR)
        folds[f].update(doc)
        fold_n_docs[f] += 1
        n_docs += 1
        if on_progress is not None:
            on_progress("reading", per_doc.n_bytes, None)
    concat.end_frame()
    for h in folds:
        h.end_frame()
    return Reference(n_docs, per_doc.n_bytes, per_doc.hexdigest(), concat.hexdigest(),
                     tuple(h.hexdigest() for h in folds), tuple(fold_n_docs))


# ---------------------------------------------------------------------------------------------------------------
# Dictionary cross-fitting.

@dataclass(frozen=True)
class FoldDictionary:
    """A dictionary trained on fold ``trained_on_fold`` only, used to code the other fold (``codes_fold``)."""

    trained_on_fold: int
    codes_fold: int
    data: bytes
    n_train_docs: int
    n_train_bytes: int


def collect_training_samples(documents: Iterable[bytes],
                             max_bytes_per_fold: int = MAX_TRAIN_BYTES_PER_FOLD) -> tuple[list[bytes], ...]:
    """samples[f] = fold f's documents in corpus order, up to max_bytes_per_fold (whole documents)."""
    samples: tuple[list[bytes], ...] = tuple([] for _ in range(N_FOLDS))
    sizes = [0] * N_FOLDS
    for doc in documents:
        f = fold_of(doc)
        if sizes[f] + len(doc) <= max_bytes_per_fold:
            samples[f].append(doc)
            sizes[f] += len(doc)
    return samples


def train_fold_dictionaries(samples: Sequence[Sequence[bytes]], level: int = 19) -> list[FoldDictionary] | str:
    """dictionaries[f] codes fold f and is trained on samples[1 - f] only; or the reason it cannot be done."""
    out = []
    for codes in range(N_FOLDS):
        train = 1 - codes
        docs = [d for d in samples[train] if d]
        n_train_bytes = sum(map(len, docs))
        size = dictionary_size_bytes(n_train_bytes)
        if len(docs) < MIN_TRAIN_DOCS or size < DICT_MIN_BYTES:
            return (f"too little data to train a dictionary without the bytes it codes: fold {train} has "
                    f"{len(docs)} non-empty documents and {n_train_bytes} bytes; each fold needs >= {MIN_TRAIN_DOCS}"
                    f" documents and >= {DICT_MIN_BYTES * TRAIN_BYTES_PER_DICT_BYTE} bytes")
        try:
            data = zstandard.train_dictionary(size, docs, level=level).as_bytes()
        except zstandard.ZstdError as exc:
            return f"libzstd could not train a dictionary on fold {train} ({len(docs)} documents): {exc}"
        out.append(FoldDictionary(train, codes, data, len(docs), n_train_bytes))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Measuring one compressor.

# Compressed outputs stay in memory up to this size each, then spill to an unnamed temporary file on disk.
SPOOL_MAX_BYTES = 64 << 20
BATCH_BYTES = 1 << 20  # documents handed to the encoders together (see compress_pass)


@dataclass(frozen=True)
class CompressionPass:
    """The compressed outputs of one pass over the corpus (spooled: memory stays bounded). Call ``close()``."""

    streams: tuple[BinaryIO, ...]  # one concatenated stream per fold (one fold without a dictionary)
    stream_bytes: tuple[int, ...]  # compressed size of each stream
    stream_lengths: tuple[int, ...]  # its uncompressed size, separators included
    stream_n_docs: tuple[int, ...]
    docs: BinaryIO  # per-document outputs back to back
    doc_frame_bytes: array.array  # compressed size of each document
    doc_lengths: array.array  # uncompressed size of each document
    doc_folds: array.array  # dictionary index of each document (all 0 without a dictionary)
    concatenated_seconds: float  # inside the streaming encoder calls
    per_document_seconds: float  # inside the one-shot calls

    def close(self) -> None:
        for f in (*self.streams, self.docs):
            f.close()


def compress_pass(spec: CompressorSpec, documents: Iterable[bytes], dictionaries: Sequence[bytes | None] = (None,),
                  on_progress: ProgressFn | None = None, total_bytes: int | None = None) -> CompressionPass:
    """One pass over the corpus feeding every document to the stream encoder(s) and to the one-shot encoder.

    Documents are handled in batches of about ``BATCH_BYTES``: the stream encoder takes the whole batch, then the
    one-shot encoder each document. Alternating the two encoders per document made the library calls ~15% slower
    (their states evict each other from the CPU cache); per batch it costs nothing measurable, and memory stays
    bounded by one batch. The outputs do not depend on the batching.
    """
    n_streams = len(dictionaries)
    # Returned open (the caller decodes them, then closes them with CompressionPass.close), hence no `with`.
    streams = tuple(tempfile.SpooledTemporaryFile(SPOOL_MAX_BYTES) for _ in range(n_streams))  # noqa: SIM115
    docs_file = tempfile.SpooledTemporaryFile(SPOOL_MAX_BYTES)  # noqa: SIM115
    encoders = [spec.new_encoder(d) for d in dictionaries]
    stream_bytes = [0] * n_streams
    stream_lengths = [0] * n_streams
    stream_n_docs = [0] * n_streams
    frame_bytes, lengths, folds = array.array("q"), array.array("q"), array.array("b")
    times = [0.0, 0.0]  # seconds inside the stream encoders, inside the one-shot calls
    n_done = 0
    compress_one = spec.compress_one
    clock = time.perf_counter

    def run_batch(batch: list[bytes], batch_folds: list[int]) -> None:
        for f in range(n_streams):
            enc = encoders[f]
            outs = []
            t0 = clock()
            for doc, doc_fold in zip(batch, batch_folds, strict=True):
                if doc_fold == f:
                    if stream_n_docs[f]:
                        outs.append(enc.compress(SEPARATOR))
                        stream_lengths[f] += len(SEPARATOR)
                    outs.append(enc.compress(doc))
                    stream_lengths[f] += len(doc)
                    stream_n_docs[f] += 1
            times[0] += clock() - t0
            out = b"".join(outs)
            streams[f].write(out)
            stream_bytes[f] += len(out)
        t0 = clock()
        ones = [compress_one(doc, dictionaries[f]) for doc, f in zip(batch, batch_folds, strict=True)]
        times[1] += clock() - t0
        docs_file.write(b"".join(ones))
        frame_bytes.extend(map(len, ones))
        lengths.extend(map(len, batch))
        folds.extend(batch_folds)

    try:
        batch: list[bytes] = []
        batch_folds: list[int] = []
        batch_bytes = 0
        for doc in documents:
            batch.append(doc)
            batch_folds.append(fold_of(doc) if n_streams > 1 else 0)
            batch_bytes += len(doc)
            if batch_bytes >= BATCH_BYTES:
                run_batch(batch, batch_folds)
                n_done += batch_bytes
                batch, batch_folds, batch_bytes = [], [], 0
                if on_progress is not None:
                    on_progress(spec.name, n_done, total_bytes)
        run_batch(batch, batch_folds)
        for f, enc in enumerate(encoders):
            t0 = clock()
            tail = enc.flush()
            times[0] += clock() - t0
            streams[f].write(tail)
            stream_bytes[f] += len(tail)
    except BaseException:
        for fh in (*streams, docs_file):
            fh.close()
        raise
    return CompressionPass(streams, tuple(stream_bytes), tuple(stream_lengths), tuple(stream_n_docs), docs_file,
                           frame_bytes, lengths, folds, times[0], times[1])


def measure_compressor(spec: CompressorSpec, documents_factory: DocumentsFactory, *, corpus: str,
                       corpus_sha256: str, reference: Reference | None = None,
                       on_progress: ProgressFn | None = None) -> list[BaselineRow] | Skipped:
    """The three rows (MODES order) for one compressor, every output decoded and compared; or why it was skipped."""
    if reference is None:
        reference = reference_digests(documents_factory())
    if reference.n_docs == 0:
        raise InputError(f"{corpus}: the corpus has no documents; there is nothing to compress")
    dictionaries: list[bytes | None] = [None]
    if spec.uses_dictionary:
        trained = train_fold_dictionaries(collect_training_samples(documents_factory()))
        if isinstance(trained, str):
            return Skipped(spec.name, trained)
        dictionaries = [d.data for d in trained]
    model_bytes = sum(len(d) for d in dictionaries if d is not None)
    header_bytes = len(spec.compress_one(b"\x00", dictionaries[0]))

    cp = compress_pass(spec, documents_factory(), dictionaries, on_progress, reference.n_doc_bytes)
    try:
        n_docs = len(cp.doc_lengths)
        if n_docs != reference.n_docs or sum(cp.doc_lengths) != reference.n_doc_bytes:
            raise ValueError(f"{corpus}: documents_factory gave {reference.n_docs} documents "
                             f"({reference.n_doc_bytes} bytes), then {n_docs} ({sum(cp.doc_lengths)} bytes); "
                             "it must return a fresh iterator over the same documents on every call")
        expected = (reference.fold_streams if spec.uses_dictionary else (reference.concatenated,))
        stream_results = [decode_frames(spec, stream, [size], [length], [dictionary])
                          for stream, size, length, dictionary in zip(cp.streams, cp.stream_bytes,
                                                                      cp.stream_lengths, dictionaries, strict=True)]
        concat_error = _roundtrip_error(stream_results, expected)
        doc_dicts = [dictionaries[f] for f in cp.doc_folds] if spec.uses_dictionary else [None]
        doc_result = decode_frames(spec, cp.docs, cp.doc_frame_bytes, cp.doc_lengths, doc_dicts)
        doc_error = _roundtrip_error([doc_result], (reference.per_document,))
    finally:
        cp.close()

    per_doc_bytes = sum(cp.doc_frame_bytes)
    n_doc_bytes = reference.n_doc_bytes
    n_sep = sum(n_separator_bytes(k) for k in cp.stream_n_docs)

    def row(mode: Mode, n_bytes: int, compressed: int, c_s: float, d_s: float, error: str, n_sep: int) -> BaselineRow:
        return BaselineRow(corpus, corpus_sha256, spec.name, spec.library, spec.library_version, mode, n_docs,
                           n_bytes, compressed, bits_per_byte(bytes_to_bits(compressed), n_bytes), c_s, d_s, not error,
                           spec.setting, n_sep, header_bytes, model_bytes, error)

    decode_s = sum(r.seconds for r in stream_results)
    return [
        row("concatenated", n_doc_bytes + n_sep, sum(cp.stream_bytes) + model_bytes, cp.concatenated_seconds,
            decode_s, concat_error, n_sep),
        row("per_document", n_doc_bytes, per_doc_bytes + model_bytes, cp.per_document_seconds,
            doc_result.seconds, doc_error, 0),
        row("per_document_header_once", n_doc_bytes,
            header_once_total(per_doc_bytes, header_bytes, n_docs) + model_bytes, cp.per_document_seconds,
            doc_result.seconds, doc_error, 0),
    ]


def _roundtrip_error(results: Sequence[DecodeResult], expected: Sequence[str]) -> str:
    """"" when every decode finished cleanly and matches its reference digest, else why not."""
    for i, (r, want) in enumerate(zip(results, expected, strict=True)):
        if r.error is not None:
            return r.error
        if r.sha256 != want:
            return f"unit {i}: decoded bytes differ from the corpus (sha256 {r.sha256[:12]} != {want[:12]})"
    return ""


# ---------------------------------------------------------------------------------------------------------------
# The table: compute once per corpus, reuse afterwards.

def ensure_baselines(out_dir: Path | str, corpus_name: str, corpus_sha256: str, documents_factory: DocumentsFactory,
                     names: Sequence[str], *, on_progress: ProgressFn | None = None) -> pd.DataFrame:
    """Rows for ``names`` × MODES on this corpus, computing and committing only the missing ones.

    Returns ``baseline_id``, the table's columns, ``status`` ("computed", "reused" or "skipped") and ``note``
    (why a row was skipped). A compressor's three rows are committed together, atomically, once all are measured.
    The corpus is read only if something is missing: once for the reference digests, then once per compressor
    (twice for ``zstd-19-dict``).
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    specs = [get_compressor(n) for n in dict.fromkeys(names)]  # unknown names fail before any work
    records: list[dict[str, object]] = []
    reference: Reference | None = None
    for spec in specs:
        ids = {mode: baseline_id(corpus_sha256, spec.name, mode, spec.library_version) for mode in MODES}
        if all(partition_exists(out_dir, TABLE, i) for i in ids.values()):
            found = [_read_row(out_dir, ids[m]) for m in MODES]
            if all(row is not None for row in found):
                records += [{PARTITION_KEY: ids[m], **row, "status": "reused", "note": ""}
                            for m, row in zip(MODES, found, strict=True)]
                continue
        if reference is None:
            reference = reference_digests(documents_factory(), on_progress)
        result = measure_compressor(spec, documents_factory, corpus=corpus_name, corpus_sha256=corpus_sha256,
                                    reference=reference, on_progress=on_progress)
        if isinstance(result, Skipped):
            records += [{PARTITION_KEY: ids[m], "corpus": corpus_name, "corpus_sha256": corpus_sha256,
                         "compressor": spec.name, "library": spec.library, "library_version": spec.library_version,
                         "mode": m, "setting": spec.setting, "status": "skipped", "note": result.reason}
                        for m in MODES]
            continue
        commit(out_dir, {(TABLE, ids[r.mode]): to_arrow(TABLE, [r.as_dict()]) for r in result})
        records += [{PARTITION_KEY: ids[r.mode], **r.as_dict(), "status": "computed", "note": ""} for r in result]
    return _frame(records)


def _read_row(out_dir: Path, value: str) -> dict[str, object] | None:
    """The partition's one row; None when another process's commit replaced it between the looks (measured anew)."""
    try:
        table = pq.read_table(partition_dir(out_dir, TABLE, value) / "part-0.parquet")
    except FileNotFoundError:
        return None
    rows = table.to_pylist()
    if len(rows) != 1 or table.schema.names != SCHEMA.names:
        raise InputError(f"{partition_dir(out_dir, TABLE, value)}: not a baselines partition of this mdlbench "
                         "version; delete it to recompute")
    return rows[0]


_PANDAS_DTYPES = {pa.int64(): "Int64", pa.float64(): "Float64", pa.bool_(): "boolean", pa.string(): "string"}


def _frame(records: list[dict[str, object]]) -> pd.DataFrame:
    columns = {PARTITION_KEY: "string", **{f.name: _PANDAS_DTYPES[f.type] for f in SCHEMA},
               "status": "string", "note": "string"}
    df = pd.DataFrame.from_records(records, columns=list(columns))
    return df.astype(columns)



def stored(out_dir: Path | str, corpus_sha256: str, names: Sequence[str]) -> bool:
    """Whether every mode of every named compressor is already in the table for these exact bytes."""
    return all(partition_exists(Path(out_dir), TABLE, baseline_id(corpus_sha256, spec.name, mode, spec.library_version))
               for spec in (get_compressor(n) for n in names) for mode in MODES)


def best_verified(rows: pd.DataFrame | None, mode: str, corpus_sha256: str | None = None) -> pd.Series | None:
    """The compressor row with the fewest bits/byte in ``mode`` among rows whose round trip was verified (an
    unverified decode is never trusted), optionally on these exact bytes only; None when there is none."""
    if rows is None or rows.empty:
        return None
    keep = (rows["mode"] == mode) & rows["roundtrip_verified"].fillna(False).astype(bool)
    if corpus_sha256 is not None:
        keep &= rows["corpus_sha256"] == corpus_sha256
    found = rows[keep]
    return None if found.empty else found.sort_values(["bits_per_byte", "compressor"]).iloc[0]
