"""Parquet tables: fixed schemas, Hive partitions readable by pandas, and all-or-nothing commits."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mdlbench import tables


def _summary_row(bpb: float) -> dict:
    return {"model": "m", "corpus": "c", "n_docs": 1, "n_bytes": 10, "n_chars": 10, "n_tokens": 3,
            "code_length_bits": bpb * 10, "bits_per_byte": bpb, "bits_per_token": bpb * 10 / 3,
            "bits_per_char": bpb, "bpb_ci_low": float("nan"), "bpb_ci_high": float("nan"),
            "n_roundtrip_failures": 0, "tokens_per_second": 1.0, "wall_seconds": 1.0}


def test_commit_roundtrip_through_pandas_with_schema_version(tmp_path):
    tables.commit(tmp_path, {("summary", "run-a"): tables.to_arrow("summary", [_summary_row(1.5)])})
    tables.commit(tmp_path, {("summary", "run-b"): tables.to_arrow("summary", [_summary_row(2.5)])})
    df = pd.read_parquet(tmp_path / "summary")
    assert sorted(df["run_id"].astype(str)) == ["run-a", "run-b"]
    assert df.set_index(df["run_id"].astype(str)).loc["run-b", "bits_per_byte"] == 2.5
    meta = pq.read_schema(tables.partition_dir(tmp_path, "summary", "run-a") / "part-0.parquet").metadata
    assert meta[b"mdlbench_schema_version"] == tables.SCHEMA_VERSION.encode()
    assert list(tables.read_table(tmp_path, "summary").columns)[:3] == ["model", "corpus", "n_docs"]


def test_schema_mismatch_is_a_bug_not_silent():
    row = _summary_row(1.0)
    row["extra"] = 1
    with pytest.raises(ValueError, match="extra"):
        tables.to_arrow("summary", [row])


def test_unmarked_staging_is_discarded_and_marked_is_rolled_forward(tmp_path):
    # A crash before the COMMITTED marker: nothing becomes visible.
    stage = tmp_path / tables.STAGING_DIR / "crashed" / "summary" / "run_id=x"
    stage.mkdir(parents=True)
    pq.write_table(tables.to_arrow("summary", [_summary_row(1.0)]), stage / "part-0.parquet")
    tables.recover(tmp_path)
    assert not tables.partition_exists(tmp_path, "summary", "x")
    assert not (tmp_path / tables.STAGING_DIR / "crashed").exists()
    # A crash after the marker: the commit is completed by the next writer.
    stage = tmp_path / tables.STAGING_DIR / "marked" / "summary" / "run_id=y"
    stage.mkdir(parents=True)
    pq.write_table(tables.to_arrow("summary", [_summary_row(2.0)]), stage / "part-0.parquet")
    (tmp_path / tables.STAGING_DIR / "marked" / tables.COMMIT_MARKER).write_text("ok")
    tables.recover(tmp_path)
    assert tables.partition_exists(tmp_path, "summary", "y")
    # Staging never shows up in reads, even before recovery.
    assert set(pd.read_parquet(tmp_path / "summary")["run_id"].astype(str)) == {"y"}


def test_empty_table_has_columns(tmp_path):
    df = tables.read_table(tmp_path, "documents")
    assert len(df) == 0 and "code_length_bits" in df.columns and "run_id" in df.columns


@pytest.mark.parametrize("old_first", [True, False])
def test_a_column_added_later_reads_as_null_in_older_partitions(tmp_path, old_first):
    # A partition written before "tokens_per_second" existed, next to a current one; either may be read first.
    old_id, new_id = ("a-old", "b-new") if old_first else ("b-old", "a-new")
    tables.commit(tmp_path, {("summary", new_id): tables.to_arrow("summary", [_summary_row(2.5)])})
    old = tables.to_arrow("summary", [_summary_row(1.5)]).drop_columns(["tokens_per_second"])
    path = tables.partition_dir(tmp_path, "summary", old_id)
    path.mkdir(parents=True)
    pq.write_table(old, path / "part-0.parquet")
    df = tables.read_table(tmp_path, "summary").set_index("run_id")
    assert df.loc[new_id, "tokens_per_second"] == 1.0
    assert pd.isna(df.loc[old_id, "tokens_per_second"]) and df.loc[old_id, "bits_per_byte"] == 1.5


def test_a_version_2_runs_partition_with_string_timestamps_still_reads(tmp_path):
    """Schema 2 wrote runs.started_at/finished_at as ISO strings and kept no integrity record; such a partition must
    read as UTC timestamps, and `ls` must list its run."""
    import pyarrow as pa
    from conftest import run_cli

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "hello there"}\n{"text": "a second document"}\n', "utf-8")
    out = tmp_path / "out"
    assert run_cli("run", "-m", "uniform-bytes", "-c", corpus, "--out", out, "--baselines", "none", "--quiet")[0] == 0
    [run_id] = tables.partitions(out, "runs")
    folder = tables.partition_dir(out, "runs", run_id)
    now = pq.read_table(folder / tables.PART_FILE)
    want = now.column("started_at").to_pylist()[0], now.column("finished_at").to_pylist()[0]
    old = now
    for name, value in zip(("started_at", "finished_at"), want, strict=True):
        old = old.set_column(old.schema.get_field_index(name), name, pa.array([value.isoformat()], pa.string()))
    old = old.replace_schema_metadata({"mdlbench_schema_version": "2", "mdlbench_table": "runs"})
    pq.write_table(old, folder / tables.PART_FILE)
    (folder / ".part-0.sha256").unlink()  # version 2 wrote none
    runs = tables.read_table(out, "runs")
    assert str(runs["started_at"].dtype).startswith("datetime64") and "UTC" in str(runs["started_at"].dtype)
    assert (runs["started_at"].iloc[0].to_pydatetime(), runs["finished_at"].iloc[0].to_pydatetime()) == want
    code, stdout, _ = run_cli("ls", out)
    assert code == 0 and run_id[:8] in stdout and "complete" in stdout
