"""`mdlbench verify DIR`: check every committed file of a results folder against the sha256 and size recorded when
it was committed. Exit 0 when all match; 3 when something is damaged (each one listed, with the fix)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdlbench import tables
from mdlbench.cli.ls import require_dir
from mdlbench.errors import EXIT_OK, EXIT_RUN_FAILED
from mdlbench.run.integrity import damaged_partitions, unverified_partitions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="results folder")


def main(args: argparse.Namespace) -> int:
    require_dir(args.dir)
    damaged = damaged_partitions(args.dir, verify_hash=True)
    unverified = unverified_partitions(args.dir)
    total = sum(len(tables.partitions(args.dir, t)) for t in tables.TABLES)
    for table, value in damaged:
        print(f"damaged: {tables.partition_dir(args.dir, table, value)}")
    if unverified:
        print(f"{len(unverified)} partition(s) written before integrity records existed (schema version < 3): "
              "readable, not checkable")
    print(f"{total - len(damaged)} of {total} partitions intact")
    if damaged:
        print(f"fix: rerun the runs (damaged runs are recomputed), or remove the damaged partitions with "
              f"`mdlbench gc --damaged {args.dir}`")
        return EXIT_RUN_FAILED
    return EXIT_OK
