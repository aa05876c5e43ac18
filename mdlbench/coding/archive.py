"""Archives: documents coded in lockstep chunks into one container, resumable, each document extractable.

Compressing streams the documents once: each is tokenized (or stored raw, see coder.py), the chunk closes by
plan.py's rule, and the chunk is coded in lockstep (lockstep.py). With a progress directory (``OUTPUT.partial``,
used by ``mdlbench compress`` for corpora) every finished chunk is written there atomically as a small container of
its own, next to ``header.json`` (the settings it was coded under); a compress that is killed and started again
with the same settings checks those, re-reads the documents of the finished chunks (their ids and sha256 must
match) and codes only the rest. The archive is assembled from the chunks at the end (a temporary file renamed into
place) and the directory removed, so a resumed run writes the same bytes as an uninterrupted one.

Decoding goes chunk by chunk in index order. The stored plan must be the one that follows from the index (token
counts) and the recorded batch settings; a payload whose length or CRC-32 fails is not decoded (placeholder tokens
keep the batch layout), and every document's output is checked against its recorded length and sha256 before it
is returned, so a damaged document fails alone.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mdlbench.codelength import bytes_to_bits
from mdlbench.coding import plan as planning
from mdlbench.coding.container import (
    FIXED_HEADER_BYTES,
    Container,
    CorruptFileError,
    header_and_index,
    layout_entries,
    pack,
    sha256_hex,
    unpack,
)
from mdlbench.coding.identity import (
    CODER,
    CODER_PRECISION_BITS,
    ROWS,
    SCHEDULE,
    CodingModel,
    CodingSettings,
    DecodeMismatchError,
    ModelMismatchError,
    boundary_ids,
    check_model,
    environment,
    fallback_reason,
    mismatch_message,
    model_meta,
)
from mdlbench.coding.lockstep import StreamLayout, decode_chunk, encode_chunk
from mdlbench.errors import InputError
from mdlbench.fsio import atomic_path, write_bytes_atomic
from mdlbench.scoring.models import LoadedModel

AUTO_BATCH_CPU = 128
AUTO_BATCH_ACCELERATOR = 128
KV_BUDGET_CPU = 2 << 30  # bytes of batch KV cache the auto batch size allows
KV_BUDGET_ACCELERATOR = 8 << 30
CHUNK_BATCHES = 8  # a chunk holds up to this many batches' worth of documents: the slots refill ~8 times
CHUNK_STEPS = 4096  # ... or B × this many predictions, the most work a kill -9 (or --doc) costs: ~this many steps
PROGRESS_SUFFIX = ".partial"


@dataclass(frozen=True, slots=True)
class Source:
    """One document to code: its id, its exact bytes, and its domain (recorded, written back for JSONL)."""

    doc_id: str
    data: bytes
    domain: str = ""


@dataclass(frozen=True, slots=True)
class BatchSettings:
    batch_size: int
    chunk_docs: int
    chunk_predictions: int


def auto_batch_size(model: CodingModel, window: int | None) -> int:
    """128 documents side by side (on a CPU as on an accelerator), fewer if their KV caches would exceed the
    memory budget (2 GiB on a CPU, 8 GiB on an accelerator; e.g. SmolLM2-135M at window 2048 gets 18)."""
    if isinstance(model, str) or window is None:
        return AUTO_BATCH_CPU
    from mdlbench.coding.lockstep import cache_capacity, kv_bytes_per_token

    cpu = model.device == "cpu"
    size, budget = (AUTO_BATCH_CPU, KV_BUDGET_CPU) if cpu else (AUTO_BATCH_ACCELERATOR, KV_BUDGET_ACCELERATOR)
    per_row = kv_bytes_per_token(model.model) * cache_capacity(window)
    return max(1, min(size, budget // max(per_row, 1)))


def batch_settings(batch_size: int | None, model: CodingModel, window: int | None) -> BatchSettings:
    """The recorded batch settings: ``batch_size`` (None: auto) B, and chunks of CHUNK_BATCHES · B documents or
    CHUNK_STEPS · B predictions. The prediction limit grows with B because a chunk ends in a drain (its last
    documents finish one by one while the other rows are gone): with a fixed limit, a large batch gets chunks of
    about one round of documents, mostly drain."""
    size = batch_size if batch_size is not None else auto_batch_size(model, window)
    if size < 1:
        raise InputError(f"--batch-size {size}: must be >= 1")
    return BatchSettings(size, CHUNK_BATCHES * size, CHUNK_STEPS * size)


class ChunkProgress(NamedTuple):
    chunk: int
    docs_done: int  # documents in finished chunks (before this one)
    chunk_docs: int
    symbols_done: int  # in this chunk
    symbols_total: int  # in this chunk
    seconds: float  # since the chunk started


ProgressFn = Callable[[ChunkProgress], None]


# -- the header: everything both sides must agree on -----------------------------------------------------------
def make_header(model: CodingModel, settings: CodingSettings | None, batch: BatchSettings, kind: str,
                corpus: dict[str, Any] | None = None) -> dict[str, Any]:
    header: dict[str, Any] = {"kind": kind, "coder": CODER, "model": model_meta(model),
                              "environment": environment(None if isinstance(model, str) else model),
                              "batch": {"batch_size": batch.batch_size, "chunk_docs": batch.chunk_docs,
                                        "chunk_predictions": batch.chunk_predictions, "schedule": SCHEDULE}}
    if not isinstance(model, str):
        if settings is None:
            raise ValueError("a model needs coding settings")
        prefix_id, eos_id = boundary_ids(model, settings)
        header["coding"] = {"window": settings.window, "stride": settings.stride,
                            "first_token": settings.first_token, "end": settings.end, "prefix_token_id": prefix_id,
                            "eos_token_id": eos_id, "precision_bits": CODER_PRECISION_BITS, "rows": ROWS}
    if corpus is not None:
        header["corpus"] = corpus
    return header


def stream_layout(header: dict[str, Any]) -> StreamLayout:
    c = header["coding"]
    return StreamLayout(int(c["window"]), int(c["stride"]), c["first_token"], c["prefix_token_id"],
                        c["eos_token_id"], int(header["model"]["vocab_size"]))


def _batch(header: dict[str, Any]) -> BatchSettings:
    b = header["batch"]
    return BatchSettings(int(b["batch_size"]), int(b["chunk_docs"]), int(b["chunk_predictions"]))


# -- compress ----------------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    source: Source
    method: str
    ids: list[int]
    reason: str

    def n_predictions(self, layout: StreamLayout | None) -> int:
        return layout.n_predictions(len(self.ids)) if self.method == "model" and layout is not None else 0


def _prepare(model: CodingModel, source: Source) -> _Prepared:
    if isinstance(model, str):
        return _Prepared(source, "uniform-bytes", [], "")
    reason, ids = fallback_reason(model, source.data)
    return _Prepared(source, "raw-bytes" if reason else "model", [] if reason else ids, reason)


@dataclass
class ChunkResult:
    entries: list[dict[str, Any]]  # without offsets (layout_entries adds them)
    payloads: list[bytes]
    plan: dict[str, Any]  # {"start", "stop", "order"}: global document indices
    seconds: list[float] = field(default_factory=list)  # per document, not stored


def code_chunk(model: CodingModel, layout: StreamLayout | None, batch: BatchSettings, docs: Sequence[_Prepared],
               first_index: int, progress: Callable[[int, int], None] | None = None) -> ChunkResult:
    model_docs = [i for i, p in enumerate(docs) if p.method == "model"]
    encoded = {}
    if model_docs:
        assert layout is not None and not isinstance(model, str)
        results = encode_chunk(model, [docs[i].ids for i in model_docs], layout, batch.batch_size, progress)
        encoded = dict(zip(model_docs, results, strict=True))
    entries, payloads, seconds = [], [], []
    for i, p in enumerate(docs):
        entry: dict[str, Any] = {"id": p.source.doc_id, "method": p.method, "original_bytes": len(p.source.data),
                                 "original_sha256": sha256_hex(p.source.data)}
        if p.source.domain:
            entry["domain"] = p.source.domain
        if p.method == "model":
            e = encoded[i]
            entry.update(n_tokens=len(p.ids), n_symbols=e.n_symbols, ideal_bits=e.ideal_bits)
            payloads.append(e.payload)
            seconds.append(e.seconds)
        else:
            entry.update(n_symbols=len(p.source.data), ideal_bits=float(bytes_to_bits(len(p.source.data))))
            if p.reason:
                entry["fallback_reason"] = p.reason
            payloads.append(p.source.data)
            seconds.append(0.0)
        entries.append(entry)
    order = [first_index + model_docs[j] for j in planning.entry_order(
        [docs[i].n_predictions(layout) for i in model_docs])]
    plan = {"start": first_index, "stop": first_index + len(docs), "order": order}
    return ChunkResult(entries, payloads, plan, seconds)


class _Store:
    """Finished chunks, in memory or in a progress directory (one atomic file per chunk)."""

    def __init__(self, directory: Path | None, header: dict[str, Any], fingerprint: dict[str, Any],
                 force: bool) -> None:
        self.directory = directory
        self.header = header
        self.memory: list[ChunkResult] = []
        self.files: list[Path] = []
        if directory is None:
            return
        settings = directory / "header.json"
        if directory.exists():
            try:
                recorded = json.loads(settings.read_text("utf-8"))
            except (OSError, json.JSONDecodeError):
                recorded = None  # killed before header.json was written: nothing to resume
            if not isinstance(recorded, dict):
                recorded = None
            if recorded != fingerprint and (force or recorded is None):
                shutil.rmtree(directory)
            elif recorded != fingerprint:
                diff = sorted(k for k in set(fingerprint) | set(recorded)
                              if recorded.get(k) != fingerprint.get(k))
                raise InputError(f"{directory}: left by an interrupted compress with other settings (differs in "
                                 f"{', '.join(diff)}); rerun with the same options to resume, or pass --force to "
                                 "discard it")
        if directory.exists():
            k = 0
            while (directory / f"chunk-{k:06d}.mdlz").exists():
                self.files.append(directory / f"chunk-{k:06d}.mdlz")
                k += 1
            for stray in directory.glob(".*.tmp"):
                stray.unlink(missing_ok=True)
        else:
            directory.mkdir(parents=True)
            write_bytes_atomic(settings, json.dumps(fingerprint, sort_keys=True, indent=1).encode("utf-8"))

    @property
    def n_done(self) -> int:
        return len(self.files) if self.directory is not None else len(self.memory)

    def done_entries(self, k: int) -> list[dict[str, Any]]:
        if self.directory is None:
            return self.memory[k].entries
        c = unpack(self.files[k], name=str(self.files[k]))
        try:
            return c.entries
        finally:
            c.close()

    def put(self, k: int, result: ChunkResult) -> None:
        if self.directory is None:
            self.memory.append(result)
            return
        path = self.directory / f"chunk-{k:06d}.mdlz"
        write_bytes_atomic(path, pack({**self.header, "kind": "chunk", "chunk": k}, result.entries, result.payloads,
                                 {"chunks": [result.plan]}))
        self.files.append(path)

    def chunks(self) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any], Callable[[int], bytes]]]:
        """(entries with chunk-relative offsets, plan chunk, payload of entry j) per chunk, in order."""
        if self.directory is None:
            for r in self.memory:
                yield layout_entries(r.entries, r.payloads), r.plan, r.payloads.__getitem__
            return
        for path in self.files:
            c = unpack(path, name=str(path))
            try:
                yield c.entries, c.plan["chunks"][0], c.payload
            finally:
                c.close()

    def remove(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Compressed:
    """What compress_documents produced (the archive itself is ``blob`` or the file at ``path``)."""

    header: dict[str, Any]
    entries: list[dict[str, Any]]  # with offsets, lengths and payload digests
    header_bytes: int  # everything that is not payload: fixed part, header, index
    total_bytes: int
    seconds: list[float]  # per document: its share of the coding time
    blob: bytes | None = None
    path: Path | None = None
    resumed_chunks: int = 0


def compress_documents(model: CodingModel, sources: Iterable[Source], *, settings: CodingSettings | None,
                       batch: BatchSettings, kind: str = "corpus", corpus: dict[str, Any] | None = None,
                       output: Path | None = None, resume_identity: str = "", force: bool = False,
                       progress: ProgressFn | None = None) -> Compressed:
    """Code every source into one container: in memory (``output`` None) or to ``output`` through a progress
    directory that makes the work resumable (see the module docstring)."""
    header = make_header(model, settings, batch, kind, corpus)
    layout = stream_layout(header) if "coding" in header else None
    directory = None if output is None else output.with_name(output.name + PROGRESS_SUFFIX)
    fingerprint = {**header, "resume_identity": resume_identity}
    store = _Store(directory, header, fingerprint, force)
    resumed = store.n_done
    chunk: list[_Prepared] = []
    k = index = docs_done = n_pred = 0
    all_seconds: list[float] = []
    pending = iter(sources)

    def flush() -> None:
        nonlocal chunk, k, n_pred, docs_done
        total = sum(p.n_predictions(layout) for p in chunk)
        tick = _ticker(progress, k, docs_done, len(chunk))
        result = code_chunk(model, layout, batch, chunk, index - len(chunk), tick)
        store.put(k, result)
        all_seconds.extend(result.seconds)
        tick(total, total)
        docs_done += len(chunk)
        chunk, n_pred, k = [], 0, k + 1

    for src in pending:
        if k < resumed:  # a finished chunk: the same documents must come back
            entries = store.done_entries(k)
            j = index - docs_done
            want = entries[j]
            if (want["id"], want["original_sha256"]) != (src.doc_id, sha256_hex(src.data)):
                raise InputError(f"document {index} ({src.doc_id!r}) differs from the one the interrupted compress "
                                 f"coded ({want['id']!r}); the corpus changed — pass --force to start over")
            index += 1
            if j + 1 == len(entries):
                all_seconds.extend([0.0] * len(entries))
                docs_done += len(entries)
                k += 1
            continue
        p = _prepare(model, src)
        chunk.append(p)
        index += 1
        n_pred += p.n_predictions(layout)
        if planning.chunk_closes(len(chunk), n_pred, batch.chunk_docs, batch.chunk_predictions):
            flush()
    if k < resumed:
        raise InputError(f"the corpus has fewer documents ({index}) than the interrupted compress had coded; it "
                         "changed — pass --force to start over")
    if chunk:
        flush()
    result = _assemble(store, header, output)
    result.seconds = all_seconds
    result.resumed_chunks = resumed
    store.remove()
    return result


def _assemble(store: _Store, header: dict[str, Any], output: Path | None) -> Compressed:
    """The archive from the finished chunks: in memory, or written to a temporary file renamed to ``output``."""
    laid, plans, offset = [], [], 0
    for entries, plan, _ in store.chunks():
        for e in entries:
            laid.append({**e, "offset": offset})
            offset += int(e["payload_bytes"])
        plans.append(plan)
    head, index = header_and_index({**header, "n_docs": len(laid)}, laid, {"chunks": plans})
    parsed_header = json.loads(head[FIXED_HEADER_BYTES:].decode("utf-8"))
    if output is None:
        blob = b"".join([head, index, *(payload(j) for entries, _, payload in store.chunks()
                                        for j in range(len(entries)))])
        return Compressed(parsed_header, laid, len(head) + len(index), len(blob), [], blob=blob)
    with atomic_path(output) as tmp, tmp.open("wb") as f:
        f.write(head + index)
        for entries, _, payload in store.chunks():
            for j in range(len(entries)):
                f.write(payload(j))
    return Compressed(parsed_header, laid, len(head) + len(index), len(head) + len(index) + offset, [], path=output)


# -- decompress --------------------------------------------------------------------------------------------------
_REQUIRED_ENTRY_KEYS = ("id", "method", "original_bytes", "original_sha256")
_REQUIRED_CODING_KEYS = ("window", "stride", "first_token", "end", "prefix_token_id", "eos_token_id", "rows")


def open_archive(source: bytes | Path, *, name: str = "input") -> Container:
    """Parse and check a container (magic, version, CRCs, index digest, offsets) and the fields decoding needs."""
    c = unpack(source, name=name)
    try:
        _check_fields(c)
    except BaseException:
        c.close()
        raise
    return c


def _check_fields(c: Container) -> None:
    h, name = c.header, c.name
    missing = [k for k in ("kind", "model", "batch") if k not in h]
    methods = {e.get("method") for e in c.entries}
    if not methods <= {"model", "raw-bytes", "uniform-bytes"}:
        raise CorruptFileError(f"{name}: unknown coding method {sorted(map(str, methods))} in the index")
    if "model" in methods:
        coding = h.get("coding") if isinstance(h.get("coding"), dict) else {}
        missing += [f"coding.{k}" for k in _REQUIRED_CODING_KEYS if k not in coding]
        missing += sorted({"n_tokens"} - {k for e in c.entries if e.get("method") == "model" for k in e})
        if coding.get("rows", ROWS) != ROWS:
            raise CorruptFileError(f"{name}: rows computed as {coding.get('rows')!r}; this mdlbench computes "
                                   f"{ROWS!r} — decode with the mdlbench version that wrote the file")
        if h.get("coder", CODER) != CODER:
            raise CorruptFileError(f"{name}: coded with {h.get('coder')!r}; this mdlbench codes with {CODER!r} — "
                                   "decode with the mdlbench version that wrote the file")
    missing += sorted({k for e in c.entries for k in _REQUIRED_ENTRY_KEYS if k not in e})
    if missing:
        raise CorruptFileError(f"{name}: the file lacks {', '.join(missing)} (damaged, or not written by "
                               "`mdlbench compress`)")


def expected_plan(c: Container) -> list[dict[str, Any]]:
    """The chunks and entry orders that follow from the index and the recorded batch settings."""
    layout = stream_layout(c.header) if "coding" in c.header else None
    n_pred = [layout.n_predictions(int(e["n_tokens"])) if e["method"] == "model" and layout else 0
              for e in c.entries]
    batch = _batch(c.header)
    out = []
    for r in planning.plan_chunks(n_pred, batch.chunk_docs, batch.chunk_predictions):
        model_docs = [i for i in r if c.entries[i]["method"] == "model"]
        order = [model_docs[j] for j in planning.entry_order([n_pred[i] for i in model_docs])]
        out.append({"start": r.start, "stop": r.stop, "order": order})
    return out


def check_batch_size(c: Container, batch_size: int | None) -> None:
    recorded = int(c.header["batch"]["batch_size"])
    if batch_size is not None and batch_size != recorded and any(e["method"] == "model" for e in c.entries):
        raise ModelMismatchError(
            f"{c.name}: coded in lockstep batches of {recorded} documents; its probability rows can only be "
            f"reproduced with batch size {recorded}, not {batch_size} — omit --batch-size (or pass {recorded})")


class Decoded(NamedTuple):
    index: int
    entry: dict[str, Any]
    data: bytes | None  # None when the document failed; then error says why
    error: InputError | None  # CorruptFileError (damaged payload) or DecodeMismatchError (wrong rows or output)
    seconds: float


def decode_archive(c: Container, model: CodingModel | None, *, wanted: set[int] | None = None,
                   batch_size: int | None = None, progress: ProgressFn | None = None) -> Iterator[Decoded]:
    """Every document (or those in ``wanted``), in index order; a failing document yields its error alone."""
    check_batch_size(c, batch_size)
    plans = expected_plan(c)
    if plans != c.plan.get("chunks"):
        raise CorruptFileError(f"{c.name}: the stored batch plan does not follow from the index and the recorded "
                               "batch settings (damaged, or written by another mdlbench)")
    needs_model = any(e["method"] == "model" for e in c.entries)
    if needs_model:
        if model is None or isinstance(model, str):
            raise ModelMismatchError(f"{c.name} was compressed with model {c.header['model'].get('name')!r}; "
                                     f"decoding needs that model (--model {c.header['model'].get('spec')!r})")
        check_model(c.header, model)
        layout = stream_layout(c.header)
        context = model.context_length
        if context is not None and layout.window > context:
            raise ModelMismatchError(f"{c.name}: window {layout.window} exceeds the model's context of {context}")
        if (boundary_ids(model, CodingSettings(layout.window, layout.stride, layout.first_token,
                                               c.header["coding"]["end"])) != (layout.prefix_id, layout.eos_id)):
            raise ModelMismatchError(
                f"{c.name}: compressed with BOS/EOS ids {layout.prefix_id}/{layout.eos_id}, but the model given "
                f"resolves others; pass the same --boundary-token ({c.header['model'].get('boundary_token')!r})")
    docs_done = 0
    for k, chunk in enumerate(plans):
        indices = range(chunk["start"], chunk["stop"])
        if wanted is not None and not any(i in wanted for i in indices):
            docs_done += len(indices)
            continue
        tick = _ticker(progress, k, docs_done, len(indices))
        yield from _decode_chunk(c, model, indices, wanted, batch_size or _batch(c.header).batch_size, tick)
        docs_done += len(indices)


def _ticker(progress: ProgressFn | None, k: int, docs_done: int, n_docs: int) -> Callable[[int, int], None]:
    """A lockstep progress callback (done, total) reporting as ChunkProgress for chunk k."""
    start = time.perf_counter()

    def tick(done: int, total: int) -> None:
        if progress is not None:
            progress(ChunkProgress(k, docs_done, n_docs, done, total, time.perf_counter() - start))

    return tick


def _decode_chunk(c: Container, model: CodingModel | None, indices: range, wanted: set[int] | None,
                  batch_size: int, progress: Callable[[int, int], None]) -> Iterator[Decoded]:
    payloads: dict[int, bytes | None] = {}
    errors: dict[int, InputError] = {}
    for i in indices:
        try:
            payloads[i] = c.payload(i)
        except CorruptFileError as exc:
            payloads[i], errors[i] = None, exc
    model_docs = [i for i in indices if c.entries[i]["method"] == "model"]
    streams: dict[int, list[int]] = {}
    seconds: dict[int, float] = {}
    if model_docs and not all(i in errors for i in model_docs if wanted is None or i in wanted):
        assert isinstance(model, LoadedModel)
        layout = stream_layout(c.header)
        stop = None
        if wanted is not None:  # stop once the last wanted document of this chunk is decoded
            targets = [model_docs.index(i) for i in model_docs if i in wanted]
            stop = _last_to_finish(targets, [layout.n_predictions(int(c.entries[i]["n_tokens"])) for i in model_docs],
                                   batch_size) if targets else None
        decoded, secs = decode_chunk(model, [int(c.entries[i]["n_tokens"]) for i in model_docs],
                                     [payloads[i] for i in model_docs], layout, batch_size, progress, stop)
        streams = dict(zip(model_docs, decoded, strict=True))
        seconds = dict(zip(model_docs, secs, strict=True))
    for i in indices:
        if wanted is not None and i not in wanted:
            continue
        entry = c.entries[i]
        if i in errors:
            yield Decoded(i, entry, None, errors[i], 0.0)
            continue
        try:
            data = _document_bytes(c, model, entry, payloads[i], streams.get(i))
        except DecodeMismatchError as exc:
            yield Decoded(i, entry, None, exc, seconds.get(i, 0.0))
            continue
        yield Decoded(i, entry, data, None, seconds.get(i, 0.0))


def _last_to_finish(targets: list[int], n_predictions: list[int], batch_size: int) -> int:
    """Of the wanted documents (indices into the chunk's model documents), the one whose last step is latest."""
    ends = {a.doc: a.start + n_predictions[a.doc] for a in planning.assign_slots(n_predictions, batch_size)}
    return max(targets, key=lambda d: ends.get(d, 0))


def _document_bytes(c: Container, model: CodingModel | None, entry: dict[str, Any], payload: bytes | None,
                    stream: list[int] | None) -> bytes:
    name = f"{c.name}: document {entry['id']!r}"
    if entry["method"] != "model":
        data = payload or b""
    else:
        assert isinstance(model, LoadedModel) and stream is not None
        layout = stream_layout(c.header)
        n = int(entry["n_tokens"])
        if layout.eos_id is not None and (len(stream) != layout.n_stream(n) or stream[-1] != layout.eos_id):
            raise DecodeMismatchError(mismatch_message(name, "the decoded stream does not end with EOS"))
        first = 1 if layout.prefix_id is not None else 0
        ids = stream[first: first + n]
        text = model.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) if ids else ""
        data = text.encode("utf-8")
    if len(data) != entry["original_bytes"] or sha256_hex(data) != entry["original_sha256"]:
        raise DecodeMismatchError(mismatch_message(
            name, f"the output ({len(data)} bytes) does not match the original's length ({entry['original_bytes']} "
                  "bytes) and sha256"))
    return data


def find_document(c: Container, doc_id: str) -> int:
    for i, e in enumerate(c.entries):
        if e["id"] == doc_id:
            return i
    near = ", ".join(repr(e["id"]) for e in c.entries[:5])
    raise InputError(f"{c.name}: no document with id {doc_id!r} (the archive holds {len(c.entries)}: {near}"
                     f"{', ...' if len(c.entries) > 5 else ''})")


def safe_relative_path(doc_id: str) -> Path | None:
    """A document id as a path under the output folder, or None if it would leave it (absolute, '..')."""
    p = Path(doc_id)
    if p.is_absolute() or not doc_id or any(part in ("..", "") for part in doc_id.split("/")) or "\\" in doc_id:
        return None
    return p


def total_ideal_bits(entries: Sequence[dict[str, Any]]) -> float:
    return math.fsum(float(e["ideal_bits"]) for e in entries)
