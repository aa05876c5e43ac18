"""Corpora: resolve a spec (path, manifest name, hf:...) to a re-iterable, streamed sequence of Documents.

Specs, in the order they are tried:
  * ``hf:NAME:SPLIT`` / ``hf:NAME:CONFIG:SPLIT`` / ``hf:NAME:CONFIG:SPLIT:FIELD`` — a `datasets` stream;
  * an existing path — a ``.txt`` file (one document), a folder of text files, ``.jsonl`` or ``.parquet``;
  * a manifest name — ``NAME.toml`` in $MDLBENCH_MANIFESTS, ./data_manifests, or the built-ins (``sample``).
``max_docs`` / ``max_bytes`` cut a deterministic prefix of whole documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdlbench.config import DEFAULT_CORPUS
from mdlbench.corpora.documents import Document, StreamHasher, stream_sha256
from mdlbench.corpora.files import folder_files, reading
from mdlbench.corpora.manifest import Manifest, find_manifest, load_manifest, resolve_source_path, verify_manifest
from mdlbench.corpora.readers import TEXT_SUFFIXES, Errors, FieldSpec, HFSpec, read_hf, read_local, read_text_file
from mdlbench.digests import file_sha256
from mdlbench.errors import InputError

__all__ = ["Corpus", "Document", "StreamHasher", "open_corpus", "stream_sha256"]

MANIFEST_PREFIX = "manifest:"  # Corpus.source of a manifest corpus: "manifest:<path of the .toml>"


@dataclass(frozen=True, slots=True)
class CorpusStats:
    """What a full read of a corpus found: documents, UTF-8 bytes, and the sha256 of the exact document stream."""

    n_docs: int
    n_bytes: int
    sha256: str


@dataclass(frozen=True)
class Corpus:
    """A named corpus. ``documents()`` starts a fresh stream each call; nothing is held in memory."""

    name: str
    source: str  # the resolved spec, for provenance
    _factory: Callable[[], Iterator[Document]]
    size_hint_bytes: int | None = None  # for progress/ETA; None when unknown (HF streams)
    manifest: Manifest | None = None
    max_docs: int | None = None
    max_bytes: int | None = None
    reopen: dict[str, Any] = field(default_factory=dict, compare=False)  # open_corpus(**reopen) opens it again
    _scanned: list[CorpusStats] = field(default_factory=list, compare=False, repr=False)  # scan()'s memo

    @property
    def streamed(self) -> bool:
        """A Hugging Face stream (or a manifest of one): too big or too remote to read twice, so not pre-scanned."""
        if self.manifest is not None:
            return any(s.hf is not None for s in self.manifest.sources)
        return self.source.startswith("hf:")

    def scan(self) -> CorpusStats:
        """Read every document once — decoding, fields, types, ids, the selection — and count it: the check that
        lets a run refuse a bad corpus before it writes anything, and the exact totals for its progress. Raises
        InputError for the first bad record, or for a corpus with no documents. Remembered per Corpus object."""
        if not self._scanned:
            hasher = StreamHasher()
            n_docs = n_bytes = 0
            for doc in self.documents():
                hasher.update(doc)
                n_docs += 1
                n_bytes += doc.n_bytes
            if n_docs == 0:
                raise InputError(f"{self.source}: no documents{self.selection_note()}; give a corpus with at least "
                                 "one document")
            self._scanned.append(CorpusStats(n_docs, n_bytes, hasher.hexdigest()))
        return self._scanned[0]

    def selection_note(self) -> str:
        parts = [f"--max-docs {self.max_docs}" if self.max_docs is not None else "",
                 f"--max-bytes {self.max_bytes}" if self.max_bytes is not None else ""]
        chosen = " and ".join(p for p in parts if p)
        return f" within {chosen}" if chosen else ""

    def documents(self) -> Iterator[Document]:
        n_docs = 0
        n_bytes = 0
        seen: set[str] = set()
        for doc in self._factory():
            if self.max_docs is not None and n_docs >= self.max_docs:
                return
            if self.max_bytes is not None and n_bytes + doc.n_bytes > self.max_bytes:
                return
            if doc.doc_id in seen:
                raise InputError(f"{self.source}: duplicate document id {doc.doc_id!r}; ids must be unique "
                                 "(pass --id-field with a unique field, or leave it out to number records)")
            seen.add(doc.doc_id)
            n_docs += 1
            n_bytes += doc.n_bytes
            yield doc

    def identity(self) -> str:
        """What pins this corpus before it is read: the manifest's sha256, the files' sha256, or the HF revision.

        Part of every run id, so a changed file or manifest makes a new run instead of silently reusing one.
        """
        reading = {k: self.reopen.get(k) for k in ("text_field", "id_field", "errors", "domain")}
        selection = f"max_docs={self.max_docs};max_bytes={self.max_bytes};reading={json.dumps(reading, sort_keys=True)}"
        if self.manifest is not None:
            return f"manifest:{self.manifest.sha256};{selection}"
        path = Path(self.source)
        if path.exists():
            files = folder_files(path) if path.is_dir() else [path]
            digests = ",".join(f"{p.relative_to(path) if path.is_dir() else p.name}:{_sha256_of(p)}" for p in files)
            return f"files:{hashlib.sha256(digests.encode()).hexdigest()};{selection}"
        return f"{self.source};{selection}"

    def sha256(self) -> str:
        """sha256 of the exact document stream (ids and texts) — iterates the corpus once."""
        return stream_sha256(self.documents())


def _sha256_of(path: Path) -> str:
    with reading(path):
        return file_sha256(path)[0]


def _local_size(path: Path) -> int | None:
    with reading(path):
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in folder_files(path))
    return None


def _manifest_factory(m: Manifest, errors: Errors) -> Callable[[], Iterator[Document]]:
    def documents() -> Iterator[Document]:
        for s in m.sources:
            fields = FieldSpec(s.text_field, s.id_field, s.domain_field, s.domain)
            if s.hf is not None:
                yield from read_hf(HFSpec(s.hf, s.config, s.split or "train", None, s.revision, s.data_files),
                                   fields, errors)
            else:
                path = resolve_source_path(m.path, s.path or "")
                if path.is_file() and path.suffix in TEXT_SUFFIXES:
                    # A pinned text file is one document; its id is the manifest's path string (stable).
                    docs = read_text_file(path, fields, errors, doc_id=s.path)
                else:
                    docs = read_local(path, fields, errors)
                yield from docs if s.select is None else (d for d in docs if d.doc_id in set(s.select))

    return documents


def split_name(text: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` -> (NAME, SPEC); a NAME has no "/" (so a path is never cut), and an existing path is always a
    spec. Example: split_name("web=data/web.jsonl") == ("web", "data/web.jsonl"); split_name("sample") == (None,
    "sample")."""
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec or "/" in name or Path(text).exists():
        return None, text
    return name, spec


