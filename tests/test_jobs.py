"""Scheduled jobs: strict job files, idempotent re-runs, kill -9 and resume, concurrent writers, torchrun ranks,
shards + merge — all with real subprocesses, compared against an uninterrupted single-process run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

from mdlbench.errors import InputError
from mdlbench.run.jobs import load_job

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
REPO = Path(__file__).resolve().parent.parent
N_DOCS = 24

# Runs mdlbench in-process after wrapping pyarrow.parquet.write_table so that the Nth call writes a truncated file
# and SIGKILLs the process: a kill -9 in the middle of a Parquet write, on demand.
KILLER = """
import os, signal, sys
import pyarrow.parquet as pq
n = int(os.environ["KILL_AT_WRITE"]); calls = [0]; original = pq.write_table
def write_table(table, where, *args, **kwargs):
    calls[0] += 1
    if calls[0] == n:
        with open(where, "wb") as f:
            f.write(b"PAR1" + bytes(64))
        os.kill(os.getpid(), signal.SIGKILL)
    return original(table, where, *args, **kwargs)
pq.write_table = write_table
from mdlbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    rng = random.Random(0)
    words = ["the", "of", "and", "to", "in", "compression", "model", "bits", "byte", "code", "length",
             "prequential", "数据", "🙂"]
    with path.open("w", encoding="utf-8") as f:
        for i in range(N_DOCS):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 60)))
            f.write(json.dumps({"id": f"doc{i}", "text": text}, ensure_ascii=False) + "\n")
    return path


