"""Damaged results: every committed file is recorded (sha256 and size) beside it (tables.py), and checked here.

A size check is a stat, done whenever a run is considered complete; ``verify_hash`` reads every file. A run whose
core partition is damaged is not complete: a rerun recomputes it. ``gc --damaged`` removes damaged partitions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mdlbench import tables

RUN_KEY = "run_id"


def damaged_partitions(out_dir: Path, *, verify_hash: bool = False) -> list[tuple[str, str]]:
    """(table, partition value) of every partition whose file is not what was committed."""
    found = []
    for table in tables.TABLES:
        for value in tables.partitions(out_dir, table):
            if tables.partition_status(out_dir, table, value, verify_hash=verify_hash) == "damaged":
                found.append((table, value))
    return found


def unverified_partitions(out_dir: Path) -> list[tuple[str, str]]:
    """Partitions written before integrity records existed (schema version < 3): readable, not checkable."""
    return [(t, v) for t in tables.TABLES for v in tables.partitions(out_dir, t)
            if tables.partition_status(out_dir, t, v) == "unverified"]


def run_health(out_dir: Path, *, verify_hash: bool = False) -> dict[str, list[str]]:
    """run id -> the tables of its damaged partitions (only runs with damage are listed)."""
    health: dict[str, list[str]] = {}
    for table, value in damaged_partitions(out_dir, verify_hash=verify_hash):
        if tables.TABLES[table][0] == RUN_KEY:
            health.setdefault(value, []).append(table)
    return health


def remove_partition(out_dir: Path, table: str, value: str) -> Path:
    folder = tables.partition_dir(out_dir, table, value)
    shutil.rmtree(folder, ignore_errors=True)
    return folder
