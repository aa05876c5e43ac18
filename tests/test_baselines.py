"""Classical compressor baselines: pinned container sizes, hand-derived accounting, parity with the libraries
called directly, verified round trips, honest dictionaries, and reuse of stored rows."""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import gzip
import io
import json
import lzma
import math
import os
import random
import shutil
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import brotli
import pyppmd
import pytest
import zstandard

from mdlbench.baselines.compressors import COMPRESSORS, compressed_size, decode_frames, frames_sha256, get_compressor
from mdlbench.baselines.run import (
    MODES,
    SCHEMA,
    SEPARATOR,
    baseline_id,
    collect_training_samples,
    dictionary_size_bytes,
    ensure_baselines,
    fold_of,
    header_once_total,
    measure_compressor,
    train_fold_dictionaries,
)
from mdlbench.cli import baselines as cli
from mdlbench.codelength import bits_per_byte, bytes_to_bits
from mdlbench.errors import InputError
from mdlbench.tables import read_table

PLAIN = [n for n, s in COMPRESSORS.items() if not s.uses_dictionary]
PPMD_MEM = 256 << 20


def sample_docs() -> list[bytes]:
    lines = files("mdlbench").joinpath("data/sample.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line)["text"].encode("utf-8") for line in lines if line.strip()]


# 17 of the sample's Shakespeare documents (~60 kB; two of them 11 and 8 bytes) and an empty one. Related documents:
# cross-document context is what makes "concatenated" cheaper. On unrelated ones (a mix of the sample's domains)
# zstd-3's per-document frames, whose parameters are fitted to each known size, tied its own stream.
TEXT_DOCS = sample_docs()[:14] + sample_docs()[24:27] + [b""]


# The libraries called directly, written out here rather than taken from mdlbench's registry.
def _ppmd_direct(order: int, data: bytes) -> bytes:
    e = pyppmd.Ppmd7Encoder(order, PPMD_MEM)
    return e.encode(data) + e.flush(endmark=True)


def _zstd_level(level: int, long: bool = False) -> zstandard.ZstdCompressor:
    if long:
        return zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
            22, enable_ldm=True, window_log=27))
    return zstandard.ZstdCompressor(level=level)


def _brotli_stream(data: bytes) -> bytes:
    c = brotli.Compressor(quality=11, lgwin=24)
    return c.process(data) + c.finish()


ONE_SHOT = {  # one document, size known
    "gzip-1": lambda d: gzip.compress(d, 1, mtime=0), "gzip-6": lambda d: gzip.compress(d, 6, mtime=0),
    "gzip-9": lambda d: gzip.compress(d, 9, mtime=0), "bz2-9": lambda d: bz2.compress(d, 9),
    "xz-9e": lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME),
    "zstd-3": lambda d: zstandard.ZstdCompressor(level=3).compress(d),
    "zstd-19": lambda d: zstandard.ZstdCompressor(level=19).compress(d),
    "zstd-22-long": lambda d: _zstd_level(22, long=True).compress(d),
    "brotli-11": lambda d: brotli.compress(d, quality=11, lgwin=24),
    "ppmd-o8": lambda d: _ppmd_direct(8, d), "ppmd-o16": lambda d: _ppmd_direct(16, d),
}
STREAM = {  # a stream of unknown size (zstd, brotli: the streaming APIs; the others produce the same bytes)
    **ONE_SHOT,
    "zstd-3": lambda d: _stream(_zstd_level(3).compressobj(), d),
    "zstd-19": lambda d: _stream(_zstd_level(19).compressobj(), d),
    "zstd-22-long": lambda d: _stream(_zstd_level(22, long=True).compressobj(), d),
    "brotli-11": _brotli_stream,
}


def _stream(c: zstandard.ZstdCompressionObj, data: bytes) -> bytes:
    return c.compress(data) + c.flush()


def factory(docs: list[bytes]):
    return lambda: iter(docs)


