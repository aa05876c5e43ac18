"""`mdlbench gc DIR`: remove what no finished or running run needs (unmarked staging, progress of dead runs,
stray temporary files); with `--damaged`, also every committed partition whose file is not what was committed."""

from __future__ import annotations

import argparse
import shutil

from mdlbench import tables
from mdlbench.cli.args import add_results_dir, results_folder
from mdlbench.cli.ls import require_dir
from mdlbench.fsio import file_lock
from mdlbench.run.integrity import damaged_partitions, remove_partition
from mdlbench.run.state import is_busy, runs_in_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_results_dir(parser)
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    parser.add_argument("--damaged", action="store_true", help="also remove damaged partitions (sha256 or size not "
                        "as committed; see `mdlbench verify`): a rerun then recomputes those runs")


def main(args: argparse.Namespace) -> int:
    folder = results_folder(args)
    require_dir(folder)
    removed = []
    if not args.dry_run:
        tables.recover(folder)  # completes marked commits, deletes unmarked staging
    for state, _ in runs_in_progress(folder):
        if is_busy(state):
            continue
        removed.append(state.dir)
        if not args.dry_run:
            with file_lock(state.final_lock_path()):
                shutil.rmtree(state.dir, ignore_errors=True)
    for tmp in folder.rglob(".*.tmp"):
        removed.append(tmp)
        if not args.dry_run:
            tmp.unlink(missing_ok=True)
    if args.damaged:
        for table, value in damaged_partitions(folder, verify_hash=True):
            removed.append(remove_partition(folder, table, value) if not args.dry_run else
                           tables.partition_dir(folder, table, value))
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} leftover(s)" + (" and damaged partition(s)" if args.damaged else ""))
    return 0