def _data_files_name(data_files: str) -> str:
    """A local hf: corpus's default name, from its data files: "data/web.jsonl" -> "web", "data/*.jsonl" -> "data"."""
    path = Path(data_files.split(",")[0])
    if any(c in path.name for c in "*?["):
        return path.parent.name or path.stem.strip("*?[]") or "data"
    return path.stem


def open_corpus(spec: str = DEFAULT_CORPUS, *, name: str | None = None, text_field: str = "text",
                id_field: str | None = None, revision: str | None = None, max_docs: int | None = None,
                max_bytes: int | None = None, errors: Errors = "strict", data_files: str | None = None,
                domain: str = "") -> Corpus:
    """Resolve a corpus spec; local files and manifests are checked now, so a bad spec fails before any scoring.

    ``name`` is the display name (default: the file's stem, the folder's or manifest's name, the hf spec, or for a
    local hf: corpus its data files); ``domain`` labels documents that carry no domain field of their own.
    """
    if errors not in ("strict", "replace"):
        raise InputError(f"--errors {errors!r}: choose 'strict' or 'replace'")
    for value, flag in ((max_docs, "--max-docs"), (max_bytes, "--max-bytes")):
        if value is not None and value < 0:
            raise InputError(f"{flag} {value}: must be >= 0")
    reopen = {"spec": spec, "name": name, "text_field": text_field, "id_field": id_field, "revision": revision,
              "max_docs": max_docs, "max_bytes": max_bytes, "errors": errors, "data_files": data_files,
              "domain": domain}
    fields = FieldSpec(text_field, id_field, domain=domain)
    if spec.startswith("hf:"):
        hf = HFSpec.parse(spec, revision, data_files)
        source = spec + (f"@{revision}" if revision else "") + (f"[{data_files}]" if data_files else "")
        default = _data_files_name(data_files) if data_files else spec
        return Corpus(name or default, source, lambda: read_hf(hf, fields, errors), None, None, max_docs,
                      max_bytes, reopen)
    if spec.startswith(MANIFEST_PREFIX):  # Corpus.source of a manifest corpus, as recorded in a run: reopen it
        pinned = Path(spec[len(MANIFEST_PREFIX):])
        if not pinned.is_file():
            raise InputError(f"{spec!r}: the manifest file is gone; give the corpus again (a path or manifest name)")
        return _open_manifest(pinned, errors, max_docs, max_bytes, name, reopen)
    path = Path(spec).expanduser()
    if path.exists():
        default = path.stem if path.is_file() else path.resolve().name
        return Corpus(name or default, str(path.resolve()), lambda: read_local(path, fields, errors),
                      _local_size(path), None, max_docs, max_bytes, reopen)
    manifest_path = find_manifest(spec) if "/" not in spec and not spec.endswith(
        (".txt", ".jsonl", ".parquet", ".json")) else None
    if manifest_path is None:
        raise InputError(f"{spec!r}: no such file or folder, and no manifest named {spec!r} in "
                         "$MDLBENCH_MANIFESTS, ./data_manifests or the built-ins; give a path, a manifest name "
                         "(e.g. 'sample'), or hf:NAME[:CONFIG]:SPLIT")
    return _open_manifest(manifest_path, errors, max_docs, max_bytes, name, reopen)


def _open_manifest(manifest_path: Path, errors: Errors, max_docs: int | None, max_bytes: int | None,
                   name: str | None, reopen: dict[str, Any]) -> Corpus:
    manifest = load_manifest(manifest_path)
    verify_manifest(manifest)
    size = sum(s.n_bytes or 0 for s in manifest.sources) if all(s.path for s in manifest.sources) else None
    return Corpus(name or manifest.name, f"{MANIFEST_PREFIX}{manifest_path}", _manifest_factory(manifest, errors),
                  size, manifest, max_docs, max_bytes, reopen)
