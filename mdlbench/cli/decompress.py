"""`mdlbench decompress`: decode a .mdlz file written by `mdlbench compress`, checking every document.

    mdlbench decompress book.txt.mdlz -o book.txt            # the local model recorded in the file, if its
                                                             # weights' sha256 matches (a hub id needs --model)
    mdlbench decompress book.txt.mdlz -o book.txt --model ./my-model-folder
    mdlbench decompress corpus.mdlz -o corpus.jsonl          # every document ({"id", "text"} lines)
    mdlbench decompress docs.mdlz -o docs/                   # a folder corpus: its files under docs/
    mdlbench decompress corpus.mdlz --doc ID -o doc.txt      # one document, decoding only its chunk

The model's weights and tokenizer must be the ones that compressed the file (their sha256 are checked first);
dtype, device, thread count and batch size default to the recorded ones. Each document is written only after its
length and sha256 match the original's; a damaged document is reported (one line) and the others are written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mdlbench.cli.args import add_progress_args, positive_int
from mdlbench.config import DEVICES
from mdlbench.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", help="a .mdlz file ('-' reads stdin)")
    add("-o", "--output", type=Path, help="output file or folder (default: INPUT without .mdlz, plus .jsonl for "
        "a corpus of records; '-' writes stdout)")
    add("--doc", metavar="ID", help="write only this document's text (decodes only its chunk)")
    add("--model", "-m", help="the model that compressed the file (default: the spec recorded in it)")
    add("--device", choices=DEVICES, help="default: the device type recorded in the file")
    add("--threads", type=positive_int, help="torch CPU threads (default: the number recorded in the file)")
    add("--batch-size", type=positive_int, help="must be the recorded one (the default); anything else is refused")
    add("--force", "-f", action="store_true", help="overwrite the output")
    add_progress_args(parser)


def main(args: argparse.Namespace) -> int:
    from mdlbench.coding.commands import DecompressRequest, decompress

    decompress(DecompressRequest(**{k: v for k, v in vars(args).items() if not k.startswith("_")
                                    and k != "command"}))
    return EXIT_OK
