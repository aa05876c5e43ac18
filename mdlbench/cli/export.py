"""`mdlbench export DIR --format csv|jsonl --out DEST`: one flat file per table, the partition column included."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdlbench.cli.args import names
from mdlbench.export import FORMATS, export_tables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("dir", type=Path, help="results folder (the --out of `mdlbench run`)")
    add("--format", choices=FORMATS, required=True, help="csv or jsonl (JSON Lines)")
    add("--out", type=Path, required=True, metavar="DEST", help="folder for the files, one <table>.<format> each")
    add("--tables", help="only these tables, comma-separated (default: every table with partitions in DIR)")


def main(args: argparse.Namespace) -> int:
    written = export_tables(args.dir, args.format, args.out, only=names(args.tables))
    for path, n_rows in written:
        print(f"wrote {path} ({n_rows:,} row{'s' * (n_rows != 1)})")
    return 0
