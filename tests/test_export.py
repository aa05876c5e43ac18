"""`mdlbench export`: every table with partitions becomes one CSV or JSON Lines file that reads back to the same rows.

The results folder is real Parquet written by tables.commit (plus one partition written the way an older schema
wrote it); rows are read back with pyarrow's CSV reader under the registered types and with json.loads.
"""

from __future__ import annotations

import io
import json
import math

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from mdlbench import tables

_ZERO = {pa.string(): "", pa.int64(): 0, pa.float64(): 0.0, pa.bool_(): True}


def _row(table: str, **values):
    _, schema = tables.TABLES[table]
    row = {f.name: _ZERO.get(f.type) for f in schema}
    row.update(values)
    return row


# Values that are easy to lose in a flat file: null vs empty string, null ints, NaN, a float that needs 17 digits,
# an int above 2**53, commas, quotes, a newline and non-ASCII text inside a string.
RUNS = {
    "aaaa000000000001": _row("runs", model="tiny, \"quoted\"", corpus="toy", window=64, n_params=2**60 + 1,
                             ffn_ratio=1 / 3, valid_code=True, errors="line one\nline two", model_revision=None),
    "bbbb000000000002": _row("runs", model="uniform-bytes", corpus="toy", window=None, n_params=0, ffn_ratio=None,
                             valid_code=False, errors="", model_revision="r€v"),
}
DOCS = [("d0", 100, 310.0000000000001, "prose"), ("d1", 7, float("nan"), "")]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    parts = {("runs", k): tables.to_arrow("runs", [v]) for k, v in RUNS.items()}
    parts[("documents", "aaaa000000000001")] = tables.to_arrow("documents", [
        _row("documents", corpus="toy", doc_index=i, doc_id=d, n_bytes=n, code_length_bits=bits, domain=dom)
        for i, (d, n, bits, dom) in enumerate(DOCS)])
    parts[("baselines", "b000000000000001")] = tables.to_arrow("baselines", [
        _row("baselines", corpus="toy", compressor="gzip-9", mode="per_document", n_bytes=107, compressed_bytes=90,
             bits_per_byte=8 * 90 / 107)])
    tables.commit(out, parts)
    # A summary partition written before `n_chars` existed: the column must come back as null, not shift the others.
    _, schema = tables.TABLES["summary"]
    old = pa.schema([f for f in schema if f.name != "n_chars"])
    row = {f.name: v for f, v in zip(schema, [*_row("summary", model="m", n_docs=2, bits_per_byte=2.5).values()],
                                     strict=True) if f.name != "n_chars"}
    folder = tables.partition_dir(out, "summary", "aaaa000000000001")
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old), folder / "part-0.parquet")
    return out


def _expected(table: str) -> list[dict]:
    """The rows as written, each led by its partition column, in partition order."""
    if table == "runs":
        return [{"run_id": k, **v} for k, v in sorted(RUNS.items())]
    if table == "documents":
        return [{"run_id": "aaaa000000000001", **_row("documents", corpus="toy", doc_index=i, doc_id=d, n_bytes=n,
                                                      code_length_bits=bits, domain=dom)}
                for i, (d, n, bits, dom) in enumerate(DOCS)]
    raise KeyError(table)


def _same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or (
        a == b and type(a) is type(b))


def test_csv_round_trip_gives_back_the_same_rows_and_types(results, tmp_path):
    dest = tmp_path / "csv"
    code, out, err = run_cli("export", results, "--format", "csv", "--out", dest)
    assert code == 0, err
    assert sorted(p.name for p in dest.iterdir()) == ["baselines.csv", "documents.csv", "runs.csv", "summary.csv"]
    assert f"wrote {dest / 'runs.csv'} (2 rows)" in out
    for name in ("runs", "documents"):
        key, schema = tables.TABLES[name]
        full = pa.schema([pa.field(key, pa.string()), *schema])
        raw = (dest / f"{name}.csv").read_bytes()
        assert raw.decode("utf-8").splitlines()[0].split(",")[0] == f'"{key}"'  # the partition column, first
        # Only an unquoted empty field is null; "" stays an empty string; nan stays NaN.
        back = pacsv.read_csv(io.BytesIO(raw), convert_options=pacsv.ConvertOptions(
            column_types=full, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False))
        assert back.schema.names == full.names
        got, want = back.to_pylist(), _expected(name)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            bad = {k: (g[k], w[k]) for k in w if not _same(g[k], w[k])}
            assert bad == {}, name
    summary = pacsv.read_csv(dest / "summary.csv").to_pylist()
    assert summary[0]["n_chars"] is None and summary[0]["bits_per_byte"] == 2.5 and summary[0]["n_docs"] == 2


def test_jsonl_round_trip_keeps_json_types(results, tmp_path):
    dest = tmp_path / "jsonl"
    code, _, err = run_cli("export", results, "--format", "jsonl", "--out", dest, "--tables", "runs,documents")
    assert code == 0, err
    assert sorted(p.name for p in dest.iterdir()) == ["documents.jsonl", "runs.jsonl"]
    for name in ("runs", "documents"):
        lines = (dest / f"{name}.jsonl").read_text("utf-8").splitlines()
        got = [json.loads(line) for line in lines]
        want = _expected(name)
        assert [list(g) for g in got] == [list(w) for w in want]  # same columns, same order, partition column first
        for g, w in zip(got, want, strict=True):
            for k, v in w.items():
                if isinstance(v, float) and math.isnan(v):
                    assert g[k] is None  # JSON has no NaN
                else:
                    assert g[k] == v and type(g[k]) is type(v), (name, k)


def test_timestamps_become_iso_strings_in_json_lines(tmp_path):
    import datetime as dt

    from mdlbench.export import write_jsonl

    when = dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
    t = pa.table({"at": pa.array([when, None], pa.timestamp("us", tz="UTC")), "x": [1.5, float("inf")]})
    assert write_jsonl(iter([t]), tmp_path / "t.jsonl") == 2
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert rows == [{"at": "2025-01-02T03:04:05.678901+00:00", "x": 1.5}, {"at": None, "x": None}]


def test_bad_input_is_one_line_and_writes_nothing(results, tmp_path):
    dest = tmp_path / "dest"
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("keep")
    cases = [
        (["export", tmp_path / "nope", "--format", "csv", "--out", dest], "no such results folder"),
        (["export", empty, "--format", "csv", "--out", dest], "no mdlbench tables"),
        (["export", results, "--format", "xml", "--out", dest], "invalid choice: 'xml'"),
        (["export", results, "--format", "csv", "--out", dest, "--tables", "runs,nope"], "unknown table 'nope'"),
        (["export", results, "--format", "csv", "--out", dest, "--tables", "coding"], "'coding' has no partition"),
        (["export", results, "--format", "csv", "--out", a_file], "is not a folder"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(*argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == "", argv
        assert not dest.exists()
    assert a_file.read_text() == "keep"


def test_an_unreadable_partition_leaves_the_destination_as_it_was(results, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(results, broken)
    (tables.partition_dir(broken, "documents", "aaaa000000000001") / "part-0.parquet").write_bytes(b"not parquet")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "runs.csv").write_text("old")
    code, _, err = run_cli("export", broken, "--format", "csv", "--out", dest)
    assert code == 2 and "damaged" in err and "mdlbench verify" in err
    # runs.csv was written before documents failed, but only to a temporary name: the old file is untouched.
    assert [p.name for p in dest.iterdir()] == ["runs.csv"] and (dest / "runs.csv").read_text() == "old"