def rows_by_mode(rows) -> dict[str, object]:
    return {r.mode: r for r in rows}


@pytest.fixture(scope="module")
def text_rows() -> dict[str, dict[str, object]]:
    """Every compressor measured once on TEXT_DOCS (shared by the tests below; a few seconds in all)."""
    out = {}
    for name in COMPRESSORS:
        rows = measure_compressor(COMPRESSORS[name], factory(TEXT_DOCS), corpus="t", corpus_sha256="0" * 64)
        assert isinstance(rows, list), rows
        out[name] = rows_by_mode(rows)
    return out


@pytest.fixture(scope="module")
def direct_doc_sizes() -> dict[str, list[int]]:
    """|C(doc)| of each TEXT_DOCS document with the library called directly."""
    return {name: [len(ONE_SHOT[name](d)) for d in TEXT_DOCS] for name in PLAIN}


# ---------------------------------------------------------------------------------------------------------------
# Pure arithmetic.

def test_compressed_bits_per_byte_is_eight_times_the_ratio():
    assert bits_per_byte(bytes_to_bits(25), 100) == 2.0
    assert bits_per_byte(bytes_to_bits(9), 8) == 9.0
    assert math.isnan(bits_per_byte(bytes_to_bits(20), 0))  # no bytes: no rate, not a division error


def test_header_once_total_hand_cases():
    assert header_once_total(300, 20, 4) == 300 - 20 * 3
    assert header_once_total(57, 20, 1) == 57  # one document: its header is the one header
    assert header_once_total(0, 20, 0) == 0  # no documents, no files


def test_dictionary_size_rule():
    assert dictionary_size_bytes(150_000) == 1_500
    assert dictionary_size_bytes(50_000_000) == 112_640


def test_baseline_id_depends_on_each_key_part():
    base = baseline_id("a" * 64, "gzip-9", "per_document", "1.2.13")
    assert len(base) == 16 and set(base) <= set("0123456789abcdef")
    assert base == baseline_id("a" * 64, "gzip-9", "per_document", "1.2.13")
    others = {baseline_id("b" * 64, "gzip-9", "per_document", "1.2.13"),
              baseline_id("a" * 64, "gzip-6", "per_document", "1.2.13"),
              baseline_id("a" * 64, "gzip-9", "concatenated", "1.2.13"),
              baseline_id("a" * 64, "gzip-9", "per_document", "1.3")}
    assert base not in others and len(others) == 4


# ---------------------------------------------------------------------------------------------------------------
# Container overhead and incompressible data.

# (compressor, library version it was measured with) -> bytes for empty input (METHODS.md §5.2, ENVIRONMENT.md).
EMPTY_BYTES = {
    ("gzip-9", "1.2.13"): 20,  # 10-B header + 2-B empty DEFLATE block + CRC32 + ISIZE
    ("xz-9e", "5.4.1"): 32,
    ("zstd-3", "0.25.0+libzstd-1.5.7"): 9, ("zstd-19", "0.25.0+libzstd-1.5.7"): 9,
    ("zstd-22-long", "0.25.0+libzstd-1.5.7"): 9,
    ("bz2-9", "1.0.8"): 14,
}


@pytest.mark.parametrize(("name", "version"), list(EMPTY_BYTES))
def test_empty_input_container_overhead_is_pinned(name, version):
    spec = COMPRESSORS[name]
    if spec.library_version != version:
        pytest.skip(f"pinned for {spec.library} {version}, found {spec.library_version}")
    expected = EMPTY_BYTES[(name, version)]
    assert compressed_size(name, b"") == expected
    encoder = spec.new_encoder(None)  # the streaming path: an empty stream is the same container
    assert len(encoder.compress(b"") + encoder.flush()) == expected
    assert len(ONE_SHOT[name](b"")) == expected


