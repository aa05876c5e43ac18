"""Crash-safe progress of one run: locks, per-chunk checkpoints, shard markers, and the final assembly.

A run's documents are cut into fixed chunks of ``chunk_docs`` consecutive documents; chunk k belongs to shard
``k % n_shards``. Each finished chunk is written atomically (tmp file + rename) under
``OUT/.progress/<run_id>/``: ``chunk-<k>.tokens.parquet`` (with --per-token) and then ``chunk-<k>.parquet`` (its
documents rows — the file whose presence marks the chunk done). A shard that has done all its chunks writes
``shard-<i>-of-<n>.json`` (documents seen, stream sha256). When every shard's marker exists and they agree, the
chunks are assembled into the run's tables and committed atomically (tables.commit), and the progress folder is
removed. Because a chunk is always scored as the same pool of documents, a run resumed after ``kill -9`` or split
across shards/ranks reproduces an uninterrupted run's numbers bit for bit (same batch size and thread count).

Locks are ``fcntl.flock`` on files in ``OUT/.locks/`` (fsio.file_lock): they vanish with the process that held
them, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mdlbench import tables
from mdlbench.errors import InputError
from mdlbench.fsio import is_locked, write_json_atomic, write_parquet_atomic

PROGRESS_DIR = ".progress"
CORE_TABLES = ("runs", "documents", "summary")  # what every committed run has
OPTIONAL_CORE_TABLES = ("tokens", "context_curve")  # committed with the run when present
LOCK_DIR = ".locks"
RUN_META = "run.json"


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int

    @staticmethod
    def parse(text: str) -> Shard:
        """'I/N' with 0 <= I < N."""
        try:
            i, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise InputError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
        if not 0 <= i < n:
            raise InputError(f"--shard {text!r}: need 0 <= I < N")
        return Shard(i, n)

    def owns(self, chunk_index: int) -> bool:
        return chunk_index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


SINGLE = Shard(0, 1)


class RunState:
    """The progress folder of one run."""

    def __init__(self, out_dir: Path, run_id: str) -> None:
        self.out_dir = Path(out_dir)
        self.run_id = run_id
        self.dir = self.out_dir / PROGRESS_DIR / run_id

    # locks ---------------------------------------------------------------------------------------------------
    def shard_lock_path(self, shard: Shard) -> Path:
        return self.out_dir / LOCK_DIR / f"{self.run_id}.shard-{shard.index}-of-{shard.count}.lock"

    def final_lock_path(self) -> Path:
        return self.out_dir / LOCK_DIR / f"{self.run_id}.final.lock"

    # state ---------------------------------------------------------------------------------------------------
    def is_complete(self) -> bool:
        """Committed, and every core partition of the run intact (sizes as recorded at commit); a damaged run is
        not complete, so a rerun recomputes it."""
        return all(tables.partition_exists(self.out_dir, t, self.run_id) for t in CORE_TABLES) and all(
            tables.partition_status(self.out_dir, t, self.run_id) != "damaged" for t in OPTIONAL_CORE_TABLES)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def clear_unless_scored(self, own_lock: Path | None = None) -> None:
        """``clear``, unless a live process holds one of the run's shard locks: it may be reading the chunks, and
        clears the folder itself once it finds the run complete. ``own_lock``: a shard lock this process holds."""
        if not is_being_scored(self, own_lock):
            self.clear()

    def remove(self) -> None:
        """The progress folder and the run's lock files, as if the run had never started here."""
        self.clear()
        for lock in (self.out_dir / LOCK_DIR).glob(f"{self.run_id}.*.lock"):
            lock.unlink(missing_ok=True)
        for folder in (self.out_dir / PROGRESS_DIR, self.out_dir / LOCK_DIR, self.out_dir):
            try:
                folder.rmdir()  # only when empty: a results folder this run created leaves no trace
            except OSError:
                break

    def ensure(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Create the folder with the run's metadata, or check an existing one is for the same run."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / RUN_META
        if path.exists():
            existing = json.loads(path.read_text("utf-8"))
            if existing.get("identity") != meta.get("identity"):
                raise InputError(f"{self.dir}: progress of a different run under the same id; remove it with "
                                 f"`mdlbench gc {self.out_dir}`")
            if existing.get("chunk_docs") != meta.get("chunk_docs") or existing.get("batch_size") != meta.get(
                    "batch_size"):
                raise InputError(f"{self.dir}: this run was started with chunk_docs={existing.get('chunk_docs')}, "
                                 f"batch_size={existing.get('batch_size')}; resume with the same settings (results "
                                 "are reproduced bit for bit only then) or pass --force to start over")
            return existing
        write_json_atomic(path, meta)
        return meta

    def meta(self) -> dict[str, Any]:
        return json.loads((self.dir / RUN_META).read_text("utf-8"))

    def chunk_path(self, k: int, kind: str = "documents") -> Path:
        """documents: chunk-K.parquet (its presence marks the chunk done); tokens, curve: chunk-K.<kind>.parquet."""
        return self.dir / (f"chunk-{k:08d}.parquet" if kind == "documents" else f"chunk-{k:08d}.{kind}.parquet")

    def chunk_done(self, k: int) -> bool:
        return self.chunk_path(k).is_file()

    def write_chunk(self, k: int, documents: pa.Table, tokens: pa.Table | None, seconds: float,
                    curve: pa.Table | None = None) -> None:
        """The chunk's other tables first, its documents last: the documents file marks the chunk done."""
        for kind, table in (("tokens", tokens), ("curve", curve)):
            if table is not None:
                write_parquet_atomic(table, self.chunk_path(k, kind))
        meta = dict(documents.schema.metadata or {})
        meta[b"chunk_seconds"] = repr(seconds).encode()
        write_parquet_atomic(documents.replace_schema_metadata(meta), self.chunk_path(k))

    def chunk_files(self, kind: str) -> list[Path]:
        return sorted(self.dir.glob(f"chunk-*.{kind}.parquet"))

    def done_chunks(self) -> list[int]:
        return sorted(int(p.name[6:14]) for p in self.dir.glob("chunk-*.parquet") if p.name.count(".") == 1)

    def mark_shard(self, shard: Shard, n_docs: int, stream_sha256: str) -> None:
        write_json_atomic(self.dir / f"shard-{shard.index}-of-{shard.count}.json",
                          {"n_docs": n_docs, "corpus_sha256": stream_sha256, "shard": str(shard),
                           "finished_at": time.time()})

    def shard_markers(self) -> dict[str, dict[str, Any]]:
        return {p.stem: json.loads(p.read_text("utf-8")) for p in sorted(self.dir.glob("shard-*-of-*.json"))}

    def missing_shards(self, count: int) -> list[int]:
        present = self.shard_markers()
        return [i for i in range(count) if f"shard-{i}-of-{count}" not in present]

    def read_chunks(self, kind: str = "documents") -> tuple[pa.Table | None, float]:
        """All chunk tables of one kind concatenated in chunk order, and the summed scoring seconds."""
        parts, seconds = [], 0.0
        for k in self.done_chunks():
            path = self.chunk_path(k, kind)
            if kind != "documents" and not path.exists():
                continue
            t = pq.read_table(path)
            parts.append(t)
            if kind == "documents":
                seconds += float((t.schema.metadata or {}).get(b"chunk_seconds", b"0"))
        if not parts:
            return None, seconds
        return pa.concat_tables([p.replace_schema_metadata(None) for p in parts]), seconds


def runs_in_progress(out_dir: Path) -> list[tuple[RunState, dict[str, Any]]]:
    """Every run with a progress folder (running, resumable or awaiting merge) and its metadata ({} if none)."""
    found = []
    for d in sorted((Path(out_dir) / PROGRESS_DIR).glob("*")):
        state = RunState(out_dir, d.name)
        found.append((state, state.meta() if (d / RUN_META).is_file() else {}))
    return found


def is_busy(state: RunState) -> bool:
    """Whether a live process holds one of the run's locks."""
    return any(is_locked(p) for p in (state.out_dir / LOCK_DIR).glob(f"{state.run_id}.*.lock"))


def is_being_scored(state: RunState, own_lock: Path | None = None) -> bool:
    """Whether a live process holds one of the run's shard locks (other than ``own_lock``, which this process
    holds): it may be reading the progress folder."""
    return any(is_locked(p) for p in (state.out_dir / LOCK_DIR).glob(f"{state.run_id}.shard-*.lock")
               if p != own_lock)
