"""`mdlbench baselines`: classical compressors on a corpus, every mode, stored in the ``baselines`` table.

    mdlbench baselines --list
    mdlbench baselines --corpus sample --names gzip-9,xz-9e,zstd-19

Rows already in the table for the same corpus bytes and library versions are reused, not recomputed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from mdlbench.cli.args import add_corpus_args, add_out_arg, add_progress_args, corpus_kwargs, names, results_dir
from mdlbench.cli.fmt import format_notes, format_table
from mdlbench.console import fit_line
from mdlbench.errors import EXIT_OK, EXIT_RUN_FAILED, InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--list", action="store_true", help="list the compressors (name, library, version, setting) and exit")
    add_corpus_args(parser, repeatable=False)
    add_out_arg(parser)
    add("--names", help="comma-separated compressors (default: all; see --list)")
    add_progress_args(parser)


def main(args: argparse.Namespace) -> int:
    from mdlbench.baselines.compressors import COMPRESSORS, get_compressor

    if args.list:
        rows = [(s.name, s.library, s.library_version, s.setting) for s in COMPRESSORS.values()]
        print(format_table(("compressor", "library", "version", "setting"), rows))
        return EXIT_OK
    if not args.corpus:
        raise InputError("no corpus: give --corpus SPEC (a file, folder, manifest name or hf:NAME:SPLIT), or --list")
    chosen = list(names(args.names) or ()) if args.names is not None else list(COMPRESSORS)
    if not chosen:
        raise InputError(f"--names {args.names!r}: no compressor named; choose from {', '.join(COMPRESSORS)}")
    for name in chosen:
        get_compressor(name)  # an unknown name fails here, before the corpus is read
    out = results_dir(args)

    from mdlbench.baselines.run import ensure_baselines
    from mdlbench.corpora import open_corpus
    from mdlbench.progress import Progress

    corpus = open_corpus(args.corpus, **corpus_kwargs(args))
    progress = Progress(f"{corpus.name}: hashing", total_bytes=corpus.size_hint_bytes, mode=args.progress)
    corpus_sha256 = corpus.sha256()
    done = [0]

    def on_progress(label: str, done_bytes: int, total_bytes: int | None) -> None:
        if label != progress.label:
            progress.reset(label, total_bytes=total_bytes or corpus.size_hint_bytes)
            done[0] = 0
        progress.update(n_bytes=done_bytes - done[0])
        done[0] = done_bytes

    def documents() -> Iterator[bytes]:
        return (doc.text.encode("utf-8") for doc in corpus.documents())

    df = ensure_baselines(out, corpus.name, corpus_sha256, documents, chosen, on_progress=on_progress)
    progress.close()

    header = ("compressor", "mode", "n_bytes", "compressed_bytes", "bits_per_byte", "MB/s", "verified", "status")
    rows, skipped = [], {}
    for r in df.itertuples(index=False):
        if r.status == "skipped":  # the reason is a sentence: a note under the table, not a column
            rows.append((r.compressor, r.mode, "—", "—", "—", "—", "—", "skipped"))
            skipped.setdefault((r.compressor, f"skipped: {r.note}"), []).append(r.mode)
            continue
        speed = r.n_bytes / r.compress_seconds / 1e6 if r.compress_seconds > 0 else float("nan")
        rows.append((r.compressor, r.mode, int(r.n_bytes), int(r.compressed_bytes), float(r.bits_per_byte),
                     float(speed), "yes" if r.roundtrip_verified else "NO", r.status))
    print(fit_line(f"corpus {corpus.name} (sha256 {corpus_sha256[:12]}), table {Path(out) / 'baselines'}"))
    print(format_table(header, rows))
    if skipped:
        modes_of = df.groupby("compressor")["mode"].apply(set).to_dict()
        print(format_notes([(c if set(modes) == modes_of[c] else f"{c} ({', '.join(modes)})", note)
                            for (c, note), modes in skipped.items()]))
    failed = df[(df["status"] != "skipped") & ~df["roundtrip_verified"].fillna(False)]
    for r in failed.drop_duplicates("compressor").itertuples(index=False):
        print(f"warning: {r.compressor}: round trip not verified ({r.roundtrip_error}); do not rely on its sizes",
              file=sys.stderr)
    return EXIT_RUN_FAILED if len(failed) else EXIT_OK
