"""What corpora a name can mean here: every manifest in the folders ``-c NAME`` searches, with what is cheap to know.

Cheap means read from the manifest or the file system without reading the corpus: bytes are the pinned ``n_bytes``
(known when every source is a whole local file); documents are counted for text files (one each), JSON Lines files up to
``COUNT_LINES_MAX_BYTES`` (non-blank lines, as the reader counts them) and Parquet files (the row count in the
footer); a Hugging Face source has neither. Files are checked for presence and pinned size only: the sha256 is
verified when a run opens the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from mdlbench.corpora.manifest import Manifest, labelled_manifest_dirs, load_manifest, resolve_source_path
from mdlbench.corpora.readers import JSONL_SUFFIXES, PARQUET_SUFFIXES, TEXT_SUFFIXES
from mdlbench.errors import InputError

COUNT_LINES_MAX_BYTES = 64 * 2**20


@dataclass(frozen=True)
class CorpusEntry:
    """One manifest found, in search order; ``shadowed_by`` is the manifest of the same name that wins."""

    name: str  # what `-c NAME` takes: the file name without .toml
    path: Path
    where: str  # "$MDLBENCH_MANIFESTS", "./data_manifests" or "built-in"
    corpus_name: str = ""  # the manifest's `name`: the corpus column of the runs it makes
    description: str = ""
    license: str = ""
    sources: tuple[str, ...] = ()  # "jsonl file", "hf:wikitext (config wikitext-2-raw-v1, split test)"...
    n_bytes: int | None = None
    n_documents: int | None = None
    problems: tuple[str, ...] = ()  # missing files, sizes that differ from the pin, an unreadable manifest
    shadowed_by: Path | None = None


def _count_documents(path: Path) -> int | None:
    """Documents in one local source without reading its text, or None when that is not cheap."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return sum(1 for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    if suffix in JSONL_SUFFIXES:
        if path.stat().st_size > COUNT_LINES_MAX_BYTES:
            return None
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    if suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except OSError:
            return None
    return 1  # a text file is one document


def _entry(manifest: Manifest, name: str, where: str) -> CorpusEntry:
    sources: list[str] = []
    problems: list[str] = []
    counts: list[int | None] = []
    for s in manifest.sources:
        if s.hf is not None:
            detail = ", ".join(f"{k} {v}" for k, v in (("config", s.config), ("split", s.split),
                                                        ("revision", (s.revision or "")[:12])) if v)
            sources.append(f"hf:{s.hf}" + (f" ({detail})" if detail else ""))
            counts.append(None)
            continue
        p = resolve_source_path(manifest.path, s.path or "").resolve()
        suffix = p.suffix.lower().lstrip(".") or "folder"
        sources.append((f"{suffix} file" if p.suffix else "folder")
                       + (f", {len(s.select)} documents selected by id" if s.select is not None else ""))
        if not p.exists():
            problems.append(f"missing file {p}")
            counts.append(None)
        elif p.is_file() and p.stat().st_size != s.n_bytes:
            problems.append(f"{p} has {p.stat().st_size:,} bytes, the manifest pins {s.n_bytes:,}")
            counts.append(None)
        else:
            counts.append(_count_documents(p) if s.select is None else len(s.select))
    # Pinned bytes are whole files': they are the corpus's size only when no source selects documents from one.
    local = all(s.path is not None and s.select is None for s in manifest.sources)
    n_bytes = sum(s.n_bytes or 0 for s in manifest.sources) if local else None
    n_docs = sum(c for c in counts if c is not None) if counts and all(c is not None for c in counts) else None
    return CorpusEntry(name, manifest.path, where, manifest.name, manifest.description, manifest.license,
                       tuple(sources), n_bytes, n_docs, tuple(problems))


def corpus_catalog() -> list[CorpusEntry]:
    """Every ``*.toml`` manifest in the searched folders, in search order, then by name; a manifest that cannot be
    read is listed with the reason, not raised, so one broken file does not hide the others."""
    out: list[CorpusEntry] = []
    winner: dict[str, Path] = {}
    for where, folder in labelled_manifest_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            name = path.stem  # `-c NAME` finds NAME.toml, whatever its `name` key says
            try:
                entry = _entry(load_manifest(path), name, where)
            except InputError as exc:
                entry = CorpusEntry(name, path, where, problems=(f"unreadable: {exc}",))
            out.append(entry if name not in winner else replace(entry, shadowed_by=winner[name]))
            winner.setdefault(name, path)
    return out
