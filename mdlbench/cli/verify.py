"""`mdlbench verify DIR`: check every committed file of a results folder against the sha256 and size recorded when
it was committed. Exit 0 when all match; 3 when something is damaged (each one listed, with the fix)."""

from __future__ import annotations

import argparse

from mdlbench import tables
from mdlbench.cli.args import add_results_dir, results_folder
from mdlbench.cli.ls import require_dir
from mdlbench.errors import EXIT_OK, EXIT_RUN_FAILED
from mdlbench.run.integrity import damaged_partitions, unverified_partitions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_results_dir(parser)


def main(args: argparse.Namespace) -> int:
    folder = results_folder(args)
    require_dir(folder)
    damaged = damaged_partitions(folder, verify_hash=True)
    unverified = unverified_partitions(folder)
    total = sum(len(tables.partitions(folder, t)) for t in tables.TABLES)
    for table, value in damaged:
        print(f"damaged: {tables.partition_dir(folder, table, value)}")
    if unverified:
        print(f"{len(unverified)} partition(s) written before integrity records existed (schema version < 3): "
              "readable, not checkable")
    print(f"{total - len(damaged)} of {total} partitions intact")
    if damaged:
        print(f"fix: rerun the runs (damaged runs are recomputed), or remove the damaged partitions with "
              f"`mdlbench gc --damaged {folder}`")
        return EXIT_RUN_FAILED
    return EXIT_OK
