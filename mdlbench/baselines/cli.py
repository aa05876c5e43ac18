"""`mdlbench baselines`: classical compressors on a corpus, every mode, stored in the ``baselines`` table.

    mdlbench baselines --list
    mdlbench baselines --corpus sample --names gzip-9,xz-9e,zstd-19

Rows already in the table for the same corpus bytes and library versions are reused, not recomputed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from mdlbench.baselines.compressors import COMPRESSORS, get_compressor
from mdlbench.errors import EXIT_OK, EXIT_RUN_FAILED, InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--list", action="store_true", help="list the compressors (name, library, version, setting) and exit")
    add("--corpus", "-c", metavar="SPEC",
        help="a .txt/.jsonl/.parquet file, a folder of .txt, a manifest name (e.g. sample), or hf:NAME[:CONFIG]:SPLIT")
    add("--out", type=Path, default=None, help="results folder (default ./mdlbench-results or $MDLBENCH_OUT)")
    add("--names", help=f"comma-separated compressors (default: all): {','.join(COMPRESSORS)}")
    add("--max-docs", type=int, help="only the first N documents")
    add("--max-bytes", type=int, help="only the longest prefix of whole documents within N bytes")
    add("--text-field", default="text", help="text field of jsonl/parquet/hf records")
    add("--quiet", action="store_true", help="no progress on stderr")


def main(args: argparse.Namespace) -> int:
    from mdlbench.cli import default_out_dir, format_table

    if args.list:
        rows = [(s.name, s.library, s.library_version, s.setting) for s in COMPRESSORS.values()]
        print(format_table(("compressor", "library", "version", "setting"), rows))
        return EXIT_OK
    if not args.corpus:
        raise InputError("no corpus: give --corpus SPEC (a file, folder, manifest name or hf:NAME:SPLIT), or --list")
    names = [n.strip() for n in args.names.split(",") if n.strip()] if args.names else list(COMPRESSORS)
    if not names:
        raise InputError(f"--names {args.names!r}: no compressor named; choose from {', '.join(COMPRESSORS)}")
    for name in names:
        get_compressor(name)  # an unknown name fails here, before the corpus is read

    from mdlbench.baselines.run import ensure_baselines
    from mdlbench.corpora import open_corpus

    corpus = open_corpus(args.corpus, text_field=args.text_field, max_docs=args.max_docs, max_bytes=args.max_bytes)
    progress = None if args.quiet else ByteProgress(corpus.size_hint_bytes)
    if progress is not None:
        print(f"{corpus.name}: hashing the corpus", file=sys.stderr)
    corpus_sha256 = corpus.sha256()

    def documents() -> Iterator[bytes]:
        return (doc.text.encode("utf-8") for doc in corpus.documents())

    out_dir = args.out or default_out_dir()
    df = ensure_baselines(out_dir, corpus.name, corpus_sha256, documents, names, on_progress=progress)
    if progress is not None:
        progress.close()

    header = ("compressor", "mode", "n_bytes", "compressed_bytes", "bits_per_byte", "MB/s", "verified", "status")
    rows = []
    for r in df.itertuples(index=False):
        if r.status == "skipped":
            rows.append((r.compressor, r.mode, "—", "—", "—", "—", "—", f"skipped: {r.note}"))
            continue
        speed = r.n_bytes / r.compress_seconds / 1e6 if r.compress_seconds > 0 else float("nan")
        rows.append((r.compressor, r.mode, int(r.n_bytes), int(r.compressed_bytes), float(r.bits_per_byte),
                     float(speed), "yes" if r.roundtrip_verified else "NO", r.status))
    print(f"corpus {corpus.name} (sha256 {corpus_sha256[:12]}), table {Path(out_dir) / 'baselines'}")
    print(format_table(header, rows))
    failed = df[(df["status"] != "skipped") & ~df["roundtrip_verified"].fillna(False)]
    for r in failed.drop_duplicates("compressor").itertuples(index=False):
        print(f"warning: {r.compressor}: round trip not verified ({r.roundtrip_error}); do not rely on its sizes",
              file=sys.stderr)
    return EXIT_RUN_FAILED if len(failed) else EXIT_OK


class ByteProgress:
    """``label: 12.3/40.0 MB, 10.2 MB/s`` on stderr, at most every 2 s (0.2 s on a terminal); restarts per label."""

    def __init__(self, total_bytes: int | None, stream: TextIO | None = None) -> None:
        self.total_bytes = total_bytes
        self.stream = stream or sys.stderr
        self.interval_s = 0.2 if self.stream.isatty() else 2.0
        self.label = ""
        self.start = self.last = time.perf_counter()
        self.done = 0

    def __call__(self, label: str, done_bytes: int, total_bytes: int | None) -> None:
        now = time.perf_counter()
        if label != self.label:
            self.label, self.start, self.last = label, now, now
        self.done = done_bytes
        self.total_bytes = total_bytes or self.total_bytes
        if now - self.last >= self.interval_s:
            self.last = now
            self._print()

    def _print(self, end: str = "") -> None:
        elapsed = time.perf_counter() - self.start
        total = f"/{self.total_bytes / 1e6:.1f}" if self.total_bytes else ""
        speed = self.done / elapsed / 1e6 if elapsed > 0 else 0.0
        line = f"{self.label}: {self.done / 1e6:.1f}{total} MB, {speed:.1f} MB/s"
        if self.stream.isatty():
            self.stream.write("\r\x1b[2K" + line + end)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream.isatty() and self.label:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
