"""Run state, locks and the distributed context, directly (the job tests exercise them through whole runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from mdlbench import tables
from mdlbench.errors import InputError
from mdlbench.fsio import file_lock, is_locked, write_bytes_atomic
from mdlbench.run.distributed import DistContext, from_env
from mdlbench.run.state import SINGLE, RunState, Shard, is_being_scored, runs_in_progress


def test_shard_parse_and_ownership():
    shard = Shard.parse("1/3")
    assert (shard.index, shard.count, str(shard)) == (1, 3, "1/3")
    assert [k for k in range(9) if shard.owns(k)] == [1, 4, 7]
    assert all(SINGLE.owns(k) for k in range(5))
    for bad, match in (("3/3", "0 <= I < N"), ("-1/2", "0 <= I < N"), ("1", "expected I/N"), ("a/b", "expected I/N")):
        with pytest.raises(InputError, match=match):
            Shard.parse(bad)


def _docs(indices: list[int]) -> pa.Table:
    rows = [{"model": "m", "corpus": "c", "doc_index": i, "doc_id": f"d{i}", "domain": "", "n_bytes": i, "n_chars": i,
             "n_tokens": i, "code_length_bits": float(i), "first_token_bits": 0.0, "end_bits": 0.0,
             "tokenizer_roundtrip_ok": True, "n_replaced_bytes": 0} for i in indices]
    return tables.to_arrow("documents", rows)


def test_run_state_chunks_markers_and_resume_checks(tmp_path):
    state = RunState(tmp_path, "abc")
    meta = {"identity": {"x": 1}, "chunk_docs": 2, "batch_size": 4}
    assert state.ensure(meta) == meta and state.meta() == meta
    assert state.ensure(dict(meta)) == meta  # resuming the same run is fine
    with pytest.raises(InputError, match="progress of a different run"):
        state.ensure({**meta, "identity": {"x": 2}})
    with pytest.raises(InputError, match="chunk_docs=2, batch_size=4"):
        state.ensure({**meta, "batch_size": 8})
    # Chunks written out of order read back in chunk order, with their seconds summed.
    state.write_chunk(1, _docs([2, 3]), None, 1.5)
    state.write_chunk(0, _docs([0, 1]), None, 0.25)
    assert state.done_chunks() == [0, 1] and state.chunk_done(1) and not state.chunk_done(2)
    table, seconds = state.read_chunks()
    assert table.column("doc_index").to_pylist() == [0, 1, 2, 3] and seconds == 1.75
    assert state.read_chunks("tokens") == (None, 0.0)
    # Shard markers: which shards of N are done.
    state.mark_shard(Shard(0, 2), 4, "sha")
    assert state.missing_shards(2) == [1]
    state.mark_shard(Shard(1, 2), 4, "sha")
    assert state.missing_shards(2) == []
    assert [s.run_id for s, m in runs_in_progress(tmp_path)] == ["abc"]
    assert not state.is_complete()
    state.clear()
    assert not state.dir.exists() and runs_in_progress(tmp_path) == []


def test_atomic_write_leaves_old_or_new_never_a_mix(tmp_path):
    path = tmp_path / "f.bin"
    write_bytes_atomic(path, b"old")
    write_bytes_atomic(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file is left behind


def test_lock_excludes_another_process_and_dies_with_it(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom mdlbench.fsio import file_lock\n"
        f"with file_lock(__import__('pathlib').Path({str(lock)!r})):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_locked(lock)
        waited = []
        start = time.perf_counter()
        os.kill(holder.pid, signal.SIGKILL)  # the kernel releases a dead holder's lock
        with file_lock(lock, on_wait=lambda: waited.append(True)):
            assert time.perf_counter() - start < 30
        assert not is_locked(lock)
    finally:
        holder.kill()
        holder.wait()


def _hold(lock) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom mdlbench.fsio import file_lock\n"
        f"with file_lock(__import__('pathlib').Path({str(lock)!r})):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_run_is_being_scored_while_another_process_holds_a_shard_lock(tmp_path):
    """The assembler of a run keeps its progress folder while a process holds one of the run's shard locks (that
    process may be reading the chunks); the final lock, which the assembler itself holds, does not count."""
    state = RunState(tmp_path, "ab" * 8)
    assert not is_being_scored(state)
    for path, scored in ((state.final_lock_path(), False), (state.shard_lock_path(Shard(1, 2)), True)):
        holder = _hold(path)
        try:
            assert is_being_scored(state) is scored
            assert not is_being_scored(RunState(tmp_path, "cd" * 8))  # another run's locks are not this run's
        finally:
            holder.kill()
            holder.wait()
        assert not is_being_scored(state)


def test_the_shard_lock_this_process_holds_does_not_keep_its_own_progress(tmp_path):
    """A single-shard run assembles while it holds its shard lock: that lock, named as its own, does not count as
    another process scoring the run, while the same lock seen without the name does (a second open of a held
    flock is refused even inside the holding process)."""
    state = RunState(tmp_path, "ab" * 8)
    own = state.shard_lock_path(SINGLE)
    with file_lock(own):
        assert is_being_scored(state) and not is_being_scored(state, own)
        state.dir.mkdir(parents=True)
        state.clear_unless_scored()
        assert state.dir.exists()
        state.clear_unless_scored(own)
        assert not state.dir.exists()


def test_distributed_context_defaults_and_shards(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    single = from_env()
    assert single == DistContext() and not single.enabled and single.is_leader and single.shard == Shard(0, 1)
    single.barrier()  # a single process has nobody to wait for
    rank = DistContext(rank=2, world_size=3, local_rank=0)
    assert rank.enabled and not rank.is_leader and rank.shard == Shard(2, 3)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert from_env() == DistContext()
