"""Parquet tables: fixed schemas, Hive partitions, and an all-or-nothing commit of a run's partitions.

Layout: ``OUT/<table>/<key>=<value>/part-0.parquet``. The partition column (``run_id`` for run tables) lives in
the directory name, so ``pandas.read_parquet(OUT / "documents")`` returns every run ever written there with a
``run_id`` column. Each file carries ``mdlbench_schema_version`` and ``mdlbench_table`` in its metadata.

Commit protocol (why a crash never leaves a half-written run visible): every file of a commit is first written
under ``OUT/.staging/<token>/``; then a ``COMMITTED`` marker is written atomically; then each partition
directory is renamed into place (``os.replace``/``rename`` of a directory is atomic on POSIX). Readers ignore
names starting with "." (pyarrow's default), so staged files are invisible. ``recover(OUT)`` rolls a marked
commit forward and deletes an unmarked one; every writer calls it first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from mdlbench.errors import InputError, with_path
from mdlbench.fsio import file_lock, write_bytes_atomic
from mdlbench.signals import deferred

if TYPE_CHECKING:
    import pandas as pd

# 2: prequential gained checkpoint_param_code/_bits, checkpoint_n_params. 3: runs.pre_tokenizer; model and corpus
# columns in every table keyed by a run; runs.started_at/finished_at as UTC timestamps (strings before); integrity
# records beside every file; context_curve, span_diff; prequential's learner shape (n_layer, d_model, d_ff,
# ffn_ratio, n_params); the FFN lens tables (component_codes, ffn_activity, ffn_pruning). 4: prequential.finished_at.
SCHEMA_VERSION = "4"
STAGING_DIR = ".staging"
COMMIT_MARKER = "COMMITTED"

_f64, _i64, _str, _bool = pa.float64(), pa.int64(), pa.string(), pa.bool_()
_ts = pa.timestamp("s", tz="UTC")
RUN_NAMES = [("model", _str), ("corpus", _str)]  # first in every table keyed by a run: readable without a join

# Table name -> (partition key, schema of the columns stored in the files). The partition key is not stored
# in the files; Hive partitioning adds it back on read. Column order here is the order on disk.
TABLES: dict[str, tuple[str, pa.Schema]] = {
    "runs": ("run_id", pa.schema([
        ("model", _str), ("model_revision", _str), ("model_sha256", _str), ("model_format", _str),
        ("tokenizer_sha256", _str), ("pre_tokenizer", _str), ("vocab_size", _i64),
        ("corpus", _str), ("corpus_sha256", _str), ("corpus_source", _str),
        ("window", _i64), ("stride", _i64), ("first_token", _str), ("end", _str), ("protocol", _str),
        ("prefix_token_id", _i64), ("eos_token_id", _i64),
        ("dtype", _str), ("device", _str), ("batch_size", _i64), ("n_params", _i64),
        ("params_embedding", _i64), ("params_attention", _i64), ("params_ffn", _i64), ("params_norm", _i64),
        ("params_lm_head", _i64), ("params_other", _i64), ("n_layers", _i64), ("d_model", _i64), ("d_ff", _i64),
        ("n_heads", _i64), ("context_length", _i64), ("ffn_ratio", _f64), ("ffn_param_share", _f64),
        ("valid_code", _bool), ("errors", _str), ("bootstrap_samples", _i64), ("seed", _i64),
        ("started_at", _ts), ("finished_at", _ts), ("mdlbench_version", _str), ("scoring_code_version", _str),
        ("torch_version", _str), ("transformers_version", _str), ("config_json", _str),
    ])),
    "documents": ("run_id", pa.schema([
        *RUN_NAMES, ("doc_index", _i64), ("doc_id", _str), ("domain", _str),
        ("n_bytes", _i64), ("n_chars", _i64), ("n_tokens", _i64), ("code_length_bits", _f64),
        ("first_token_bits", _f64), ("end_bits", _f64), ("tokenizer_roundtrip_ok", _bool),
        ("n_replaced_bytes", _i64),
    ])),
    "summary": ("run_id", pa.schema([
        ("model", _str), ("corpus", _str), ("n_docs", _i64), ("n_bytes", _i64), ("n_chars", _i64),
        ("n_tokens", _i64), ("code_length_bits", _f64), ("bits_per_byte", _f64), ("bits_per_token", _f64),
        ("bits_per_char", _f64), ("bpb_ci_low", _f64), ("bpb_ci_high", _f64), ("n_roundtrip_failures", _i64),
        ("tokens_per_second", _f64), ("wall_seconds", _f64),
    ])),
    "tokens": ("run_id", pa.schema([
        *RUN_NAMES, ("doc_index", _i64), ("doc_id", _str), ("token_index", _i64), ("token_id", _i64),
        ("byte_start", _i64), ("byte_end", _i64), ("context_tokens", _i64), ("code_length_bits", _f64),
    ])),
    # Classical compressors on the exact bytes a corpus's runs scored (baselines/run.py); one row per
    # (corpus sha256, compressor, mode, library version), shared by every run on those bytes.
    "baselines": ("baseline_id", pa.schema([
        ("corpus", _str), ("corpus_sha256", _str), ("compressor", _str), ("library", _str),
        ("library_version", _str), ("mode", _str), ("n_docs", _i64), ("n_bytes", _i64),
        ("compressed_bytes", _i64), ("bits_per_byte", _f64), ("compress_seconds", _f64),
        ("decompress_seconds", _f64), ("roundtrip_verified", _bool), ("setting", _str),
        ("n_separator_bytes", _i64), ("header_bytes", _i64), ("model_bytes", _i64), ("roundtrip_error", _str),
    ])),
    # Two-part codes of a run (mdl/two_part.py): L(model) + L(tokenizer) + L(data | model).
    "two_part": ("run_id", pa.schema([
        *RUN_NAMES,
        ("param_code", _str),  # naive-16, naive-32, checkpoint-zstd, gguf-file, quantized-4, quantized-best...
        ("model_bits", _f64),  # L(model): the parameters under this code
        ("tokenizer_bits", _f64),  # L(tokenizer); 0 for gguf-file when the GGUF already holds the vocab
        ("data_bits", _f64),  # L(data | model), re-scored under the quantized model for quantized-k
        ("total_bits", _f64),  # model_bits + tokenizer_bits + data_bits
        ("n_bytes", _i64), ("data_bits_per_byte", _f64), ("total_bits_per_byte", _f64),
        ("adjusted_compression_rate", _f64),  # DeepMind's, a fraction: (data_bits + model_bits) / (8 n_bytes)
        ("n_params", _i64),  # unique parameter elements
        ("break_even_bytes_vs_uniform", _f64),  # null when the model does not beat 8 bits/byte
        ("detail", _str),  # codec, level, versions, dtypes: how model_bits was obtained
    ])),
    "two_part_vs_baseline": ("run_id", pa.schema([
        *RUN_NAMES,
        ("param_code", _str),
        ("baseline", _str),  # a compressor name with its level, e.g. "gzip-9", or "uniform-bytes"
        ("baseline_mode", _str),  # "per_document" or "concatenated", as in the baselines table
        ("baseline_bits_per_byte", _f64),
        ("break_even_bytes", _f64),  # null when the model is not better than the baseline per byte
        ("bits_saved_per_param", _f64),  # (baseline bits - data bits) / n_params; negative if worse
    ])),
    # Prequential runs (prequential/results.py): one row per block (blockwise) or batch (online) per seed...
    "prequential_blocks": ("run_id", pa.schema([
        *RUN_NAMES, ("estimator", _str), ("seed", _i64), ("block_index", _i64), ("token_start", _i64),
        ("token_end", _i64),
        ("n_bytes", _i64), ("coder", _str), ("code_length_bits", _f64), ("train_tokens", _i64),
        ("train_seconds", _f64),
    ])),
    # ...and one row per seed.
    "prequential": ("run_id", pa.schema([
        *RUN_NAMES, ("estimator", _str), ("mode", _str), ("seed", _i64), ("n_documents", _i64),
        ("n_tokens", _i64), ("n_bytes", _i64), ("vocab_size", _i64),
        ("prequential_bits", _f64), ("bits_per_byte", _f64), ("uniform_bits", _f64),
        ("final_model_data_bits", _f64), ("model_information_bits", _f64), ("program_bits", _i64),
        # "" when the model starts from its seeded init; else "checkpoint:<path> sha256:<hex>": the code length is
        # then conditional on that checkpoint, whose bits are not charged in prequential_bits...
        ("conditional_on", _str),
        # ...but shown beside it (null without a checkpoint): its two-part parameter cost under
        # checkpoint_param_code, so prequential_bits + checkpoint_param_bits is an unconditional code length.
        ("checkpoint_param_code", _str), ("checkpoint_param_bits", _f64), ("checkpoint_n_params", _i64),
        ("wall_seconds", _f64), ("config_json", _str),
        # The learner's shape (mdl.params.architecture, count_parameters of the built model); null in older rows.
        ("n_layer", _i64), ("d_model", _i64), ("d_ff", _i64), ("ffn_ratio", _f64), ("n_params", _i64),
        ("finished_at", _ts),  # when this seed's estimate finished (UTC); null in older rows
    ])),
    # Real range coding of a run's first documents, in one lockstep archive (coding/coder.py,
    # `run --verify-coding N|all`).
    "coding": ("run_id", pa.schema([
        *RUN_NAMES, ("doc_index", _i64), ("doc_id", _str),
        ("method", _str),  # model | raw-bytes | uniform-bytes
        ("n_tokens", _i64),  # text tokens (BOS/EOS not counted); bytes for the raw methods
        ("ideal_bits", _f64),  # Σ −log2 p from the rows the coder used (includes EOS under end=eos)
        ("coded_bits", _i64),  # 8 × this document's payload bytes
        ("overhead_bits", _f64),  # coded − ideal
        # The archive's bytes that are not payload (fixed part, header, index), split over its documents so that
        # Σ header_bytes + Σ coded_bits / 8 is the archive's size exactly (the first documents take the remainder).
        ("header_bytes", _i64),
        ("roundtrip_ok", _bool),  # decompress(compress(bytes)) == bytes
        # This document's share of the coding time: every lockstep step's wall time split equally over its rows.
        ("encode_seconds", _f64), ("decode_seconds", _f64),
    ])),
    # Bits against context length (mdlbench.context_curve): one row per (domain, non-empty bucket); domain "" = all.
    "context_curve": ("run_id", pa.schema([
        *RUN_NAMES, ("domain", _str), ("context_bucket_start", _i64), ("context_bucket_end", _i64), ("n_tokens", _i64),
        ("n_bytes", _i64), ("code_length_bits", _f64), ("bits_per_token", _f64), ("bits_per_byte", _f64),
    ])),
    # Byte-aligned attribution between two runs (mdlbench.spans, `compare --spans`). Partition: the ordered pair
    # "<run_id_a>-<run_id_b>", so re-running a comparison replaces exactly its own rows.
    "span_diff": ("pair_id", pa.schema([
        ("run_id_a", _str), ("run_id_b", _str), ("doc_id", _str), ("domain", _str), ("span_start", _i64),
        ("span_end", _i64), ("text", _str), ("span_class", _str), ("bits_a", _f64), ("bits_b", _f64),
        ("delta_bits", _f64),
    ])),
    # ---- the FFN lens (mdlbench.lens; README "Model anatomy"). Formulas: mdlbench/lens/rows.py.
    # One row per component × layer (-1 = all layers) × bits; bits = 0 is the component as stored (reference).
    "component_codes": ("run_id", pa.schema([
        *RUN_NAMES, ("component", _str), ("layer", _i64), ("bits", _i64), ("n_params", _i64),
        ("n_quantized_params", _i64),
        ("param_bits", _f64), ("param_bits_reference", _f64), ("reference_code", _str),
        ("data_bits", _f64), ("delta_data_bits", _f64), ("net_bits_saved", _f64),
        ("marginal_data_bits_per_param_bit", _f64), ("packed_bytes", _i64), ("side_bytes", _i64),
        ("wall_seconds", _f64), ("detail", _str),
    ])),
    # One row per layer × domain ("" = all documents), over the coded positions of the base model's passes.
    "ffn_activity": ("run_id", pa.schema([
        *RUN_NAMES, ("layer", _i64), ("domain", _str), ("n_positions", _i64), ("d_ff", _i64),
        ("activation", _str),
        ("active_rule", _str), ("activity_threshold", _f64), ("mean_active_fraction", _f64),
        ("dead_neurons", _i64), ("neurons_active_under_1pct", _i64), ("p10", _f64), ("p50", _f64), ("p90", _f64),
        ("top10pct_mass_share", _f64), ("n_active", _i64), ("neuron_active_counts", pa.list_(_i64)),
        ("neuron_mean_abs_h", pa.list_(_f64)),
    ])),
    # One row per criterion × fraction × layer (-1 = every layer pruned); data bits held out (cross-fitted).
    "ffn_pruning": ("run_id", pa.schema([
        *RUN_NAMES, ("criterion", _str), ("fraction", _f64), ("layer", _i64), ("seed", _i64),
        ("neurons_removed", _i64),
        ("params_removed", _i64), ("storage_bits_per_param", _f64), ("param_bits_saved", _f64),
        ("data_bits", _f64), ("base_data_bits", _f64), ("delta_data_bits", _f64), ("net_bits_saved", _f64),
        ("data_bits_fold0", _f64), ("data_bits_fold1", _f64), ("n_docs_fold0", _i64), ("n_docs_fold1", _i64),
        ("wall_seconds", _f64),
    ])),
}


def to_arrow(table: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) -> an Arrow table with the fixed schema; a missing or extra column is a bug, so it raises."""
    _, schema = TABLES[table]
    names = set(schema.names)
    for row in rows[:1]:
        if set(row) != names:
            raise ValueError(f"{table}: columns {sorted(set(row) ^ names)} differ from the schema")
    arrow = pa.Table.from_pylist(list(rows), schema=schema)
    return arrow.replace_schema_metadata({"mdlbench_schema_version": SCHEMA_VERSION, "mdlbench_table": table})