def test_random_bytes_cost_more_than_eight_bits_per_byte_everywhere():
    rng = random.Random(0)
    few = [rng.randbytes(4_000) for _ in range(4)]
    many = [rng.randbytes(2_000) for _ in range(40)]  # the dictionary's folds need >= 8 documents, >= 25.6 kB
    for name, spec in COMPRESSORS.items():
        docs = many if spec.uses_dictionary else few
        rows = measure_compressor(spec, factory(docs), corpus="random", corpus_sha256="0" * 64)
        assert isinstance(rows, list), f"{name}: {rows}"
        by_mode = rows_by_mode(rows)
        for mode in ("concatenated", "per_document"):
            assert by_mode[mode].bits_per_byte > 8.0, (name, mode, by_mode[mode].bits_per_byte)
        # h = |C(b"\x00")| holds one byte of payload, so "header once" may subtract up to one byte too many per
        # extra document (brotli: 2,004-B documents, h = 5 B): the bound is n_bytes - (k-1), not n_bytes.
        once = by_mode["per_document_header_once"]
        assert once.compressed_bytes >= once.n_bytes - (len(docs) - 1), name
        for r in rows:
            assert r.roundtrip_verified, (name, r.mode, r.roundtrip_error)


# ---------------------------------------------------------------------------------------------------------------
# Accounting on real text, against the libraries called directly.

def test_sizes_equal_the_library_called_directly(text_rows, direct_doc_sizes):
    joined = SEPARATOR.join(TEXT_DOCS)
    for name in PLAIN:
        rows = text_rows[name]
        assert rows["per_document"].compressed_bytes == sum(direct_doc_sizes[name]), name
        assert rows["concatenated"].compressed_bytes == len(STREAM[name](joined)), name
        assert rows["concatenated"].model_bytes == 0


def test_n_bytes_count_the_scored_bytes_and_the_separators(text_rows):
    k, doc_bytes = len(TEXT_DOCS), sum(map(len, TEXT_DOCS))
    for name in PLAIN:
        rows = text_rows[name]
        assert rows["per_document"].n_bytes == rows["per_document_header_once"].n_bytes == doc_bytes
        assert rows["concatenated"].n_bytes == len(SEPARATOR.join(TEXT_DOCS)) == doc_bytes + 2 * (k - 1)
        assert rows["concatenated"].n_separator_bytes == 2 * (k - 1)
        for r in rows.values():
            assert r.n_docs == k
            assert r.bits_per_byte == 8 * r.compressed_bytes / r.n_bytes


def test_header_once_total_matches_the_deepmind_formula(text_rows, direct_doc_sizes):
    k = len(TEXT_DOCS)
    for name in PLAIN:
        rows = text_rows[name]
        h = len(ONE_SHOT[name](b"\x00"))
        assert rows["per_document"].header_bytes == h
        per_doc_sum = sum(direct_doc_sizes[name])
        assert rows["per_document_header_once"].compressed_bytes == per_doc_sum - h * (k - 1), name


def test_per_document_costs_more_than_concatenated_on_text(text_rows):
    for name, rows in text_rows.items():
        concatenated = rows["concatenated"].compressed_bytes
        # Strictly: the concatenated stream is even 2(k-1) bytes longer, yet cheaper (shared context, one header).
        assert rows["per_document_header_once"].compressed_bytes > concatenated, name
        assert rows["per_document"].compressed_bytes > rows["per_document_header_once"].compressed_bytes, name


def test_every_output_round_trips(text_rows):
    for name, rows in text_rows.items():
        for r in rows.values():
            assert r.roundtrip_verified and r.roundtrip_error == "", (name, r.mode, r.roundtrip_error)
            assert r.compress_seconds > 0 and r.decompress_seconds > 0


