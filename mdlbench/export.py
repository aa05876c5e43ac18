"""Flat files from a results folder: one CSV or JSON Lines file per table, the Hive partition column included.

Each table in ``tables.TABLES`` that has partitions in the folder becomes ``DEST/<table>.<format>``: the partition
column first (``run_id``, ``baseline_id`` or ``pair_id``), then the registered columns in their order on disk,
partitions in sorted order. Every file is first written under a hidden temporary name and renamed into place only
after all of them were written, so an unreadable partition leaves DEST as it was.

Values: CSV as pyarrow writes it (shortest round-trip floats, ``true``/``false``, a null as an empty unquoted field,
an empty string as ``""``, NaN as ``nan``); JSON Lines with numbers as JSON numbers and null for both null and NaN
(JSON has no NaN), timestamps as ISO 8601 strings.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import pyarrow as pa

from mdlbench import tables
from mdlbench.errors import InputError
from mdlbench.fsio import atomic_path

FORMATS = ("csv", "jsonl")


def tables_in(results_dir: Path) -> list[str]:
    """The registered tables with at least one partition in a results folder, in registry order."""
    return [name for name in tables.TABLES if tables.partitions(results_dir, name)]


def _partitions(results_dir: Path, table: str) -> Iterator[pa.Table]:
    for value in tables.partitions(results_dir, table):
        yield tables.read_partition_keyed(results_dir, table, value)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    return v


def write_jsonl(parts: Iterator[pa.Table], path: Path) -> int:
    """Rows of Arrow tables as one JSON object per line; returns the number of rows."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for part in parts:
            for batch in part.to_batches():
                for row in batch.to_pylist():
                    f.write(json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False,
                                       allow_nan=False) + "\n")
                    n += 1
    return n


def write_csv(parts: Iterator[pa.Table], schema: pa.Schema, path: Path) -> int:
    """Rows of Arrow tables (all with ``schema``) as one CSV file with a header; returns the number of rows."""
    import pyarrow.csv as pacsv

    n = 0
    with pacsv.CSVWriter(str(path), schema) as writer:
        for part in parts:
            writer.write_table(part)
            n += part.num_rows
    return n


def export_tables(results_dir: Path, fmt: str, dest: Path, *, only: Sequence[str] | None = None) -> list[tuple[Path,
                                                                                                             int]]:
    """Write ``dest/<table>.<fmt>`` for every table with partitions in ``results_dir`` (or the ``only`` ones);
    returns (path, rows) per file. Raises InputError, having written nothing, on bad input or an unreadable table."""
    results_dir, dest = Path(results_dir), Path(dest)
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: no such results folder; give the --out folder of `mdlbench run`")
    present = tables_in(results_dir)
    if not present:
        raise InputError(f"{results_dir}: no mdlbench tables in this folder (no <table>/<key>=<value>/part-0.parquet); "
                         "give the folder `mdlbench run --out` wrote")
    if only is not None:
        unknown = [t for t in only if t not in tables.TABLES]
        if unknown:
            raise InputError(f"--tables: unknown table {unknown[0]!r}; tables: {', '.join(tables.TABLES)}")
        missing = [t for t in only if t not in present]
        if missing:
            raise InputError(f"--tables: {missing[0]!r} has no partition in {results_dir}; present: "
                             f"{', '.join(present)}")
        present = [t for t in present if t in only]
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--out {dest}: exists and is not a folder; give a folder for the exported files")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, int]] = []
    try:
        # Every temporary file is renamed onto its final name only when the stack closes without an error.
        with ExitStack() as stack:
            for name in present:
                final = dest / f"{name}.{fmt}"
                tmp = stack.enter_context(atomic_path(final))
                if fmt == "csv":
                    key, schema = tables.TABLES[name]
                    n = write_csv(_partitions(results_dir, name), pa.schema([pa.field(key, pa.string()), *schema]),
                                  tmp)
                else:
                    n = write_jsonl(_partitions(results_dir, name), tmp)
                written.append((final, n))
    except BaseException:
        if created:
            with suppress(OSError):
                dest.rmdir()  # only if still empty: nothing else was ever written there
        raise
    return written