def _job(tmp_path: Path, model_dir: Path, corpus: Path, **options) -> Path:
    # Baselines and two-part codes have their own tests; here they would only slow every subprocess down.
    opts = {"window": 16, "stride": 8, "checkpoint_docs": 4, "batch_size": 4, "id_field": "id",
            "bootstrap_samples": 200, "per_token": True, "baselines": ["none"], "two_part": ["none"], **options}
    lines = [f'models = ["{model_dir}", "uniform-bytes"]', f'corpora = ["{corpus}"]', "", "[options]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in opts.items()]
    path = tmp_path / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(*args: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "mdlbench", *args]
    if not wait:
        return subprocess.Popen(cmd, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=600)


MEASURED = ["doc_id", "n_bytes", "n_chars", "n_tokens", "code_length_bits", "first_token_bits", "end_bits",
            "tokenizer_roundtrip_ok"]


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    docs = pd.read_parquet(out / "documents").astype({"run_id": str}).sort_values(["run_id", "doc_index"])
    summary = pd.read_parquet(out / "summary").astype({"run_id": str}).sort_values("run_id")
    tokens = pd.read_parquet(out / "tokens").astype({"run_id": str}).sort_values(["run_id", "doc_index",
                                                                                   "token_index"])
    return docs.reset_index(drop=True), summary.reset_index(drop=True), tokens.reset_index(drop=True)


def _assert_same_results(a: Path, b: Path) -> None:
    docs_a, sum_a, tok_a = _tables(a)
    docs_b, sum_b, tok_b = _tables(b)
    assert list(docs_a["run_id"].unique()) == list(docs_b["run_id"].unique())
    pd.testing.assert_frame_equal(docs_a[["run_id", "doc_index", *MEASURED]], docs_b[["run_id", "doc_index",
                                                                                      *MEASURED]])
    cols = ["run_id", "n_docs", "n_bytes", "n_tokens", "code_length_bits", "bits_per_byte", "bpb_ci_low",
            "bpb_ci_high"]
    pd.testing.assert_frame_equal(sum_a[cols], sum_b[cols])
    pd.testing.assert_frame_equal(tok_a, tok_b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir, corpus) -> tuple[Path, Path]:
    """An uninterrupted single-process run of the job: what every other way of running it must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    job = _job(tmp, tiny_model_dir, corpus)
    r = _run("run", str(job), "--out", str(tmp / "out"), "--quiet")
    assert r.returncode == 0, r.stderr
    return job, tmp / "out"


def test_rerun_is_a_noop_and_force_recomputes(reference):
    job, out = reference
    before = pd.read_parquet(out / "runs")
    r = _run("run", str(job), "--out", str(out), "--json")
    assert r.returncode == 0
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["status"] for x in lines] == ["reused", "reused"] and "already complete" in r.stderr
    assert pd.read_parquet(out / "runs")["finished_at"].tolist() == before["finished_at"].tolist()
    ls = _run("ls", str(out))
    assert ls.returncode == 0 and ls.stdout.count("complete") == 2


@pytest.mark.parametrize("kill_at_write", [1, 9])  # the first Parquet write, and one late in the job
def test_kill_9_during_parquet_writes_then_resume_equals_uninterrupted(tmp_path, reference, kill_at_write):
    job, ref_out = reference
    out = tmp_path / "out"
    env = {**ENV, "KILL_AT_WRITE": str(kill_at_write)}
    killed = subprocess.run([sys.executable, "-c", KILLER, "run", str(job), "--out", str(out), "--quiet"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    code, _, err = run_cli("run", str(job), "--out", str(out), "--quiet")  # the resume, in process
    assert code == 0, err
    _assert_same_results(out, ref_out)
    assert not list(out.rglob(".*.tmp")) and not list((out / ".progress").glob("*"))


def test_kill_9_at_random_times_then_resume_equals_uninterrupted(tmp_path, reference):
    job, ref_out = reference
    out = tmp_path / "out"
    rng = random.Random(1)
    for _ in range(2):
        proc = _run("run", str(job), "--out", str(out), "--quiet", wait=False)
        time.sleep(rng.uniform(3.0, 9.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    code, _, err = run_cli("run", str(job), "--out", str(out), "--quiet")  # the resume, in process
    assert code == 0, err
    _assert_same_results(out, ref_out)


def test_concurrent_writers_do_not_corrupt(tmp_path, reference):
    job, ref_out = reference
    out = tmp_path / "out"
    procs = [_run("run", str(job), "--out", str(out), "--quiet", wait=False) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in results]
    _assert_same_results(out, ref_out)
    assert len(pd.read_parquet(out / "runs")) == 2  # each run once, nothing duplicated


def test_concurrent_force_reruns_do_not_take_each_others_progress(tmp_path, reference):
    """Two `--force` reruns of a finished job at once: each clears and rescores the run under its shard lock, and
    the one that waits cannot clear the other's progress between that one's scoring and its assembly."""
    job, ref_out = reference
    out = tmp_path / "out"
    assert _run("run", str(job), "--out", str(out), "--quiet").returncode == 0
    procs = [_run("run", str(job), "--out", str(out), "--quiet", "--force", wait=False) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in results]
    _assert_same_results(out, ref_out)
    assert len(pd.read_parquet(out / "runs")) == 2
    assert not any((out / ".progress").iterdir())


def test_shards_then_merge_equal_one_process(tmp_path, reference):
    job, ref_out = reference
    out = tmp_path / "out"
    first = _run("run", str(job), "--out", str(out), "--shard", "1/2", "--json", "--quiet")
    assert first.returncode == 0, first.stderr
    assert {json.loads(x)["status"] for x in first.stdout.splitlines()} == {"shard-done"}
    early = _run("merge", str(out))
    assert early.returncode == 2 and "shards [0] of 2 are not done" in early.stderr
    assert not (out / "runs").exists()
    second = _run("run", str(job), "--out", str(out), "--shard", "0/2", "--quiet")
    assert second.returncode == 0, second.stderr
    if not (out / "runs").exists():  # the last shard to finish may leave the assembly to merge
        assert _run("merge", str(out)).returncode == 0
    _assert_same_results(out, ref_out)


def test_torchrun_two_ranks_equal_one_process(tmp_path, reference):
    job, ref_out = reference
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "mdlbench", "run", str(job), "--out", str(out), "--quiet"], env=ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_results(out, ref_out)


def test_gc_removes_incomplete_leftovers(tmp_path, reference):
    job, _ = reference
    out = tmp_path / "out"
    env = {**ENV, "KILL_AT_WRITE": "2"}
    subprocess.run([sys.executable, "-c", KILLER, "run", str(job), "--out", str(out), "--quiet"], env=env,
                   capture_output=True, timeout=600)
    assert any((out / ".progress").iterdir())
    assert "incomplete (resumable)" in _run("ls", str(out)).stdout
    r = _run("gc", str(out))
    assert r.returncode == 0 and "removed" in r.stdout
    assert not any((out / ".progress").iterdir()) and not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize("text,match", [
    ('models = ["a"]\ncorpora = ["b"]\nmodle = 1\n', "unknown key 'modle'; did you mean 'models'"),
    ('models = ["a"]\ncorpora = ["b"]\n[options]\nwindw = 8\n', "\\[options\\]: unknown key 'windw'; did you "
                                                                  "mean 'window'"),
    ('models = ["a"]\ncorpora = ["b"]\n[options]\nwindow = "big"\n', "window = 'big' has the wrong type"),
    ('models = ["a"]\ncorpora = ["b"]\n[options]\nfirst_token = "eos"\n', "one of 'bos', 'uniform'"),
    ('models = "a"\ncorpora = ["b"]\n', r"'models' must be a non-empty list of specs .*e\.g\. models = \[.default.\]"),
    ('models = ["a"]\ncorpora = ["b"]\n[options]\nforce = true\n', "unknown key 'force'"),
    ("models = [\n", "not valid TOML"),
])
def test_invalid_job_files_name_the_key_and_the_fix(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        load_job(path)


def test_invalid_job_file_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('models = ["a"]\ncorpora = ["b"]\n[options]\nwindw = 8\n')
    r = _run("run", str(path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "did you mean 'window'" in r.stderr
    assert not (tmp_path / "o").exists()


def test_job_examples_are_valid_and_flags_conflict_with_jobs(tmp_path):
    for path in sorted((REPO / "jobs").glob("*.toml")):
        job = load_job(path)
        assert job.models and job.corpora
    r = _run("run", str(REPO / "jobs" / "tiny-ci.toml"), "--window", "8", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--window: with a job file" in r.stderr
    r = _run("run", str(REPO / "jobs" / "tiny-ci.toml"), "--out", str(tmp_path / "o"), "--json")
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert json.loads(line)["bits_per_byte"] == 8.0 and json.loads(line)["n_docs"] == 8


def test_failed_run_exit_code_3_others_complete(tmp_path, corpus):
    bad_model = tmp_path / "broken"
    bad_model.mkdir()
    (bad_model / "config.json").write_text("{}")
    (bad_model / "model.safetensors").write_bytes(b"not a model")
    path = tmp_path / "job.toml"
    path.write_text(f'models = ["uniform-bytes", "{bad_model}"]\ncorpora = ["{corpus}"]\n'
                    '[options]\nbaselines = ["none"]\n')
    r = _run("run", str(path), "--out", str(tmp_path / "o"), "--json", "--quiet")
    assert r.returncode == 3, r.stderr
    statuses = [json.loads(x)["status"] for x in r.stdout.splitlines()]
    assert statuses == ["done", "failed"]


def test_window_sweep_is_one_run_per_value(tmp_path, tiny_model_dir, corpus):
    path = tmp_path / "sweep.toml"
    path.write_text(f'models = ["{tiny_model_dir}"]\ncorpora = ["{corpus}"]\n[options]\nwindow = [8, 16, 32]\n'
                    'stride = [4, 8, 32]\nbaselines = ["none"]\ntwo_part = ["none"]\nbootstrap_samples = 0\n')
    assert [(v.window, v.stride) for v in load_job(path).variants] == [(8, 4), (16, 8), (32, 32)]
    code, stdout, err = run_cli("run", str(path), "--out", str(tmp_path / "o"), "--quiet", "--json")
    assert code == 0, err
    assert [json.loads(line)["status"] for line in stdout.splitlines()] == ["done"] * 3
    runs = pd.read_parquet(tmp_path / "o" / "runs")
    assert sorted(zip(runs["window"], runs["stride"], strict=True)) == [(8, 4), (16, 8), (32, 32)]
    path.write_text(f'models = ["{tiny_model_dir}"]\ncorpora = ["{corpus}"]\n[options]\nwindow = [8, 16]\n'
                    'stride = [4, 8, 16]\n')
    with pytest.raises(InputError, match=r"window \(2 values\) and stride \(3 values\) must be"):
        load_job(path)
    path.write_text(f'models = ["{tiny_model_dir}"]\ncorpora = ["{corpus}"]\n[options]\nwindow = [8, 0]\n')
    with pytest.raises(InputError, match="--window 0: must be >= 1"):
        load_job(path)