def columns_to_arrow(table: str, columns: Mapping[str, Any]) -> pa.Table:
    """Columns (name -> array-like) -> an Arrow table with the fixed schema: the fast path for per-token rows."""
    _, schema = TABLES[table]
    if set(columns) != set(schema.names):
        raise ValueError(f"{table}: columns {sorted(set(columns) ^ set(schema.names))} differ from the schema")
    arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
    arrow = pa.Table.from_arrays(arrays, schema=schema)
    return arrow.replace_schema_metadata({"mdlbench_schema_version": SCHEMA_VERSION, "mdlbench_table": table})


def partition_dir(out_dir: Path, table: str, value: str) -> Path:
    key, _ = TABLES[table]
    return Path(out_dir) / table / f"{key}={value}"


PART_FILE = "part-0.parquet"
# Beside every committed file: "<sha256> <size in bytes>" of it. Readers skip names starting with "." (pyarrow,
# pandas) or not ending in .parquet (DuckDB and polars globs), so the record is invisible to them.
INTEGRITY_FILE = ".part-0.sha256"
PartitionStatus = Literal["ok", "missing", "damaged", "unverified"]


def partition_exists(out_dir: Path, table: str, value: str) -> bool:
    """A committed partition of this table and key is in the folder and matches its recorded size."""
    return partition_status(out_dir, table, value) in ("ok", "unverified")


