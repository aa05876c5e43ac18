"""Lockstep batched coding and corpus archives: the plan's invariants, round trips at several batch sizes,
agreement of ideal bits across batch sizes and with the scorer, damaged archives, resume after kill -9, CLI.

Tiny 2-layer GPT-2 (GPT-2's 50,257-token tokenizer, context 64) with window 16, so documents span several windows
and the batch cache is rebuilt often. torch on one thread (conftest.one_torch_thread).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from hypothesis import given
from hypothesis import strategies as st

from mdlbench.coding.archive import (
    BatchSettings,
    Source,
    compress_documents,
    decode_archive,
    open_archive,
)
from mdlbench.coding.coder import coding_rows
from mdlbench.coding.container import CorruptFileError
from mdlbench.coding.identity import ModelMismatchError, resolve_settings
from mdlbench.coding.plan import assign_slots, chunk_closes, entry_order, plan_chunks
from mdlbench.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WINDOW = 16
MIX = [  # empty, one token, longer than the window, not UTF-8 (stored raw), and ordinary text
    Source("empty", b""),
    Source("one-token", b"x"),
    Source("long", ("def f(x):\n    return x * 2  # a comment\n" * 3).encode()),
    Source("raw", b"ok \xff\xfe then text"),
    Source("prose", b"Hello world. This is a small test document, a little longer than one window."),
    Source("cjk", "床前明月光，疑是地上霜。 emoji 😀".encode()),
    Source("short", b"To be, or not to be."),
]


# -- the plan (pure) -----------------------------------------------------------------------------------------------
@given(st.lists(st.integers(0, 40), max_size=30), st.integers(1, 6))
def test_slot_plan_invariants(n_predictions, batch_size):
    plan = assign_slots(n_predictions, batch_size)
    assert sorted(a.doc for a in plan) == [i for i, m in enumerate(n_predictions) if m > 0]
    assert [a.doc for a in plan] == entry_order(n_predictions)  # longest first, ties in corpus order
    spans = {}
    for a in plan:
        assert 0 <= a.slot < batch_size
        spans.setdefault(a.slot, []).append((a.start, a.start + n_predictions[a.doc]))
    for intervals in spans.values():  # a slot runs its documents back to back, never overlapping, never idle
        intervals.sort()
        assert intervals[0][0] == 0
        assert all(prev[1] == nxt[0] for prev, nxt in zip(intervals, intervals[1:], strict=False))
    end = max((e for iv in spans.values() for _, e in iv), default=0)
    for step in range(end):
        active = sum(s <= step < e for iv in spans.values() for s, e in iv)
        assert active <= batch_size
    # work conserving: a document starts late only when every slot is busy until then
    for a in plan:
        if a.start > 0:
            busy = [any(s <= a.start - 1 < e for s, e in iv) for iv in spans.values()]
            assert len(spans) == batch_size and all(busy)


@given(st.lists(st.integers(0, 30), max_size=40), st.integers(1, 7), st.integers(1, 60))
def test_chunks_cover_in_order_and_match_the_streaming_rule(n_predictions, chunk_docs, chunk_predictions):
    chunks = plan_chunks(n_predictions, chunk_docs, chunk_predictions)
    assert [i for r in chunks for i in r] == list(range(len(n_predictions)))
    for k, r in enumerate(chunks):
        last = k == len(chunks) - 1
        closes = [chunk_closes(j - r.start + 1, sum(n_predictions[r.start:j + 1]), chunk_docs, chunk_predictions)
                  for j in r]
        assert not any(closes[:-1]) and (closes[-1] or last)


def test_plan_by_hand():
    assert assign_slots([5, 3, 0, 4], batch_size=2) == [(0, 0, 0), (3, 1, 0), (1, 1, 4)]
    assert plan_chunks([3, 3, 3, 3, 3], chunk_docs=2, chunk_predictions=100) == [range(0, 2), range(2, 4),
                                                                                  range(4, 5)]
    assert plan_chunks([3, 50, 3], chunk_docs=10, chunk_predictions=10) == [range(0, 2), range(2, 3)]


# -- round trips ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def settings(tiny_loaded):
    return resolve_settings(tiny_loaded, window=WINDOW)


@pytest.fixture(scope="module")
def archives(tiny_loaded, settings):
    """MIX compressed at batch sizes 1, 3 and 16 (chunks of 5 documents, so two chunks)."""
    return {b: compress_documents(tiny_loaded, MIX, settings=settings, batch=BatchSettings(b, 5, 1 << 16))
            for b in (1, 3, 16)}


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_round_trip_at_batch_sizes(tiny_loaded, archives, batch_size):
    packed = archives[batch_size]
    c = open_archive(packed.blob)
    assert [d.data for d in decode_archive(c, tiny_loaded)] == [s.data for s in MIX]
    methods = {e["id"]: e["method"] for e in c.entries}
    assert methods["raw"] == "raw-bytes" and "not valid UTF-8" in c.entries[3]["fallback_reason"]
    assert all(m == "model" for k, m in methods.items() if k != "raw")
    assert len(c.plan["chunks"]) == 2 and c.header["batch"]["batch_size"] == batch_size
    for e in c.entries:
        coded = 8 * e["payload_bytes"]
        assert abs(coded - e["ideal_bits"]) <= 64 + 1e-3 * e["ideal_bits"]
        if e["method"] == "model":
            assert coded % 32 == 0 and e["n_symbols"] == e["n_tokens"] + 1  # tokens + EOS
    assert next(e for e in c.entries if e["id"] == "long")["n_tokens"] > 2 * WINDOW  # several windows
    assert next(e for e in c.entries if e["id"] == "empty")["n_symbols"] == 1  # only EOS
    # the coding table's rows split the non-payload bytes so that they add up to the archive's size
    rows = coding_rows(packed.entries, packed.header_bytes, packed.seconds, [True] * len(MIX), [0.0] * len(MIX))
    assert sum(r["header_bytes"] for r in rows) + sum(r["coded_bits"] for r in rows) // 8 == len(packed.blob)
    assert len(packed.seconds) == len(MIX) and all(t >= 0 for t in packed.seconds)


def test_padding_does_not_change_rows(archives):
    """The same documents in batches of 1, 3 and 16 — other rows, other padding, other cache widths — give the
    same ideal bits to float32 rounding (measured ≤ 5e-9 relative)."""
    ideal = {b: [e["ideal_bits"] for e in p.entries] for b, p in archives.items()}
    for b in (3, 16):
        for x, y in zip(ideal[b], ideal[1], strict=True):
            assert math.isclose(x, y, rel_tol=1e-7, abs_tol=1e-9)


def test_ideal_bits_equal_the_scorers_code_length(tiny_loaded, archives):
    from mdlbench.config import ScoringSettings
    from mdlbench.corpora import Document
    from mdlbench.scoring.hf import HFScorer

    docs = [Document(s.doc_id, s.data.decode()) for s in MIX if s.doc_id != "raw"]
    scorer = HFScorer(tiny_loaded, ScoringSettings(WINDOW, WINDOW // 2))
    ref = {d.doc.doc_id: d.code_length_bits for d in scorer.score(enumerate(docs))}
    for e in archives[16].entries:
        if e["method"] == "model":
            assert math.isclose(e["ideal_bits"], ref[e["id"]], rel_tol=1e-6)


def test_other_policies_in_lockstep(tiny_loaded):
    """first_token=uniform codes token 0 with log2|V| bits before the model's rows; end=none codes no EOS; a
    one-token document under uniform/none has no model prediction at all."""
    mix = [Source("a", b"x"), Source("b", b""), Source("c", MIX[2].data), Source("d", b"Hi there")]
    for first, end in (("uniform", "eos"), ("uniform", "none"), ("bos", "none")):
        s = resolve_settings(tiny_loaded, window=WINDOW, stride=5, first_token=first, end=end)
        packed = compress_documents(tiny_loaded, mix, settings=s, batch=BatchSettings(3, 8, 1 << 16))
        c = open_archive(packed.blob)
        assert [d.data for d in decode_archive(c, tiny_loaded)] == [m.data for m in mix]
        for e in c.entries:
            assert e["n_symbols"] == e["n_tokens"] + (end == "eos")
        if first == "uniform" and end == "none":  # "x": the uniform code only (the index keeps 0.001 bit)
            assert packed.entries[0]["ideal_bits"] == math.log2(50257)
            assert c.entries[0]["ideal_bits"] == round(math.log2(50257), 3)


# -- damage and refusals -------------------------------------------------------------------------------------------
def test_damaged_payload_fails_alone(tiny_loaded, archives):
    blob = archives[3].blob
    c = open_archive(blob)
    victim = next(i for i, e in enumerate(c.entries) if e["id"] == "long")
    at = c.header_bytes + c.entries[victim]["offset"] + 5
    damaged = blob[:at] + bytes([blob[at] ^ 0x10]) + blob[at + 1:]
    out = list(decode_archive(open_archive(damaged), tiny_loaded))
    for d, src in zip(out, MIX, strict=True):
        if d.index == victim:
            assert d.data is None and isinstance(d.error, CorruptFileError)
            assert str(d.error).count("\n") == 0 and "'long'" in str(d.error) and "corrupted payload" in str(d.error)
        else:
            assert d.data == src.data and d.error is None


def test_damaged_index_is_refused(archives):
    blob = archives[3].blob
    c = open_archive(blob)
    at = c.header_bytes - 3  # inside the (compressed) index
    with pytest.raises(CorruptFileError, match="corrupted index"):
        open_archive(blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1:])


def test_other_batch_size_is_refused(tiny_loaded, archives):
    c = open_archive(archives[3].blob)
    with pytest.raises(ModelMismatchError, match="batches of 3 documents.*batch size 3, not 4"):
        list(decode_archive(c, tiny_loaded, batch_size=4))
    assert [d.data for d in decode_archive(c, tiny_loaded, batch_size=3)] == [s.data for s in MIX]


def test_one_document_decodes_only_its_chunk(tiny_loaded, archives):
    c = open_archive(archives[3].blob)
    decoded_symbols = []
    target = next(i for i, e in enumerate(c.entries) if e["id"] == "cjk")  # in the second chunk

    [d] = decode_archive(c, tiny_loaded, wanted={target}, progress=lambda p: decoded_symbols.append(p))
    assert d.data == MIX[target].data
    assert {p.chunk for p in decoded_symbols} == {1}
    chunk = c.plan["chunks"][1]
    assert max(p.symbols_done for p in decoded_symbols) <= sum(
        c.entries[i]["n_symbols"] for i in range(chunk["start"], chunk["stop"]))


def test_chunks_closed_by_the_prediction_limit_round_trip(tiny_loaded, settings):
    """With a prediction limit of 8, chunks close on predictions (not on the 100-document limit): more than one
    chunk, each closing after the document that crosses 8, and every document decodes."""
    packed = compress_documents(tiny_loaded, MIX, settings=settings, batch=BatchSettings(2, 100, 8))
    c = open_archive(packed.blob)
    chunks = c.plan["chunks"]
    assert len(chunks) > 1
    for chunk in chunks[:-1]:
        # a model document's symbols are its predictions (BOS prefix); a raw one makes none
        predictions = [c.entries[i]["n_symbols"] if c.entries[i]["method"] == "model" else 0
                       for i in range(chunk["start"], chunk["stop"])]
        assert sum(predictions) >= 8 and sum(predictions[:-1]) < 8
    assert [d.data for d in decode_archive(c, tiny_loaded)] == [s.data for s in MIX]


# -- the CLI -------------------------------------------------------------------------------------------------------
def _one_error(err: str) -> str:
    [line] = err.strip().splitlines()
    return line


def test_cli_corpus_archive_jsonl_and_doc(tmp_path, tiny_model_dir, jsonl_corpus):
    from conftest import TEXTS

    archive = tmp_path / "c.mdlz"
    code, out, err = run_cli("compress", jsonl_corpus, "-m", tiny_model_dir, "--window", "32", "--threads", "1",
                             "--id-field", "id", "--batch-size", "4", "-o", archive, "--max-docs", "5")
    assert code == 0, err
    assert "5 documents" in out and "tokens/s" in err
    assert not (tmp_path / "c.mdlz.partial").exists()
    restored = tmp_path / "c.jsonl"
    code, out, err = run_cli("decompress", archive, "-o", restored)
    assert code == 0 and "5 documents, sha256 verified" in out, err
    rows = [json.loads(line) for line in restored.read_text("utf-8").splitlines()]
    assert [(r["id"], r["text"], r["domain"]) for r in rows] == [(f"d{i}", t, "test") for i, t in
                                                                 enumerate(TEXTS[:5])]
    one = tmp_path / "d3.txt"
    assert run_cli("decompress", archive, "--doc", "d3", "-o", one, "--quiet")[0] == 0
    assert one.read_text("utf-8") == TEXTS[3]
    code, _, err = run_cli("decompress", archive, "--doc", "nope", "-o", tmp_path / "x")
    assert code == 2 and "no document with id 'nope'" in _one_error(err) and not (tmp_path / "x").exists()
    code, _, err = run_cli("decompress", archive, "--batch-size", "2", "-o", tmp_path / "y.jsonl")
    assert code == 2 and "batch size 4, not 2" in _one_error(err) and not (tmp_path / "y.jsonl").exists()


def test_cli_folder_corpus_and_damaged_document(tmp_path, tiny_model_dir):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    files = {"a.txt": "alpha text here", "sub/b.md": "# Beta\n\nsome *markdown*\n", "c.py": "print('c')\n"}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    archive = tmp_path / "docs.mdlz"
    code, _, err = run_cli("compress", folder, "-m", tiny_model_dir, "--threads", "1", "-o", archive, "--quiet")
    assert code == 0, err
    assert run_cli("decompress", archive, "-o", tmp_path / "restored", "--quiet")[0] == 0
    assert {p.relative_to(tmp_path / "restored").as_posix(): p.read_text("utf-8")
            for p in (tmp_path / "restored").rglob("*") if p.is_file()} == files
    # damage one document's payload: it fails with one line, the others are written
    c = open_archive(archive)
    i = next(j for j, e in enumerate(c.entries) if e["id"] == "c.py")
    at = c.header_bytes + c.entries[i]["offset"]
    c.close()
    blob = bytearray(archive.read_bytes())
    blob[at] ^= 0xFF
    archive.write_bytes(bytes(blob))
    code, _, err = run_cli("decompress", archive, "-o", tmp_path / "partly", "--quiet")
    assert code == 2 and "1 of 3 documents failed" in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {archive}: document 'c.py': corrupted payload (CRC-32 mismatch)"]
    assert sorted(p.name for p in (tmp_path / "partly").rglob("*") if p.is_file()) == ["a.txt", "b.md"]


def test_cli_text_file_is_one_file_and_corpus_options_need_a_corpus(tmp_path):
    from mdlbench.coding.container import unpack

    txt = tmp_path / "book.txt"
    txt.write_bytes(b"a text file \xff with a stray byte")
    code, out, err = run_cli("compress", txt, "-m", "uniform-bytes", "--quiet")
    assert code == 0 and err == "" and "book.txt.mdlz" in out  # --quiet: the summary on stdout, nothing on stderr
    assert unpack((tmp_path / "book.txt.mdlz").read_bytes()).header["kind"] == "file"
    code, _, err = run_cli("decompress", tmp_path / "book.txt.mdlz", "-o", tmp_path / "back.txt", "--quiet")
    assert code == 0 and err == "" and (tmp_path / "back.txt").read_bytes() == txt.read_bytes()
    code, _, err = run_cli("compress", txt, "-m", "uniform-bytes", "--max-docs", "3", "-o", tmp_path / "x.mdlz")
    assert code == 2 and "--max-docs applies to corpora" in _one_error(err) and not (tmp_path / "x.mdlz").exists()
    # --as corpus reads the same .txt as a one-document corpus (strict UTF-8, as `mdlbench run` would)
    code, _, err = run_cli("compress", txt, "--as", "corpus", "-m", "uniform-bytes", "-o", tmp_path / "y.mdlz")
    assert code == 2 and "invalid UTF-8 at byte offset 12" in _one_error(err)


def test_an_output_that_cannot_be_a_file_is_refused_before_coding(tmp_path, tiny_model_dir):
    txt = tmp_path / "book.txt"
    txt.write_text("some text to code")
    (tmp_path / "a-file").write_text("keep")
    (tmp_path / "a-folder").mkdir()
    for output, words in ((tmp_path / "a-file" / "x.mdlz", "is a file, not a folder"),
                          (tmp_path / "a-folder", "is a folder"),
                          (tmp_path / "missing" / "x.mdlz", "does not exist")):
        code, _, err = run_cli("compress", txt, "-m", tiny_model_dir, "-o", output)
        assert code == 2 and words in _one_error(err) and str(output) in _one_error(err)
        assert "docs" not in err  # refused before the model coded anything: no progress line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder", "book.txt"]
    assert list((tmp_path / "a-folder").iterdir()) == []
    packed = tmp_path / "book.mdlz"
    assert run_cli("compress", txt, "-m", "uniform-bytes", "-o", packed, "--quiet")[0] == 0
    code, _, err = run_cli("decompress", packed, "-o", tmp_path / "a-file" / "back.txt")
    assert code == 2 and "is a file, not a folder" in _one_error(err)


# -- resume after kill -9 ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_during_archive_compress_then_resume_is_identical(tmp_path, tiny_model_dir):
    """A compress killed (SIGKILL) after its second chunk, then run again: the same archive, byte for byte, as an
    uninterrupted run (in this process, same settings and thread count), and no progress directory left."""
    corpus = tmp_path / "many.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for i in range(32):
            f.write(json.dumps({"text": f"Document {i}: " + "the quick brown fox. " * (i % 4 + 1)}) + "\n")
    argv = ["compress", str(corpus), "-m", str(tiny_model_dir), "--window", "32", "--batch-size", "1", "--threads",
            "1", "--quiet", "-o"]
    reference = tmp_path / "ref.mdlz"
    assert run_cli(*argv, reference)[0] == 0  # chunks of 8 documents: 4 chunks
    resumed = tmp_path / "resumed.mdlz"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mdlbench", *argv, str(resumed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / "resumed.mdlz.partial"
    deadline = time.monotonic() + 300
    while not (partial / "chunk-000001.mdlz").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not resumed.exists() and (partial / "chunk-000001.mdlz").exists()
    code, _, err = run_cli(*argv[:-2], "-o", resumed)  # progress on: it says what it resumed
    assert code == 0 and f"resuming from {partial}" in err
    n_resumed = int(re.search(r"resumed after (\d+) finished chunk", err).group(1))
    assert n_resumed >= 2
    assert resumed.read_bytes() == reference.read_bytes()
    assert not partial.exists()


def test_run_verify_coding_all(tmp_path, tiny_model_dir, jsonl_corpus):
    """`mdlbench run --verify-coding all`: every document in one lockstep archive; each row's ideal bits are the
    run's code length for that document, and every document round-trips; a rerun finds nothing missing."""
    import pandas as pd

    from mdlbench.config import RunOptions

    out = tmp_path / "out"
    argv = ["run", "-m", tiny_model_dir, "-c", jsonl_corpus, "--window", "16", "--id-field", "id", "--baselines",
            "none", "--two-part", "none", "--verify-coding", "all", "--bootstrap-samples", "100", "--quiet",
            "--out", out]
    code, _, err = run_cli(*argv)
    assert code == 0, err
    coding = pd.read_parquet(out / "coding").sort_values("doc_index")
    docs = pd.read_parquet(out / "documents").sort_values("doc_index")
    assert list(coding["doc_id"]) == list(docs["doc_id"]) and len(coding) == 6
    assert coding["roundtrip_ok"].all() and set(coding["method"]) == {"model"}
    for ideal, ref in zip(coding["ideal_bits"], docs["code_length_bits"], strict=True):
        assert math.isclose(ideal, ref, rel_tol=1e-6)
    assert ((coding["overhead_bits"]).abs() <= 64 + 1e-3 * coding["ideal_bits"]).all()
    assert (coding["encode_seconds"] > 0).all() and (coding["decode_seconds"] > 0).all()
    written = sorted((f, f.stat().st_mtime_ns) for f in (out / "coding").rglob("*"))
    code, _, err = run_cli(*argv)
    assert code == 0 and sorted((f, f.stat().st_mtime_ns) for f in (out / "coding").rglob("*")) == written
    with pytest.raises(InputError, match="--verify-coding 'some'"):
        RunOptions(verify_coding="some")  # type: ignore[arg-type]
    code, _, err = run_cli("run", "-m", "uniform-bytes", "-c", jsonl_corpus, "--verify-coding", "some", "--out",
                           tmp_path / "bad")
    assert code == 2 and "--verify-coding" in err and not (tmp_path / "bad").exists()


