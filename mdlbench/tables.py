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

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mdlbench.errors import InputError
from mdlbench.locks import file_lock

SCHEMA_VERSION = "3"  # 2: prequential gained checkpoint_param_code/_bits, checkpoint_n_params; 3: prequential
# gained n_layer, d_model, d_ff, ffn_ratio, n_params; the lens tables (component_codes, ffn_activity, ffn_pruning)
STAGING_DIR = ".staging"
COMMIT_MARKER = "COMMITTED"

_f64, _i64, _str, _bool = pa.float64(), pa.int64(), pa.string(), pa.bool_()

# Table name -> (partition key, schema of the columns stored in the files). The partition key is not stored
# in the files; Hive partitioning adds it back on read. Column order here is the order on disk.
TABLES: dict[str, tuple[str, pa.Schema]] = {
    "runs": ("run_id", pa.schema([
        ("model", _str), ("model_revision", _str), ("model_sha256", _str), ("model_format", _str),
        ("tokenizer_sha256", _str), ("vocab_size", _i64),
        ("corpus", _str), ("corpus_sha256", _str), ("corpus_source", _str),
        ("window", _i64), ("stride", _i64), ("first_token", _str), ("end", _str), ("protocol", _str),
        ("prefix_token_id", _i64), ("eos_token_id", _i64),
        ("dtype", _str), ("device", _str), ("batch_size", _i64), ("n_params", _i64),
        ("params_embedding", _i64), ("params_attention", _i64), ("params_ffn", _i64), ("params_norm", _i64),
        ("params_lm_head", _i64), ("params_other", _i64), ("n_layers", _i64), ("d_model", _i64), ("d_ff", _i64),
        ("n_heads", _i64), ("context_length", _i64), ("ffn_ratio", _f64), ("ffn_param_share", _f64),
        ("valid_code", _bool), ("errors", _str), ("bootstrap_samples", _i64), ("seed", _i64),
        ("started_at", _str), ("finished_at", _str), ("mdlbench_version", _str), ("scoring_code_version", _str),
        ("torch_version", _str), ("transformers_version", _str), ("config_json", _str),
    ])),
    "documents": ("run_id", pa.schema([
        ("corpus", _str), ("doc_index", _i64), ("doc_id", _str), ("domain", _str),
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
        ("doc_index", _i64), ("doc_id", _str), ("token_index", _i64), ("token_id", _i64),
        ("byte_start", _i64), ("byte_end", _i64), ("context_tokens", _i64), ("code_length_bits", _f64),
    ])),
    # ---- the FFN lens (mdlbench.lens; README "Model anatomy"). Formulas: mdlbench/lens/rows.py.
    # One row per component × layer (-1 = all layers) × bits; bits = 0 is the component as stored (reference).
    "component_codes": ("run_id", pa.schema([
        ("component", _str), ("layer", _i64), ("bits", _i64), ("n_params", _i64), ("n_quantized_params", _i64),
        ("param_bits", _f64), ("param_bits_reference", _f64), ("reference_code", _str),
        ("data_bits", _f64), ("delta_data_bits", _f64), ("net_bits_saved", _f64),
        ("marginal_data_bits_per_param_bit", _f64), ("packed_bytes", _i64), ("side_bytes", _i64),
        ("wall_seconds", _f64), ("detail", _str),
    ])),
    # One row per layer × domain ("" = all documents), over the coded positions of the base model's passes.
    "ffn_activity": ("run_id", pa.schema([
        ("layer", _i64), ("domain", _str), ("n_positions", _i64), ("d_ff", _i64), ("activation", _str),
        ("active_rule", _str), ("activity_threshold", _f64), ("mean_active_fraction", _f64),
        ("dead_neurons", _i64), ("neurons_active_under_1pct", _i64), ("p10", _f64), ("p50", _f64), ("p90", _f64),
        ("top10pct_mass_share", _f64), ("n_active", _i64), ("neuron_active_counts", pa.list_(_i64)),
        ("neuron_mean_abs_h", pa.list_(_f64)),
    ])),
    # One row per criterion × fraction × layer (-1 = every layer pruned); data bits held out (cross-fitted).
    "ffn_pruning": ("run_id", pa.schema([
        ("criterion", _str), ("fraction", _f64), ("layer", _i64), ("seed", _i64), ("neurons_removed", _i64),
        ("params_removed", _i64), ("storage_bits_per_param", _f64), ("param_bits_saved", _f64),
        ("data_bits", _f64), ("base_data_bits", _f64), ("delta_data_bits", _f64), ("net_bits_saved", _f64),
        ("data_bits_fold0", _f64), ("data_bits_fold1", _f64), ("n_docs_fold0", _i64), ("n_docs_fold1", _i64),
        ("wall_seconds", _f64),
    ])),
}


