"""`mdlbench compress`: code a file or a whole corpus with a model into an actual bitstream (.mdlz).

    mdlbench compress book.txt --model default -o book.txt.mdlz       # one file, its exact bytes
    mdlbench compress book.txt --model uniform-bytes                   # 8 bits per byte + header
    mdlbench compress corpus.jsonl -m default -o corpus.mdlz           # every document, one archive
    mdlbench compress sample --max-docs 20 -o sample.mdlz              # any corpus spec `mdlbench run` takes

What counts as one file and what as a corpus: see mdlbench/coding/commands.py. A corpus compress that is killed
resumes from OUTPUT.partial when started again with the same options. stdout: one summary line (sizes, coded vs
ideal bits); stderr: notes (fallback to raw bytes), progress and speed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mdlbench.cli.args import (
    CORPUS_HELP,
    add_corpus_reading_args,
    add_model_args,
    add_progress_args,
    add_windowing_args,
    positive_int,
)
from mdlbench.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", help=f"a file (any bytes; '-' reads stdin), or a corpus: {CORPUS_HELP}")
    add_model_args(parser, repeatable=False, default="default", device_default="cpu")
    add("-o", "--output", type=Path, help="output file (default: INPUT.mdlz for a file, CORPUS_NAME.mdlz)")
    add("--as", dest="as_", choices=("auto", "file", "corpus"), default="auto",
        help="auto (default): record files, folders, manifests and hf: specs are corpora, other files one file")
    add_windowing_args(parser)
    add("--batch-size", type=positive_int, help="documents coded side by side (default: 128, "
        "or fewer if their KV caches would not fit the memory budget); recorded — decoding uses the same")
    add("--threads", type=positive_int, help="torch CPU threads (recorded; decompress uses the same number by default)")
    add_corpus_reading_args(parser)
    add("--force", "-f", action="store_true",
        help="overwrite the output file, and discard an OUTPUT.partial left with other settings (one left with the "
             "same settings is resumed)")
    add_progress_args(parser)


def main(args: argparse.Namespace) -> int:
    from mdlbench.coding.commands import CompressRequest, compress

    compress(CompressRequest(**{k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}))
    return EXIT_OK