def partition_status(out_dir: Path, table: str, value: str, *, verify_hash: bool = False) -> PartitionStatus:
    """"missing" (no file), "damaged" (size, or with ``verify_hash`` sha256, differs from the record made at commit;
    or the record is unreadable), "unverified" (written before records existed: schema version < 3), or "ok"."""
    folder = partition_dir(out_dir, table, value)
    part = folder / PART_FILE
    if not part.is_file():
        return "missing"
    try:
        record = (folder / INTEGRITY_FILE).read_text("ascii").split()
    except FileNotFoundError:
        return "unverified"
    except (OSError, UnicodeDecodeError):
        return "damaged"
    try:
        size = part.stat().st_size
    except FileNotFoundError:  # replaced by another process's commit between the two looks: not there right now
        return "missing"
    if len(record) != 2 or not record[1].isdigit() or size != int(record[1]):
        return "damaged"
    if verify_hash and _sha256(part) != record[0]:
        return "damaged"
    return "ok"


def partitions(out_dir: Path, table: str) -> list[str]:
    """Key values of the table's partitions in the folder, sorted (whatever their state)."""
    key, _ = TABLES[table]
    folder = Path(out_dir) / table
    prefix = f"{key}="
    return sorted(p.name[len(prefix):] for p in folder.glob(f"{prefix}*") if p.is_dir()) if folder.is_dir() else []


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