# Tables defined by feature modules, registered when the module is imported (see register_table).
FEATURE_TABLES = {"baselines": "mdlbench.baselines.run", "two_part": "mdlbench.mdl.two_part",
                  "two_part_vs_baseline": "mdlbench.mdl.two_part", "prequential": "mdlbench.prequential",
                  "prequential_blocks": "mdlbench.prequential", "coding": "mdlbench.coding"}


def table_spec(table: str) -> tuple[str, pa.Schema]:
    """(partition key, schema) of a table, importing the feature module that defines it if needed."""
    if table not in TABLES and table in FEATURE_TABLES:
        import importlib

        importlib.import_module(FEATURE_TABLES[table])
    return TABLES[table]


def to_arrow(table: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) -> an Arrow table with the fixed schema; a missing or extra column is a bug, so it raises."""
    _, schema = table_spec(table)
    names = set(schema.names)
    for row in rows[:1]:
        if set(row) != names:
            raise ValueError(f"{table}: columns {sorted(set(row) ^ names)} differ from the schema")
    arrow = pa.Table.from_pylist(list(rows), schema=schema)
    return arrow.replace_schema_metadata({"mdlbench_schema_version": SCHEMA_VERSION, "mdlbench_table": table})


def columns_to_arrow(table: str, columns: Mapping[str, Any]) -> pa.Table:
    """Columns (name -> array-like) -> an Arrow table with the fixed schema: the fast path for per-token rows."""
    _, schema = table_spec(table)
    if set(columns) != set(schema.names):
        raise ValueError(f"{table}: columns {sorted(set(columns) ^ set(schema.names))} differ from the schema")
    arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
    arrow = pa.Table.from_arrays(arrays, schema=schema)
    return arrow.replace_schema_metadata({"mdlbench_schema_version": SCHEMA_VERSION, "mdlbench_table": table})


def partition_dir(out_dir: Path, table: str, value: str) -> Path:
    key, _ = table_spec(table)
    return Path(out_dir) / table / f"{key}={value}"


def partition_exists(out_dir: Path, table: str, value: str) -> bool:
    return (partition_dir(out_dir, table, value) / "part-0.parquet").is_file()


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
    for (table, value), arrow in partitions.items():
        target = stage / table / partition_dir(out_dir, table, value).name
        target.mkdir(parents=True)
        pq.write_table(arrow, target / "part-0.parquet")
    _write_atomic(stage / COMMIT_MARKER, b"ok\n")
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


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_table(out_dir: Path, table: str) -> pd.DataFrame:
    """All partitions of a table as one DataFrame (empty, with the schema's columns, if there are none)."""
    key, schema = table_spec(table)
    path = Path(out_dir) / table
    if not any(path.glob(f"{key}=*/part-0.parquet")):
        return pd.DataFrame({key: pd.Series(dtype="string"),
                             **{n: pd.Series(dtype=t.to_pandas_dtype()) for n, t in zip(schema.names,
                                                                                       schema.types, strict=False)}})
    # Read under the registered schema, not the first file's: a column added later (e.g. the prequential
    # checkpoint cost) then reads as null in partitions written before it, whichever file comes first.
    full = pa.schema([*schema, pa.field(key, pa.string())])
    try:
        df = pd.read_parquet(path, schema=full)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable mdlbench Parquet table ({exc}); "
                         f"run `mdlbench gc {out_dir}` or remove the damaged partition") from exc
    df[key] = df[key].astype("string")
    return df


def register_table(name: str, partition_key: str, schema: pa.Schema) -> None:
    """Add a table defined by a feature module (baselines, two_part, prequential...) to the registry."""
    existing = TABLES.get(name)
    if existing is not None and existing != (partition_key, schema):
        raise ValueError(f"table {name!r} is already registered with a different schema")
    TABLES[name] = (partition_key, schema)