def test_streams_that_decode_to_far_more_than_a_piece_round_trip(monkeypatch):
    # Decoders return at most about PIECE_BYTES per step; a stream that expands 100× must still come back whole.
    monkeypatch.setattr("mdlbench.baselines.compressors.PIECE_BYTES", 4096)
    rng = random.Random(1)
    docs = [b"".join(rng.choice([b"to be ", b"or not ", b"that is ", b"the question\n"]) for _ in range(12_000)),
            b"x" * 100_000]
    for name in ("gzip-1", "bz2-9", "xz-9e", "zstd-3", "brotli-11", "ppmd-o8"):  # one per decoder
        rows = measure_compressor(COMPRESSORS[name], factory(docs), corpus="r", corpus_sha256="0")
        for r in rows:
            assert r.roundtrip_verified, (name, r.mode, r.roundtrip_error)


def test_a_wrong_decode_is_reported_not_trusted():
    def drop_last_byte(read, dictionary):
        pieces = b"".join(COMPRESSORS["gzip-9"].decode(read, dictionary))
        yield pieces[:-1]

    broken = dataclasses.replace(COMPRESSORS["gzip-9"], decode=drop_last_byte)
    rows = rows_by_mode(measure_compressor(broken, factory([b"abc", b"defg"]), corpus="t", corpus_sha256="0"))
    for r in rows.values():
        assert not r.roundtrip_verified
        assert "expected" in r.roundtrip_error


