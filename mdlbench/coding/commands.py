"""What `mdlbench compress` and `mdlbench decompress` do (cli/compress.py, cli/decompress.py parse the flags):
inputs, outputs, model loading, progress.

What INPUT is (compress):
  * ``-`` or a regular file whose suffix is not a record format (``.jsonl``, ``.json``, ``.ndjson``, ``.parquet``,
    ``.pq``) — including ``.txt`` — is one file: its exact bytes, whatever they are, in a container of kind "file"
    (what ``compress`` has always done). ``--as corpus`` reads such a file as a one-document corpus instead.
  * anything else ``mdlbench run --corpus`` takes — a record file, a folder, a manifest name, ``hf:...`` — is a
    corpus: every document, with the same corpus options as ``run``, in one archive of kind "corpus".
    ``--as file`` compresses a record file's bytes instead.

What decompress writes: a "file" container -> the file's bytes. A "corpus" archive -> for a folder corpus, the
documents as files under DEST (their ids are their relative paths); for any other corpus, a JSON Lines file with
``id`` and ``text`` (and ``domain`` where the corpus had one). ``--doc ID`` writes that document's text alone,
decoding only its chunk.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mdlbench.codelength import bytes_to_bits
from mdlbench.coding.archive import (
    PROGRESS_SUFFIX,
    ChunkProgress,
    Compressed,
    Decoded,
    Source,
    batch_settings,
    check_batch_size,
    compress_documents,
    decode_archive,
    find_document,
    open_archive,
    safe_relative_path,
    total_ideal_bits,
)
from mdlbench.coding.container import SUFFIX
from mdlbench.coding.identity import CodingModel, environment_warnings, resolve_settings
from mdlbench.config import DEFAULT_MODEL, UNIFORM_BYTES, ProgressMode
from mdlbench.console import fit_line
from mdlbench.corpora.readers import JSONL_SUFFIXES, PARQUET_SUFFIXES
from mdlbench.errors import InputError
from mdlbench.fsio import nearest_existing, require_writable, temporary_sibling, write_bytes_atomic
from mdlbench.progress import Progress

RECORD_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES
CORPUS_OPTIONS = ("text_field", "id_field", "max_docs", "max_bytes", "data_files", "corpus_revision")


def chunk_progress(label: str, mode: ProgressMode, total_docs: int | None = None,
                   stream: TextIO | None = None) -> tuple[Progress, Callable[[ChunkProgress], None]]:
    """A Progress (documents and tokens, rate, ETA) and the per-chunk callback the archive coder calls."""
    progress = Progress(label, total_docs=total_docs, mode=mode, stream=stream)
    last = {"chunk": -1, "symbols": 0}

    def on_chunk(p: ChunkProgress) -> None:
        if p.chunk != last["chunk"]:
            last["chunk"], last["symbols"] = p.chunk, 0
        docs = p.docs_done + (p.chunk_docs if p.symbols_done >= p.symbols_total else 0)
        progress.update(n_docs=max(0, docs - progress.done["docs"]), n_tokens=p.symbols_done - last["symbols"])
        last["symbols"] = p.symbols_done

    return progress, on_chunk


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads {threads}: must be >= 1")
    import torch

    torch.set_num_threads(threads)


def is_single_file(spec: str, as_: str) -> bool:
    """See the module docstring: which inputs are one file and which are corpora."""
    if as_ == "file":
        return True
    if as_ == "corpus":
        return False
    if spec == "-":
        return True
    path = Path(spec).expanduser()
    return path.is_file() and path.suffix.lower() not in RECORD_SUFFIXES


def read_input(spec: str) -> bytes:
    if spec == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(spec).expanduser().read_bytes()
    except OSError as exc:
        raise InputError(f"{spec}: cannot read ({exc.strerror})") from exc


def check_target(path: Path, *, folder_ok: bool = False) -> None:
    """Before anything is coded: the output can be written. A name that cannot be a file (a folder, or under a
    file or a missing folder) is the user's input (exit 2); a folder that cannot be written to is an OS error
    (exit 4, the CLI's one line), as when a write fails later."""
    if path.is_dir() and not folder_ok:
        raise InputError(f"-o {path}: is a folder; give a file name")
    # An output folder is created with its parents; a file's folder must exist.
    folder = nearest_existing(path.parent) if folder_ok else path.parent
    if not folder.exists():
        raise InputError(f"-o {path}: the folder {folder} does not exist; create it or write elsewhere")
    if not folder.is_dir():
        raise InputError(f"-o {path}: {folder} is a file, not a folder")
    require_writable(folder)


def write_output(path: Path, data: bytes, force: bool) -> None:
    """Write atomically (temporary file + rename); refuse to overwrite without --force. An OSError (disk full)
    reaches the CLI, which reports it in one line with exit 4."""
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite it")
    write_bytes_atomic(path, data)


def _load(req: CompressRequest) -> CodingModel:
    if req.model == UNIFORM_BYTES:
        return UNIFORM_BYTES
    from mdlbench.scoring.models import load_model

    return load_model(req.model, revision=req.model_revision, dtype=req.dtype, device=req.device,
                      boundary_token=req.boundary_token, trust_remote_code=req.trust_remote_code)


@dataclass(frozen=True)
class CompressRequest:
    """`mdlbench compress`'s options (cli/compress.py), with its defaults."""

    input: str
    model: str = DEFAULT_MODEL
    output: Path | None = None
    as_: str = "auto"  # auto | file | corpus
    window: int | None = None
    stride: int | None = None
    first_token: str | None = None
    end: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    model_revision: str | None = None
    boundary_token: str | None = None
    trust_remote_code: bool = False
    batch_size: int | None = None
    text_field: str = "text"
    id_field: str | None = None
    max_docs: int | None = None
    max_bytes: int | None = None
    data_files: str | None = None
    corpus_revision: str | None = None
    errors: str = "strict"
    force: bool = False
    progress: ProgressMode = "auto"


def compress(req: CompressRequest, out: TextIO | None = None, err: TextIO | None = None) -> Compressed:
    """Validate everything, then code (see the module docstring); one summary line on ``out``."""
    out, err = out or sys.stdout, err or sys.stderr
    single = is_single_file(req.input, req.as_)
    total_docs: int | None = 1
    if single:
        used = [f"--{k.replace('_', '-')}" for k in CORPUS_OPTIONS if getattr(req, k) not in (None, "text")]
        if used:
            verb = "applies" if len(used) == 1 else "apply"
            raise InputError(f"{', '.join(used)} {verb} to corpora; {req.input} is compressed as one file (pass "
                             "--as corpus to read it as a corpus)")
        output = req.output or (Path(f"{req.input}{SUFFIX}") if req.input != "-" else None)
        if output is None:
            raise InputError("reading stdin: pass -o FILE.mdlz")
    else:
        from mdlbench.corpora import open_corpus

        corpus = open_corpus(req.input, text_field=req.text_field, id_field=req.id_field,
                             revision=req.corpus_revision, max_docs=req.max_docs, max_bytes=req.max_bytes,
                             errors=req.errors, data_files=req.data_files)  # type: ignore[arg-type]
        # A local corpus is read once first, as `run` does: a bad record fails before anything is coded or written,
        # and the progress knows the total.
        total_docs = None if corpus.streamed else corpus.scan().n_docs
        output = req.output or Path(f"{corpus.name}{SUFFIX}")
    check_target(output)
    if output.exists() and not req.force:
        raise InputError(f"{output} exists; pass --force to overwrite it")
    set_threads(req.threads)
    model = _load(req)
    settings = None if isinstance(model, str) else resolve_settings(
        model, window=req.window, stride=req.stride, first_token=req.first_token, end=req.end)  # type: ignore[arg-type]
    batch = batch_settings(req.batch_size, model, settings.window if settings else None)
    progress, on_chunk = chunk_progress("compress", req.progress, total_docs, err)
    start = time.perf_counter()
    if single:
        data = read_input(req.input)
        from mdlbench.coding.coder import FILE_BATCH

        name = Path(req.input).name if req.input != "-" else "stdin"
        packed = compress_documents(model, [Source(name, data)], settings=settings, batch=FILE_BATCH, kind="file",
                                    progress=on_chunk)
        assert packed.blob is not None
        write_output(output, packed.blob, req.force)
    else:
        folder = Path(corpus.source).is_dir()
        meta = {"name": corpus.name, "source": corpus.source, "layout": "folder" if folder else "records",
                "options": {"text_field": req.text_field, "id_field": req.id_field, "max_docs": req.max_docs,
                            "max_bytes": req.max_bytes, "errors": req.errors, "data_files": req.data_files,
                            "revision": req.corpus_revision}}
        sources = (Source(d.doc_id, d.text.encode("utf-8"), d.domain) for d in corpus.documents())
        partial = output.with_name(output.name + PROGRESS_SUFFIX)
        if partial.exists() and not req.force and progress.enabled:
            print(f"compress: resuming from {partial}", file=err)
        packed = compress_documents(model, sources, settings=settings, batch=batch, kind="corpus", corpus=meta,
                                    output=output, resume_identity=corpus.identity(), force=req.force,
                                    progress=on_chunk)
    progress.close()
    seconds = time.perf_counter() - start
    _summary(req.input, output, packed, seconds, progress.done["tokens"], out, err, speed=req.progress)
    return packed


def _summary(name: str, output: Path, packed: Compressed, seconds: float, symbols: int, out: TextIO,
             err: TextIO, *, speed: ProgressMode) -> None:
    entries = packed.entries
    n_bytes = sum(int(e["original_bytes"]) for e in entries)
    payload = sum(int(e["payload_bytes"]) for e in entries)
    coded, ideal = bytes_to_bits(payload), total_ideal_bits(entries)
    methods = sorted({e["method"] for e in entries})
    raw = [e for e in entries if e.get("fallback_reason")]
    for e in raw[:5]:
        print(f"note: {e['id']}: {e['fallback_reason']}; stored its {e['original_bytes']:,} bytes raw (8 bits per "
              "byte) instead of coding them with the model", file=err)
    if len(raw) > 5:
        print(f"note: {len(raw) - 5} more documents stored raw", file=err)
    bpb = f"{coded / n_bytes:.4f}" if n_bytes else "—"
    docs = f"{len(entries):,} documents, " if packed.header.get("kind") == "corpus" else ""
    # three lines that fit the console (120 columns): where, how big, how well coded
    print(fit_line(f"{name} -> {output}:"), file=out)
    print(f"  {docs}{n_bytes:,} bytes -> {packed.total_bytes:,} bytes (header and index {packed.header_bytes:,} + "
          f"payload {payload:,})", file=out)
    print(f"  method {'/'.join(methods) or '—'}; coded {coded:,} bits vs ideal {ideal:,.1f} bits (overhead "
          f"{coded - ideal:+,.1f}); payload {bpb} bits/byte", file=out)
    if packed.resumed_chunks:
        print(f"compress: resumed after {packed.resumed_chunks} finished chunk(s)", file=err)
    _speed("compress", symbols, seconds, err, speed)


def _speed(label: str, symbols: int, seconds: float, err: TextIO, mode: ProgressMode) -> None:
    """The coder's speed, for a person reading the console: not with --quiet/--progress none, not in json mode
    (whose stderr is JSON lines only), and not when no symbol went through the model (raw bytes only)."""
    if mode in ("auto", "bar") and symbols > 0 and seconds > 0:
        print(f"{label}: {symbols:,} symbols in {seconds:.2f} s ({symbols / seconds:,.1f} tokens/s)", file=err)


@dataclass(frozen=True)
class DecompressRequest:
    """`mdlbench decompress`'s options (cli/decompress.py), with its defaults."""

    input: str
    output: Path | None = None
    model: str | None = None
    device: str | None = None
    threads: int | None = None
    batch_size: int | None = None
    doc: str | None = None
    force: bool = False
    progress: ProgressMode = "auto"


def _default_output(req: DecompressRequest, header: dict[str, Any]) -> Path:
    name = req.input
    if name == "-" or not name.endswith(SUFFIX) or len(name) == len(SUFFIX):
        raise InputError(f"{req.input}: cannot derive the output name (no {SUFFIX} suffix); pass -o OUTPUT")
    stem = name[: -len(SUFFIX)]
    if header.get("kind") == "corpus" and header.get("corpus", {}).get("layout") != "folder" \
            and not stem.endswith(".jsonl"):
        stem += ".jsonl"
    return Path(stem)


def trusted_model(identity: Any, recorded: dict[str, Any], source: str) -> None:
    """A file names a local model to load; decompress loads it without ``--model`` only when its weights (hashed
    from the files, before anything loads) are the ones that compressed the file."""
    if identity.weights_sha256 != recorded.get("sha256"):
        raise InputError(f"{source} names the model {identity.spec!r}, but the weights there have sha256 "
                         f"{identity.weights_sha256[:12]}…, not the {str(recorded.get('sha256'))[:12]}… that "
                         "compressed the file; pass --model with the model that did")


def load_recorded_model(header: dict[str, Any], source: str, *, model: str | None, device: str | None) -> Any:
    """The model a container needs: ``model`` when given, else the local model the file records — loaded only if
    its weights' sha256 is the recorded one (a file never makes decompress fetch or run a model of its choosing)."""
    recorded = header["model"]
    env = header.get("environment", {})
    spec = model or recorded.get("spec")
    if spec == UNIFORM_BYTES:
        raise InputError(f"{source} was coded with model {recorded.get('name')!r}, not {UNIFORM_BYTES}; "
                         f"pass --model {recorded.get('spec')!r}")
    from mdlbench.scoring.identity import identify_model
    from mdlbench.scoring.models import load_identified

    if model is None and (recorded.get("format") == "hub" or not (spec == DEFAULT_MODEL or Path(spec).exists())):
        raise InputError(f"{source} names the model {spec!r}, which is not a local file or folder here; "
                         "decompress does not fetch a model named by a file: pass --model with the model that "
                         "compressed it")
    try:
        identity = identify_model(spec, revision=recorded.get("revision") or None,
                                  boundary_token=recorded.get("boundary_token"))
    except InputError as exc:
        hint = "" if model else " (the spec recorded in the file; pass --model to point at the model)"
        raise InputError(f"{exc}{hint}") from exc
    if model is None:
        trusted_model(identity, recorded, source)
    return load_identified(identity, dtype=recorded.get("dtype", "float32"), device=device or env.get("device", "cpu"))


def decompress(req: DecompressRequest, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Decode, check and write (see the module docstring). Returns the number of documents written; documents
    that fail are reported one line each on ``err`` and then raise InputError after the others are written."""
    out, err = out or sys.stdout, err or sys.stderr
    source: bytes | Path = sys.stdin.buffer.read() if req.input == "-" else Path(req.input)
    c = open_archive(source, name=req.input)
    try:
        return _decompress(req, c, out, err)
    finally:
        c.close()


def _decompress(req: DecompressRequest, c: Any, out: TextIO, err: TextIO) -> int:
    header = c.header
    corpus = header.get("kind") == "corpus"
    if req.doc is not None and req.output is None:
        raise InputError("--doc ID: pass -o FILE (or -o - for stdout)")
    output = req.output or _default_output(req, header)
    to_stdout = str(output) == "-"
    if not corpus and req.doc is None and len(c.entries) != 1:
        raise InputError(f"{req.input}: a file container with {len(c.entries)} documents (damaged)")
    if not to_stdout:
        folder_layout = corpus and req.doc is None and header.get("corpus", {}).get("layout") == "folder"
        check_target(output, folder_ok=folder_layout)
        if output.exists() and not req.force:
            raise InputError(f"{output} exists; pass --force to overwrite it")
    wanted = {find_document(c, req.doc)} if req.doc is not None else None
    check_batch_size(c, req.batch_size)
    needs_model = any(e["method"] == "model" for i, e in enumerate(c.entries) if wanted is None or i in wanted)
    model = None
    if needs_model:
        set_threads(req.threads if req.threads is not None else header.get("environment", {}).get("torch_threads"))
        model = load_recorded_model(header, req.input, model=req.model, device=req.device)
        for warning in environment_warnings(header, model):
            print(f"warning: {warning}", file=err)
    elif req.model and req.model != header["model"].get("spec") and req.progress != "none":
        print(f"note: {req.input} holds raw bytes; --model is not needed and was not used", file=err)
    progress, on_chunk = chunk_progress("decompress", req.progress, len(wanted or c.entries), err)
    start = time.perf_counter()
    docs = decode_archive(c, model, wanted=wanted, batch_size=req.batch_size, progress=on_chunk)
    if req.doc is not None or not corpus:
        written, failed = _write_one(docs, output, to_stdout, req.force)
    elif header.get("corpus", {}).get("layout") == "folder":
        written, failed = _write_folder(docs, output, req.force, err)
    else:
        written, failed = _write_jsonl(docs, output, to_stdout, req.force, err)
    progress.close()
    seconds = time.perf_counter() - start
    if not to_stdout and written:
        if corpus and req.doc is None:
            what = f"{written:,} documents"
        else:
            entry = c.entries[min(wanted or {0})]
            what = f"{entry['original_bytes']:,} bytes, method {entry['method']}"
        print(f"{req.input} -> {output}: {what}, sha256 verified", file=out)
    raw = [e for e in c.entries if e.get("fallback_reason")]
    if not corpus and raw:
        print(f"note: the file holds raw bytes ({raw[0]['fallback_reason']})", file=err)
    _speed("decompress", progress.done["tokens"], seconds, err, req.progress)
    if failed:
        total = written + failed
        raise InputError(f"{failed} of {total} documents failed (see above)" + (
            f"; the other {written} were written to {output}" if written else ""))
    return written


def _report(d: Decoded, err: TextIO) -> None:
    print(f"error: {d.error}", file=err)


def _write_one(docs: Any, output: Path, to_stdout: bool, force: bool) -> tuple[int, int]:
    [d] = list(docs)
    if d.data is None:
        assert d.error is not None
        raise d.error
    if to_stdout:
        sys.stdout.buffer.write(d.data)
        sys.stdout.buffer.flush()
    else:
        write_output(output, d.data, force)
    return 1, 0


def _write_jsonl(docs: Any, output: Path, to_stdout: bool, force: bool, err: TextIO) -> tuple[int, int]:
    written = failed = 0
    tmp = None if to_stdout else temporary_sibling(output)
    f = sys.stdout if tmp is None else tmp.open("w", encoding="utf-8", newline="\n")
    try:
        for d in docs:
            if d.data is None:
                _report(d, err)
                failed += 1
                continue
            record = {"id": d.entry["id"], "text": d.data.decode("utf-8")}
            if d.entry.get("domain"):
                record["domain"] = d.entry["domain"]
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
        if tmp is not None:
            f.close()
            if written:
                os.replace(tmp, output)
    finally:
        if tmp is not None:
            f.close()
            tmp.unlink(missing_ok=True)
    return written, failed


def _write_folder(docs: Any, output: Path, force: bool, err: TextIO) -> tuple[int, int]:
    tmp = temporary_sibling(output)
    written = failed = 0
    try:
        for d in docs:
            rel = safe_relative_path(d.entry["id"])
            if d.data is not None and rel is None:
                d = d._replace(data=None, error=InputError(f"document {d.entry['id']!r}: its id is not a relative "
                                                            "path inside the output folder; not written"))
            if d.data is None:
                _report(d, err)
                failed += 1
                continue
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(d.data)
            written += 1
        if written:
            tmp.mkdir(exist_ok=True)
            old = None
            if output.exists():
                if not force:
                    raise InputError(f"{output} exists; pass --force to overwrite it")
                old = temporary_sibling(output).with_suffix(".old")
                os.replace(output, old)
            os.replace(tmp, output)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written, failed