COMMIT_LOCK = Path(".locks") / "commit.lock"


def commit(out_dir: Path, partitions: Mapping[tuple[str, str], pa.Table]) -> None:
    """Atomically publish {(table, partition value): arrow table}; existing partitions with the same key are replaced.

    Commits into one folder are serialized by a lock, so recovery never mistakes another writer's staging for
    a crashed one.
    """
    out_dir = Path(out_dir)
    with file_lock(out_dir / COMMIT_LOCK):
        _recover_locked(out_dir)
        _commit_locked(out_dir, partitions)


def _commit_locked(out_dir: Path, partitions: Mapping[tuple[str, str], pa.Table]) -> None:
    stage = out_dir / STAGING_DIR / uuid.uuid4().hex
    stage.mkdir(parents=True)
    record = []
    for (table, value), arrow in partitions.items():
        target = stage / table / partition_dir(out_dir, table, value).name
        target.mkdir(parents=True)
        try:
            pq.write_table(arrow, target / PART_FILE)
            digest, size = _sha256(target / PART_FILE), (target / PART_FILE).stat().st_size
            (target / INTEGRITY_FILE).write_text(f"{digest} {size}\n", "ascii")
        except OSError as exc:
            raise with_path(exc, Path(out_dir) / table) from exc
        record.append({"table": table, "partition": value, "sha256": digest, "n_bytes": size})
    write_bytes_atomic(stage / COMMIT_MARKER, json.dumps(record, sort_keys=True).encode())
    with deferred():  # the renames run to the end once begun: readers never see half a commit
        _roll_forward(out_dir, stage)