def test_auto_batch_size_respects_the_kv_budget(tiny_loaded, monkeypatch):
    from mdlbench.coding import archive
    from mdlbench.coding.lockstep import cache_capacity, kv_bytes_per_token

    # 2 layers x (keys + values) x 2 heads x head_dim 16 x 4 bytes
    assert kv_bytes_per_token(tiny_loaded.model) == 2 * 2 * 2 * 16 * 4
    assert archive.auto_batch_size(tiny_loaded, WINDOW) == archive.AUTO_BATCH_CPU
    monkeypatch.setattr(archive, "KV_BUDGET_CPU", 512 * cache_capacity(WINDOW) * 5 + 100)
    assert archive.auto_batch_size(tiny_loaded, WINDOW) == 5
    # chunks of 8·B documents or 4096·B predictions
    assert archive.batch_settings(None, tiny_loaded, WINDOW) == BatchSettings(5, 40, 20_480)
    with pytest.raises(InputError, match="--batch-size 0: must be >= 1"):
        archive.batch_settings(0, tiny_loaded, WINDOW)


def test_interrupted_compress_resumes_and_stale_progress_is_refused(tmp_path, tiny_loaded, settings):
    """Interrupted after its first chunk (an exception in the progress callback, in-process), a compress resumes
    from OUTPUT.partial into the same bytes as an uninterrupted one; a progress directory left with other settings
    is refused unless --force (which then starts over)."""
    batch = BatchSettings(2, 3, 1 << 16)  # chunks of 3 documents: 3 chunks for MIX
    reference = compress_documents(tiny_loaded, MIX, settings=settings, batch=batch, output=tmp_path / "ref.mdlz")
    out = tmp_path / "out.mdlz"

    def stop_in_second_chunk(p):
        if p.chunk == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compress_documents(tiny_loaded, MIX, settings=settings, batch=batch, output=out,
                           progress=stop_in_second_chunk)
    partial = tmp_path / "out.mdlz.partial"
    assert sorted(p.name for p in partial.iterdir()) == ["chunk-000000.mdlz", "header.json"] and not out.exists()
    with pytest.raises(InputError, match="other settings \\(differs in batch\\)"):
        compress_documents(tiny_loaded, MIX, settings=settings, batch=BatchSettings(3, 3, 1 << 16), output=out)
    with pytest.raises(InputError, match="document 1 \\('x'\\) differs"):
        compress_documents(tiny_loaded, [MIX[0], Source("x", b"y"), *MIX[2:]], settings=settings, batch=batch,
                           output=out)
    resumed = compress_documents(tiny_loaded, MIX, settings=settings, batch=batch, output=out, force=True)
    assert resumed.resumed_chunks == 1  # --force keeps a progress directory left with the same settings
    assert out.read_bytes() == (tmp_path / "ref.mdlz").read_bytes() and not partial.exists()
    assert reference.total_bytes == len(out.read_bytes())
    with pytest.raises(KeyboardInterrupt):  # a stale directory with other settings: --force starts over
        compress_documents(tiny_loaded, MIX, settings=settings, batch=BatchSettings(3, 3, 1 << 16), output=out,
                           progress=stop_in_second_chunk)
    again = compress_documents(tiny_loaded, MIX, settings=settings, batch=batch, output=out, force=True)
    assert again.resumed_chunks == 0 and out.read_bytes() == (tmp_path / "ref.mdlz").read_bytes()