def test_ppmd_decodes_in_a_child_process_and_failures_come_back():
    spec = COMPRESSORS["ppmd-o8"]
    assert spec.isolate_decoder
    doc = TEXT_DOCS[0]
    frame = spec.compress_one(doc, None)
    both = io.BytesIO(frame + frame)
    ok = decode_frames(spec, both, [len(frame)] * 2, [len(doc)] * 2, [None])
    assert ok.error is None and ok.sha256 == frames_sha256([doc, doc]) and ok.n_bytes == 2 * len(doc)
    assert ok.sha256 != frames_sha256([doc + doc, b""])  # boundaries are part of the digest
    wrong_length = decode_frames(spec, io.BytesIO(frame), [len(frame)], [len(doc) + 1], [None])
    assert wrong_length.error is not None and "expected" in wrong_length.error and wrong_length.sha256 == ""
    half = frame[: len(frame) // 2]  # truncated: no end mark
    truncated = decode_frames(spec, io.BytesIO(half), [len(half)], [len(doc)], [None])
    assert truncated.error is not None


# ---------------------------------------------------------------------------------------------------------------
# zstd with a dictionary: cross-fitted, and counted.

def test_dictionary_is_never_trained_on_the_bytes_it_codes():
    docs = sample_docs()
    samples = collect_training_samples(docs)
    for f, fold_samples in enumerate(samples):
        assert fold_samples and all(fold_of(d) == f for d in fold_samples)
    dictionaries = train_fold_dictionaries(samples)
    assert isinstance(dictionaries, list)
    for coded_fold, d in enumerate(dictionaries):
        assert d.codes_fold == coded_fold and d.trained_on_fold == 1 - coded_fold
        coded = {doc for doc in docs if fold_of(doc) == coded_fold}
        assert coded and coded.isdisjoint(samples[d.trained_on_fold])
        assert d.n_train_bytes == sum(map(len, samples[d.trained_on_fold]))
        assert len(d.data) == dictionary_size_bytes(d.n_train_bytes)
    # Duplicates share a fold, so a copy of a document never trains the dictionary that codes it.
    assert fold_of(docs[0]) == fold_of(bytes(docs[0]))

    # Changing a fold-1 document cannot change the dictionary that codes fold 1 (trained on fold 0 only).
    i = next(i for i, d in enumerate(docs) if fold_of(d) == 1)
    edited = next(e for e in (docs[i] + b"!" * n for n in range(1, 64)) if fold_of(e) == 1)
    docs2 = docs[:i] + [edited] + docs[i + 1:]
    again = train_fold_dictionaries(collect_training_samples(docs2))
    assert again[1].data == dictionaries[1].data
    assert again[0].n_train_bytes == dictionaries[0].n_train_bytes + len(edited) - len(docs[i])  # it saw the edit


def test_dictionary_rows_use_the_other_folds_dictionary_and_count_both(text_rows):
    docs = TEXT_DOCS
    dictionaries = train_fold_dictionaries(collect_training_samples(docs))
    if isinstance(dictionaries, str):
        pytest.fail(dictionaries)
    rows = text_rows["zstd-19-dict"]
    model_bytes = sum(len(d.data) for d in dictionaries)
    direct = sum(len(zstandard.ZstdCompressor(level=19, dict_data=zstandard.ZstdCompressionDict(
        dictionaries[fold_of(doc)].data)).compress(doc)) for doc in docs)
    assert rows["per_document"].model_bytes == model_bytes > 0
    assert rows["per_document"].compressed_bytes == direct + model_bytes
    folds = [[d for d in docs if fold_of(d) == f] for f in (0, 1)]
    streams = [SEPARATOR.join(fold) for fold in folds]
    assert rows["concatenated"].n_bytes == sum(map(len, streams))  # a separator between the documents of a fold
    assert rows["concatenated"].compressed_bytes == model_bytes + sum(
        len(_stream(zstandard.ZstdCompressor(level=19, dict_data=zstandard.ZstdCompressionDict(
            dictionaries[f].data)).compressobj(), streams[f])) for f in (0, 1))


def test_too_little_data_for_a_dictionary_is_skipped_with_a_reason(tmp_path):
    docs = [b"tiny document %d" % i for i in range(5)]
    df = ensure_baselines(tmp_path, "tiny", "1" * 64, factory(docs), ["zstd-19-dict", "gzip-9"])
    skipped = df[df.compressor == "zstd-19-dict"]
    assert list(skipped.status) == ["skipped"] * 3
    assert "too little data" in skipped.note.iloc[0]
    assert list(df[df.compressor == "gzip-9"].status) == ["computed"] * 3
    assert len(read_table(tmp_path, "baselines")) == 3  # skipped rows are not stored


# ---------------------------------------------------------------------------------------------------------------
# The table: computed once per corpus, then reused.

def test_baselines_are_reused_not_recomputed(tmp_path):
    docs = TEXT_DOCS[:6]
    calls = []

    def counting_factory() -> Iterator[bytes]:
        calls.append(1)
        return iter(docs)

    first = ensure_baselines(tmp_path, "c", "2" * 64, counting_factory, ["gzip-9", "ppmd-o8"])
    assert list(first.status) == ["computed"] * 6 and len(calls) > 0
    parts = sorted((tmp_path / "baselines").glob("baseline_id=*/part-0.parquet"))
    assert len(parts) == 6
    stamps = {p: p.stat().st_mtime_ns for p in parts}

    calls.clear()
    second = ensure_baselines(tmp_path, "c", "2" * 64, counting_factory, ["gzip-9", "ppmd-o8"])
    assert calls == []  # the corpus was not even read
    assert list(second.status) == ["reused"] * 6
    assert {p: p.stat().st_mtime_ns for p in parts} == stamps
    cols = ["baseline_id", *SCHEMA.names]
    assert second[cols].equals(first[cols])  # timings included: they are the stored ones

    third = ensure_baselines(tmp_path, "c", "2" * 64, counting_factory, ["gzip-9", "bz2-9"])
    assert list(third.status) == ["reused"] * 3 + ["computed"] * 3

    table = read_table(tmp_path, "baselines")
    assert len(table) == 9 and list(table.columns[: len(SCHEMA.names)]) == SCHEMA.names
    expected_ids = {baseline_id("2" * 64, n, m, COMPRESSORS[n].library_version)
                    for n in ("gzip-9", "ppmd-o8", "bz2-9") for m in MODES}
    assert set(table.baseline_id) == expected_ids


def test_a_partition_replaced_between_the_looks_is_measured_anew(tmp_path, monkeypatch):
    """Two runs on one corpus measure baselines side by side; one's commit can replace a partition the other has
    just found (the partition is absent for a moment). That compressor is measured again, not an OS error."""
    import mdlbench.baselines.run as baselines_run

    first = ensure_baselines(tmp_path, "c", "5" * 64, factory(TEXT_DOCS[:4]), ["gzip-1"])
    gone = next(iter((tmp_path / "baselines").glob("baseline_id=*")))
    real_exists = baselines_run.partition_exists

    looks = []

    def exists_then_replaced(out_dir, table, value):  # all three found at their looks, one gone at the read
        looks.append(value)
        found = real_exists(out_dir, table, value)
        if len(looks) == len(MODES):
            shutil.rmtree(gone)
        return found

    monkeypatch.setattr(baselines_run, "partition_exists", exists_then_replaced)
    again = ensure_baselines(tmp_path, "c", "5" * 64, factory(TEXT_DOCS[:4]), ["gzip-1"])
    assert len(looks) == len(MODES) and list(again.status) == ["computed"] * 3
    cols = ["baseline_id", "compressed_bytes"]
    assert again[cols].equals(first[cols])


def test_a_different_corpus_is_computed_afresh(tmp_path):
    ensure_baselines(tmp_path, "c", "3" * 64, factory(TEXT_DOCS[:4]), ["gzip-1"])
    other = ensure_baselines(tmp_path, "d", "4" * 64, factory(TEXT_DOCS[4:8]), ["gzip-1"])
    assert list(other.status) == ["computed"] * 3


def test_inputs_that_cannot_be_measured_fail_clearly(tmp_path):
    with pytest.raises(InputError, match="no documents"):
        ensure_baselines(tmp_path, "empty", "5" * 64, factory([]), ["gzip-9"])
    with pytest.raises(InputError, match="unknown compressor 'gzip9'.*Did you mean"):
        ensure_baselines(tmp_path, "c", "5" * 64, factory([b"x"]), ["gzip9"])
    once = iter([b"abc", b"def"])
    with pytest.raises(ValueError, match="fresh iterator"):
        ensure_baselines(tmp_path, "c", "5" * 64, lambda: once, ["gzip-9"])
    assert get_compressor("xz-9e").library == "liblzma"


# ---------------------------------------------------------------------------------------------------------------
# CLI.

def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_list_names_every_compressor_with_its_version(capsys):
    assert cli.main(_parse(["--list"])) == 0
    out = capsys.readouterr().out
    for spec in COMPRESSORS.values():
        assert spec.name in out and spec.library_version in out


def test_cli_measures_a_corpus_file_and_reuses_it(tmp_path, capsys):
    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["héllo wörld", "second doc", "😀 three"]),
                      "utf-8")
    argv = ["--corpus", str(corpus), "--out", str(tmp_path / "out"), "--names", "gzip-9,zstd-3", "--quiet"]
    assert cli.main(_parse(argv)) == 0
    out = capsys.readouterr().out
    assert "per_document_header_once" in out and "computed" in out
    n_bytes = sum(len(t.encode("utf-8")) for t in ["héllo wörld", "second doc", "😀 three"])
    table = read_table(tmp_path / "out", "baselines")
    assert set(table[table["mode"] == "per_document"].n_bytes) == {n_bytes}
    assert set(table[table["mode"] == "concatenated"].n_bytes) == {n_bytes + 4}
    assert cli.main(_parse(argv)) == 0
    assert "reused" in capsys.readouterr().out
    with pytest.raises(InputError, match="unknown compressor"):
        cli.main(_parse(["--corpus", str(corpus), "--names", "gzip-10"]))
    with pytest.raises(InputError, match="--corpus"):
        cli.main(_parse([]))


def test_importing_the_registry_does_not_import_pandas():
    # The PPMd decoder child imports only the registry; keep it light.
    import subprocess
    import sys

    code = "import sys, mdlbench.baselines.compressors; print('pandas' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