def recover(out_dir: Path) -> None:
    """Finish commits that were marked, discard ones that were not (a crash mid-write)."""
    if not (Path(out_dir) / STAGING_DIR).is_dir():
        return
    with file_lock(Path(out_dir) / COMMIT_LOCK):
        _recover_locked(Path(out_dir))


def _recover_locked(out_dir: Path) -> None:
    staging = Path(out_dir) / STAGING_DIR
    if not staging.is_dir():
        return
    for stage in sorted(staging.iterdir()):
        if (stage / COMMIT_MARKER).is_file():
            with deferred():
                _roll_forward(Path(out_dir), stage)
        else:
            shutil.rmtree(stage, ignore_errors=True)


def _roll_forward(out_dir: Path, stage: Path) -> None:
    for table_dir in sorted(p for p in stage.iterdir() if p.is_dir()):
        for part in sorted(table_dir.iterdir()):
            final = out_dir / table_dir.name / part.name
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                # Replace: move the old partition aside first, so the final name never points at a mix.
                trash = out_dir / STAGING_DIR / f"trash-{uuid.uuid4().hex}"
                os.replace(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(part, final)
    shutil.rmtree(stage, ignore_errors=True)


def _empty_frame(table: str) -> pd.DataFrame:
    import pandas as pd

    key, schema = TABLES[table]
    return pd.DataFrame({key: pd.Series(dtype="string"),
                         **{n: pd.Series(dtype=t.to_pandas_dtype()) for n, t in zip(schema.names, schema.types,
                                                                                  strict=True)}})


def read_partition_arrow(out_dir: Path, table: str, value: str) -> pa.Table | None:
    """One partition under the registered schema (a column added later reads as null in an older file), or None
    when it is missing or damaged (see partition_status)."""
    if partition_status(out_dir, table, value) not in ("ok", "unverified"):
        return None
    _, schema = TABLES[table]
    try:
        raw = pq.read_table(partition_dir(out_dir, table, value) / PART_FILE)
    except (OSError, pa.ArrowException):
        return None
    columns = []
    for f in schema:
        if f.name in raw.column_names:
            try:
                columns.append(raw.column(f.name).cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
        else:
            columns.append(pa.nulls(raw.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def read_partition(out_dir: Path, table: str, value: str) -> pd.DataFrame:
    """One partition as a DataFrame with its key column (empty when it is missing or damaged)."""
    arrow = read_partition_arrow(out_dir, table, value)
    if arrow is None:
        return _empty_frame(table)
    key, _ = TABLES[table]
    df = arrow.to_pandas()
    df.insert(0, key, pd_string([value] * len(df)))
    return df


def pd_string(values: list[str]) -> Any:
    import pandas as pd

    return pd.Series(values, dtype="string")


def read_table_checked(out_dir: Path, table: str) -> tuple[pd.DataFrame, list[str]]:
    """All readable partitions of a table as one DataFrame, and the key values of the damaged ones left out
    (size or content not as committed, or not readable as Parquet)."""
    key, _ = TABLES[table]
    parts, damaged = [], []
    for value in partitions(out_dir, table):
        arrow = read_partition_arrow(out_dir, table, value)
        if arrow is None:
            if partition_status(out_dir, table, value) != "missing":
                damaged.append(value)
            continue
        parts.append(arrow.append_column(key, pa.array([value] * arrow.num_rows, pa.string())))
    if not parts:
        return _empty_frame(table), damaged
    df = pa.concat_tables(parts).to_pandas()
    df[key] = df[key].astype("string")
    return df, damaged


def read_table(out_dir: Path, table: str) -> pd.DataFrame:
    """All readable partitions of a table as one DataFrame (empty, with the schema's columns, if there are none).

    Partitions are read one by one, so a damaged one (size or content not as committed) is left out with a
    warning on stderr instead of hiding every other run: `mdlbench verify DIR` lists them, `mdlbench gc --damaged`
    removes them, and rerunning a damaged run recomputes it.
    """
    df, damaged = read_table_checked(out_dir, table)
    if damaged:
        print(f"warning: {len(damaged)} damaged partition(s) of {Path(out_dir) / table} left out "
              f"({', '.join(damaged[:3])}{', ...' if len(damaged) > 3 else ''}); see `mdlbench verify {out_dir}`",
              file=sys.stderr)
    return df


def read_partition_keyed(out_dir: Path, table: str, value: str) -> pa.Table:
    """One partition as Arrow with its partition column first (for exports); InputError when it is damaged."""
    key, schema = TABLES[table]
    arrow = read_partition_arrow(out_dir, table, value)
    if arrow is None:
        folder = partition_dir(out_dir, table, value)
        raise InputError(f"{folder}: damaged (not as committed, or not readable); see `mdlbench verify {out_dir}` "
                         f"and `mdlbench gc --damaged {out_dir}`")
    return pa.Table.from_arrays([pa.array([value] * arrow.num_rows, pa.string()), *arrow.columns],
                                schema=pa.schema([pa.field(key, pa.string()), *schema]))
