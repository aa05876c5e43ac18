"""`mdlbench corpora`: the corpus names `-c` knows (manifests in $MDLBENCH_MANIFESTS, ./data_manifests and the
built-ins, first match wins), with documents, bytes, sources and licenses where they are cheap to know
(corpora/catalog.py), and the other forms a corpus spec can take."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from mdlbench.cli.args import CORPUS_HELP
from mdlbench.cli.fmt import fmt_bytes, wrap_lines
from mdlbench.corpora.catalog import CorpusEntry, corpus_catalog
from mdlbench.corpora.manifest import MANIFEST_ENV, labelled_manifest_dirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per manifest on stdout")


def _size(e: CorpusEntry) -> str:
    kinds = sorted(set(e.sources))
    sources = f"{len(e.sources)} source{'s' * (len(e.sources) != 1)}" + (f" ({', '.join(kinds)})" if kinds else "")
    if e.n_bytes is None and e.n_documents is None:
        return f"{sources}; documents and bytes are known once it is read"
    docs = "documents not counted" if e.n_documents is None else \
        f"{e.n_documents:,} document{'s' * (e.n_documents != 1)}"
    size = "bytes unknown" if e.n_bytes is None else f"{e.n_bytes:,} bytes" if e.n_bytes < 1000 else \
        f"{fmt_bytes(e.n_bytes)} ({e.n_bytes:,} bytes)"
    return f"{docs}, {size}, {sources}"


def main(args: argparse.Namespace) -> int:
    entries = corpus_catalog()
    if args.json:
        for e in entries:
            print(json.dumps({k: (str(v) if k in ("path", "shadowed_by") and v is not None else v)
                              for k, v in asdict(e).items()}))
        return 0
    dirs = [f"{where} = {path}" + ("" if path.is_dir() else " (absent)") for where, path in labelled_manifest_dirs()]
    if not os.environ.get(MANIFEST_ENV):
        dirs.insert(0, f"${MANIFEST_ENV} (unset)")
    print(wrap_lines([f"manifests searched, first match wins: {'; '.join(dirs)}"]))
    width = max([len(e.name) for e in entries] + [8]) + 2
    for e in entries:
        print()
        if e.shadowed_by is not None:
            print(wrap_lines([f"[{e.where}] shadowed by {e.shadowed_by}", str(e.path)], first=e.name, indent=width))
            continue
        lines = [f"[{e.where}] {_size(e)}" if not e.problems or e.sources else f"[{e.where}]"]
        if e.corpus_name and e.corpus_name != e.name:
            lines.append(f"recorded as corpus {e.corpus_name!r}")
        lines += [e.description] if e.description else []
        lines.append(f"license: {e.license or '(none given)'}")
        lines += [f"problem: {p}" for p in e.problems]
        lines.append(str(e.path))
        print(wrap_lines(lines, first=e.name, indent=width))
    if not entries:
        print("\nno manifests found")
    print()
    print(wrap_lines([f"-c also takes {CORPUS_HELP}; `mdlbench manifest create` pins one as a manifest."]))
    return 0
