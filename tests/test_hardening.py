"""Hardening, by class: bad input of every kind anywhere in a corpus is one line, exit 2 and a results folder left
byte-identical; OS errors are one line and exit 4; damage to committed files is detected, reported, recomputed and
removable; SIGINT and SIGTERM at any moment end the run cleanly; decompress trusts nothing it reads.

Cases are generated across the classes (a defect × a position in the corpus; a flag × a bad value) rather than
written one per message.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import build_tiny_gpt2, repack, run_cli

from mdlbench import tables

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
N_DOCS = 40


def _record(i: int) -> dict:
    return {"id": f"d{i}", "text": f"document {i}: " + "words and more words, " * (i % 7 + 1), "domain": "prose"}


def _jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


# Each defect: what record i becomes, and a word of the one-line message that must name it.
DEFECTS = {
    "invalid utf-8": (lambda i: b'{"id": "d%d", "text": "ok \xff bad"}' % i, "invalid UTF-8"),
    "duplicate id": (lambda i: _line({**_record(i), "id": "d1" if i == 0 else "d0"}), "duplicate document id"),
    "number as text": (lambda i: _line({**_record(i), "text": 5}), "is int, not text"),
    "null text": (lambda i: _line({**_record(i), "text": None}), "is null"),
    "lone surrogate": (lambda i: b'{"id": "d%d", "text": "a\\udc80b"}' % i, "lone surrogate"),
    "missing text": (lambda i: _line({"id": f"d{i}", "body": "x"}), "has no field 'text'"),
    "broken JSON": (lambda i: b'{"id": "d%d", "text": "unterminated' % i, "not valid JSON"),
    "not an object": (lambda i: b"[1, 2, 3]", "not an object"),
}


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under the folder (hidden ones too) -> the sha256 of its bytes, or "dir"."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def existing_results(tmp_path_factory) -> Path:
    """A results folder that already holds a finished run (of another corpus): bad input must not touch it."""
    root = tmp_path_factory.mktemp("existing")
    other = _jsonl(root / "other.jsonl", [_line(_record(i)) for i in range(3)])
    code, _, err = run_cli("run", "-m", "uniform-bytes", "-c", other, "--out", root / "results", "--quiet",
                           "--baselines", "gzip-9")
    assert code == 0, err
    return root / "results"


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("position", [0, N_DOCS // 2, N_DOCS - 1])
@pytest.mark.parametrize("defect", list(DEFECTS))
def test_a_bad_record_anywhere_is_one_line_and_leaves_the_results_as_they_were(
        tmp_path, tiny_model_dir, existing_results, defect, position):
    make, words = DEFECTS[defect]
    lines = [_line(_record(i)) for i in range(N_DOCS)]
    lines[position] = make(position)
    corpus = _jsonl(tmp_path / "corpus.jsonl", lines)
    for out in (tmp_path / "fresh", existing_results):
        before = snapshot(out)
        code, stdout, stderr = run_cli("run", "-m", tiny_model_dir, "-m", "uniform-bytes", "-c", corpus,
                                       "--id-field", "id", "--out", out, "--checkpoint-docs", "4")
        assert code == 2, stderr
        message = _one_error_line(stderr)
        assert words in message and str(corpus) in message and stdout == ""
        assert snapshot(out) == before  # byte-identical: nothing written, not even a lock or an empty folder


BAD_VALUES = [("window", 0), ("window", -4), ("stride", 0), ("batch_size", 0), ("bootstrap_samples", -1),
              ("max_docs", 0), ("max_bytes", 0), ("checkpoint_docs", 0), ("verify_coding", -1), ("seed", -1)]


@pytest.mark.parametrize("key,value", BAD_VALUES)
def test_a_bad_number_is_refused_from_a_flag_and_from_a_job_file(tmp_path, key, value):
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(0))])
    out = tmp_path / "out"
    flag = "--" + key.replace("_", "-")
    code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", corpus, flag, value, "--out", out)
    assert code == 2 and flag in _one_error_line(stderr)
    job = tmp_path / "job.toml"
    job.write_text(f'models = ["uniform-bytes"]\ncorpora = ["{corpus}"]\n[options]\n{key} = {value}\n')
    code, _, stderr = run_cli("run", job, "--out", out)
    assert code == 2 and flag in _one_error_line(stderr) and str(job) in stderr
    assert not out.exists()


@pytest.mark.parametrize("code,words", [("nosuch", "unknown parameter code 'nosuch'"),
                                        ("quantized-9", "bad width in parameter code 'quantized-9'")])
def test_a_bad_parameter_code_is_refused_before_scoring(tmp_path, tiny_model_dir, code, words):
    """Parameter codes are computed after scoring; a bad name must still fail first, for any model."""
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(i)) for i in range(2)])
    out = tmp_path / "out"
    for model in (tiny_model_dir, "uniform-bytes"):
        exit_code, _, stderr = run_cli("run", "-m", model, "-c", corpus, "--two-part", code, "--baselines", "none",
                                       "--out", out)
        assert exit_code == 2 and words in _one_error_line(stderr) and "--two-part" in stderr
        assert not out.exists()


def _sliding_window_model(folder: Path) -> Path:
    """A 1-layer Mistral that attends within 8 tokens, with GPT-2's tokenizer."""
    import torch
    from conftest import gpt2_tokenizer
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    MistralForCausalLM(MistralConfig(vocab_size=50257, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                     sliding_window=8, bos_token_id=50256, eos_token_id=50256)).save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return folder


def test_what_an_extra_would_refuse_is_refused_before_the_run_writes(tmp_path, tiny_model_dir):
    """--verify-coding and --lens run after the run's tables are committed; what they would refuse (a coding
    window wider than the model's sliding window; pruning, which is cross-fitted over two folds of documents, on a
    one-document corpus) fails first, with nothing written."""
    one = _jsonl(tmp_path / "one.jsonl", [_line(_record(0))])
    two = _jsonl(tmp_path / "two.jsonl", [_line(_record(i)) for i in range(2)])
    cases = [(_sliding_window_model(tmp_path / "mistral"), two, ["--window", "16", "--verify-coding", "1"],
              "sliding window of 8 tokens"), (tiny_model_dir, one, ["--lens"], "fall in one fold")]
    for model, corpus, flags, words in cases:
        out = tmp_path / "out"
        code, _, stderr = run_cli("run", "-m", model, "-c", corpus, *flags, "--baselines", "none", "--quiet",
                                  "--out", out)
        assert code == 2 and words in _one_error_line(stderr), stderr
        assert not out.exists()


def test_an_extra_that_fails_after_the_run_keeps_the_run(tmp_path, tiny_model_dir):
    """A streamed corpus is not read in advance, so the lens finds its one-fold corpus only after the run is
    committed: the run stays (status done, its tables readable), the error is one line and the exit code 2, and a
    rerun does not score the run again."""
    one = _jsonl(tmp_path / "one.jsonl", [_line(_record(0))])
    out = tmp_path / "out"
    args = ["run", "-m", tiny_model_dir, "-c", "hf:json:train", "--data-files", one, "--lens", "--baselines", "none",
            "--quiet", "--json", "--out", out]
    for attempt in range(2):
        code, stdout, stderr = run_cli(*args)
        error = " ".join(stderr[stderr.index("error:"):].split())  # the log wraps long lines to the console
        assert code == 2 and stderr.count("error:") == 1 and "fall in one fold" in error, stderr
        assert "the run's tables are committed" in error
        (line,) = stdout.splitlines()
        outcome = json.loads(line)
        assert outcome["status"] == ("done" if attempt == 0 else "reused") and outcome["n_docs"] == 1
        assert "fall in one fold" in outcome["message"]
    assert len(pd.read_parquet(out / "runs")) == 1 and len(pd.read_parquet(out / "documents")) == 1
    # In a job of several runs, the others go on and the exit code is 3, as for a failed run.
    code, stdout, _ = run_cli("run", "-m", tiny_model_dir, "-m", "uniform-bytes", "-c", "hf:json:train",
                              "--data-files", one, "--lens", "--baselines", "none", "--quiet", "--json", "--out",
                              tmp_path / "two")
    assert code == 3 and [json.loads(x)["status"] for x in stdout.splitlines()] == ["done", "done"]


@pytest.mark.parametrize("corpus_lines,extra", [([], []), ([_line(_record(0))], ["--max-bytes", "3"])])
def test_a_corpus_without_documents_is_refused(tmp_path, corpus_lines, extra):
    corpus = _jsonl(tmp_path / "c.jsonl", corpus_lines)
    code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", corpus, *extra, "--out", tmp_path / "out")
    assert code == 2 and "no documents" in _one_error_line(stderr)
    assert not (tmp_path / "out").exists()


def _broken_models(root: Path, good: Path) -> dict[str, Path]:
    truncated = root / "truncated"
    shutil.copytree(good, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    pickled = root / "pickled"
    shutil.copytree(good, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    # A pickle that torch.load(weights_only=True) refuses: it names a global that is not a tensor type.
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": types.SimpleNamespace(a=1)}))
    return {"truncated": truncated, "pickled": pickled}


def test_damaged_or_unsafe_weights_are_one_line_and_nothing_written(tmp_path, tiny_model_dir):
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(i)) for i in range(3)])
    for name, model in _broken_models(tmp_path, tiny_model_dir).items():
        out = tmp_path / f"out-{name}"
        code, _, stderr = run_cli("run", "-m", model, "-c", corpus, "--out", out, "--quiet")
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert code == 2 and len(errors) == 1 and "could not be loaded" in errors[0], (name, stderr)
        assert "Traceback" not in stderr and str(model) in errors[0]
        assert not out.exists(), name


def test_a_model_folder_without_tokenizer_files_is_refused(tmp_path, tiny_model_dir):
    """transformers builds an empty tokenizer for such a folder; every text would code as zero tokens."""
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(i)) for i in range(2)])
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("tokenizer*", "vocab.json", "merges.txt",
                                                                        "special_tokens_map.json"))
    code, _, stderr = run_cli("run", "-m", bare, "-c", corpus, "--out", tmp_path / "out", "--quiet")
    message = _one_error_line(stderr)
    assert code == 2 and "tokenizer is empty" in message and str(bare) in message and "save_pretrained" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a folder this user cannot write")
def test_a_results_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(0))])
    code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", corpus, "--out", "/proc/sys/mdlbench-results")
    message = _one_error_line(stderr)
    assert code == 4 and message.startswith("mdlbench run: error: /proc/sys: cannot write here")
    assert "Traceback" not in stderr


def test_the_results_folder_must_be_a_folder(tmp_path):
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(0))])
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    for out, words in ((a_file, "is a file"), (a_file / "sub" / "dir", "which is a file")):
        code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", corpus, "--out", out)
        assert code == 2 and words in _one_error_line(stderr)
    assert a_file.read_text() == "keep me"
    code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", corpus, "--out", "/proc/mdlbench-results")
    assert code == 4 and "/proc/mdlbench-results" in _one_error_line(stderr)


@pytest.fixture()
def small_disk(tmp_path):
    """A real file system that fills up: a tmpfs of 192 KiB (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_one_line_exit_4_and_the_run_resumes(tmp_path, tiny_model_dir, small_disk):
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(i)) for i in range(N_DOCS)])
    args = ["run", "-m", tiny_model_dir, "-c", corpus, "--window", "16", "--per-token", "--checkpoint-docs", "4",
            "--baselines", "none", "--two-part", "none", "--bootstrap-samples", "50", "--quiet"]
    code, _, stderr = run_cli(*args, "--out", small_disk / "results")
    assert code == 4, stderr
    message = _one_error_line(stderr)
    assert "No space left on device" in message and str(small_disk / "results") in message
    assert "rerun" in message and not (small_disk / "results" / "runs").exists()  # nothing committed
    done = list((small_disk / "results" / ".progress").rglob("chunk-*.parquet"))
    assert done  # the chunks that fit are kept...
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    code, _, stderr = run_cli(*args, "--out", small_disk / "results")
    assert code == 0, stderr  # ...and the rerun resumes from them
    code, _, _ = run_cli(*args, "--out", tmp_path / "reference")
    resumed = tables.read_table(small_disk / "results", "documents").sort_values("doc_index")
    reference = tables.read_table(tmp_path / "reference", "documents").sort_values("doc_index")
    assert resumed["code_length_bits"].tolist() == reference["code_length_bits"].tolist()


def _uniform_run(corpus: Path, out: Path) -> str:
    code, stdout, err = run_cli("run", "-m", "uniform-bytes", "-c", corpus, "--out", out, "--quiet", "--baselines",
                                "none", "--json")
    assert code == 0, err
    return json.loads(stdout)["run_id"]


def test_damaged_results_are_detected_recomputed_and_removable(tmp_path):
    out = tmp_path / "results"
    corpora = [_jsonl(tmp_path / f"c{i}.jsonl", [_line(_record(j)) for j in range(i + 2)]) for i in range(3)]
    run_a, run_b = _uniform_run(corpora[0], out), _uniform_run(corpora[1], out)
    # A truncated file: its size no longer matches the record made at commit.
    docs_a = tables.partition_dir(out, "documents", run_a) / tables.PART_FILE
    docs_a.write_bytes(docs_a.read_bytes()[:-10])
    code, stdout, _ = run_cli("ls", out)
    assert code == 0 and f"{run_a}" in stdout and "damaged (documents)" in stdout
    # A valid file of the same size with another number in it: only the sha256 shows it.
    summary_b = tables.partition_dir(out, "summary", run_b) / tables.PART_FILE
    size = summary_b.stat().st_size
    original = pq.read_table(summary_b)
    i = original.schema.get_field_index("bits_per_byte")
    pq.write_table(original.set_column(i, "bits_per_byte", pa.array([7.0])), summary_b)
    assert summary_b.stat().st_size == size
    _, stdout, _ = run_cli("ls", out)
    assert [line for line in stdout.splitlines() if run_b in line][0].split()[3] == "complete"
    _, stdout, _ = run_cli("ls", out, "--verify")
    assert "damaged (summary)" in [line for line in stdout.splitlines() if run_b in line][0]
    code, stdout, _ = run_cli("verify", out)
    assert code == 3 and stdout.count("damaged:") == 2 and "gc --damaged" in stdout
    # A damaged runs partition of one run never blocks or mislabels another run.
    runs_a = tables.partition_dir(out, "runs", run_a) / tables.PART_FILE
    runs_a.write_bytes(b"garbage")
    run_c = _uniform_run(corpora[2], out)
    assert tables.partition_status(out, "runs", run_c, verify_hash=True) == "ok"
    # A rerun recomputes a damaged run (it is not "complete"), and gc --damaged removes what is left damaged.
    code, stdout, stderr = run_cli("run", "-m", "uniform-bytes", "-c", corpora[0], "--out", out, "--baselines",
                                   "none", "--json", "--quiet")
    assert code == 0 and json.loads(stdout)["status"] == "done", stderr
    assert tables.partition_status(out, "documents", run_a, verify_hash=True) == "ok"
    code, stdout, _ = run_cli("gc", out, "--damaged")
    assert code == 0 and str(tables.partition_dir(out, "summary", run_b)) in stdout
    code, stdout, _ = run_cli("verify", out)
    assert code == 0 and "damaged" not in stdout


def test_a_kill_after_the_commit_leaves_no_ghost(tmp_path):
    out = tmp_path / "results"
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(j)) for j in range(3)])
    run = _uniform_run(corpus, out)
    ghost = out / ".progress" / run
    ghost.mkdir(parents=True)  # what a kill -9 just after the COMMITTED marker leaves behind
    (ghost / "run.json").write_text(json.dumps({"run_row": {"model": "uniform-bytes"}, "corpus": "c"}))
    _, stdout, _ = run_cli("ls", out)
    assert sum(run in line for line in stdout.splitlines()) == 1  # listed once, as complete
    code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", corpus, "--out", out, "--baselines", "none")
    assert code == 0 and "removing the progress folder" in stderr and not ghost.exists()


def _consistent(out: Path) -> None:
    """Nothing half-committed: every run that readers see has all of its core tables, and no table has rows of a
    run that readers do not see."""
    runs = set(tables.partitions(out, "runs"))
    for table in ("documents", "summary", "context_curve"):
        assert set(tables.partitions(out, table)) == runs, table


def test_a_signal_during_an_import_waits_for_the_import_to_finish(tmp_path):
    """SIGINT while a module's body runs (as while transformers or torch is being imported) is not raised there,
    where it would surface as another error or abort the process from native code: the import finishes, then
    Interrupted is raised as usual."""
    (tmp_path / "slow_module.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.3)\nFINISHED = True\n")
    script = (
        "import sys, time\nsys.path.insert(0, sys.argv[1])\nfrom mdlbench import signals\n"
        "from mdlbench.errors import Interrupted\nsignals.install()\n"
        "try:\n    import slow_module\n    print('imported', slow_module.FINISHED, flush=True)\n"
        "    time.sleep(5)\n    print('not interrupted')\n"
        "except Interrupted as exc:\n    print('interrupted', exc.signum)\n")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=ENV, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["imported", "True", "interrupted", str(int(signal.SIGINT))]


def test_sigint_and_sigterm_at_any_moment_end_cleanly_and_resume(tmp_path, tiny_model_dir):
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(i)) for i in range(24)])
    args = [sys.executable, "-m", "mdlbench", "run", "-m", str(tiny_model_dir), "-c", str(corpus), "--window", "16",
            "--checkpoint-docs", "4", "--per-token", "--baselines", "gzip-9", "--two-part", "naive",
            "--out", str(tmp_path / "out")]
    # (signal, when): a delay in seconds, or the first stderr line containing a word (model load, scoring).
    moments = [(signal.SIGTERM, 0.4), (signal.SIGINT, "loading model"), (signal.SIGTERM, "tok/s"),
               (signal.SIGINT, 1.5)]
    interrupted = 0
    for signum, when in moments:
        proc = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if isinstance(when, float):
            time.sleep(when)
        else:
            for line in proc.stderr:
                if when in line:
                    break
        sent = time.perf_counter()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue  # it finished before the signal came: nothing to check at this moment
        if proc.returncode == -signum:
            # The signal came while the interpreter was still starting, before mdlbench installed its handlers:
            # the default action ended it before it could write anything.
            _consistent(tmp_path / "out")
            continue
        assert proc.returncode == 128 + signum, (signum, when, proc.returncode, err)
        assert time.perf_counter() - sent < 10 and "interrupted" in err and "Traceback" not in err
        interrupted += 1
        _consistent(tmp_path / "out")
    assert interrupted >= 3
    code, _, err = run_cli(*args[3:])  # the resume, in process: what an interrupt left must be picked up
    assert code == 0, err
    _consistent(tmp_path / "out")
    code, _, _ = run_cli(*args[3:-1], tmp_path / "reference")
    got = tables.read_table(tmp_path / "out", "documents").sort_values("doc_index")
    want = tables.read_table(tmp_path / "reference", "documents").sort_values("doc_index")
    assert got["code_length_bits"].tolist() == want["code_length_bits"].tolist()


def test_decompress_loads_only_the_model_that_compressed_the_file(tmp_path, tiny_model_dir):
    from mdlbench.coding.container import unpack

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    src = tmp_path / "doc.txt"
    src.write_text("Compressed with one model, decoded only with the same one.")
    assert run_cli("compress", src, "--model", model, "--threads", "1", "--quiet")[0] == 0
    packed = tmp_path / "doc.txt.mdlz"
    code, _, err = run_cli("decompress", packed, "-o", tmp_path / "ok.txt", "--quiet")
    assert code == 0 and (tmp_path / "ok.txt").read_text() == src.read_text(), err
    build_tiny_gpt2(model, seed=1)  # other weights under the same path
    code, _, err = run_cli("decompress", packed, "-o", tmp_path / "bad.txt", "--quiet")
    assert code == 2 and "not the" in _one_error_line(err) and not (tmp_path / "bad.txt").exists()
    # A file that names a hub id: refused without --model, before anything is fetched or loaded.
    header = {k: v for k, v in unpack(packed.read_bytes()).header.items() if not k.startswith(("index_", "payload"))}
    header["model"] = {**header["model"], "spec": "some-org/some-model", "format": "hub"}
    forged = tmp_path / "hub.mdlz"
    forged.write_bytes(repack(packed.read_bytes(), header=header))
    code, _, err = run_cli("decompress", forged, "-o", tmp_path / "hub.txt", "--quiet")
    assert code == 2 and "pass --model" in _one_error_line(err) and not (tmp_path / "hub.txt").exists()


def test_ls_and_report_still_read_a_folder_with_pre_integrity_partitions(tmp_path):
    """Partitions written before integrity records existed (schema < 3) are readable, and reported unverified."""
    out = tmp_path / "results"
    run = _uniform_run(_jsonl(tmp_path / "c.jsonl", [_line(_record(0))]), out)
    for table in ("runs", "documents", "summary"):
        (tables.partition_dir(out, table, run) / tables.INTEGRITY_FILE).unlink()
    assert tables.partition_status(out, "runs", run) == "unverified"
    assert len(pd.read_parquet(out / "runs")) == 1 and len(tables.read_table(out, "documents")) == 1
    code, stdout, _ = run_cli("verify", out)
    assert code == 0 and "3 partition(s) written before integrity records existed" in stdout


# Each (key, value) of a prequential config that is the wrong type or out of range, and a word of what is accepted.
BAD_PREQUENTIAL = [
    ("learning_rate", "abc", "expected a number"), ("learning_rate", float("nan"), "finite"),
    ("learning_rate", float("inf"), "finite"), ("learning_rate", -1e-3, ">= 0"),
    ("context_tokens", "64", "expected an integer"), ("context_tokens", 64.0, "expected an integer"),
    ("context_tokens", 0, ">= 1"), ("epochs", 2.5, "expected an integer"), ("epochs", True, "expected an integer"),
    ("adam_beta1", 1.5, "< 1"), ("adam_beta2", 1.0, "< 1"), ("adam_beta1", -0.1, ">= 0"),
    ("batch_sequences", 0, ">= 1"), ("min_steps", -1, ">= 0"), ("min_block_tokens", 0, ">= 1"),
    ("weight_decay", -0.5, ">= 0"), ("max_grad_norm", None, "expected a number"), ("estimator", 3, "one of"),
    ("block_fractions", "abc", "a list"), ("block_fractions", [0.5, float("nan"), 1.0], "strictly increase"),
]


@pytest.mark.parametrize("key,value,words", BAD_PREQUENTIAL)
def test_a_bad_prequential_setting_is_one_line_naming_the_key_and_nothing_written(tmp_path, key, value, words):
    from mdlbench.errors import InputError
    from mdlbench.prequential.estimators import PrequentialConfig

    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(i)) for i in range(3)])
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({key: value}))  # NaN and Infinity as Python's json writes them
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("prequential", "-c", corpus, "--config", settings, "--seeds", "0", "--out", out)
    message = _one_error_line(stderr)
    assert code == 2 and key in message and str(settings) in message and words in message and stdout == ""
    assert not out.exists()
    # The same check for a mapping given to the library (the driver, the architecture grid) and for the dataclass.
    with pytest.raises(InputError, match=key):
        PrequentialConfig.from_dict({key: value})
    with pytest.raises(InputError, match=key):
        PrequentialConfig(**{key: tuple(value) if isinstance(value, list) else value})


def test_good_prequential_settings_of_every_type_are_accepted():
    from mdlbench.prequential.estimators import PrequentialConfig

    # An int where a float is expected, the closed ends of the ranges, a list for a tuple, null for an optional.
    config = PrequentialConfig.from_dict({"learning_rate": 1, "adam_beta1": 0, "max_grad_norm": 0, "epochs": 1,
                                          "min_steps": 0, "block_fractions": [0.5, 1], "mode": None})
    assert config.learning_rate == 1 and config.block_fractions == (0.5, 1.0) and config.resolved_mode == "restart"


@pytest.mark.parametrize("command", [["run", "-m", "uniform-bytes"], ["baselines", "--names", "gzip-9"],
                                     ["prequential", "--seeds", "0"], ["lens", "-m", "uniform-bytes"]])
def test_every_command_that_writes_results_refuses_a_file_as_the_results_folder(tmp_path, command):
    corpus = _jsonl(tmp_path / "c.jsonl", [_line(_record(0))])
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    for out, words in ((a_file, "is a file"), (a_file / "sub" / "dir", "which is a file")):
        code, stdout, stderr = run_cli(*command, "-c", corpus, "--out", out)
        assert code == 2 and words in _one_error_line(stderr) and str(out) in stderr and stdout == "", stderr
    assert a_file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "file.txt"]


def _folder_corpus(root: Path) -> Path:
    (root / "corpus" / "a").mkdir(parents=True)
    (root / "corpus" / "a" / "x.txt").write_text("one document")
    (root / "corpus" / "b.txt").write_text("another document")
    return root / "corpus"


# A path below a corpus folder that the OS cannot read, even for root: write-only files of /proc/sys.
ROOT_UNREADABLE = Path("/proc/sys/vm/compact_memory")


def _unreadable() -> Path:
    try:
        ROOT_UNREADABLE.read_bytes()
    except PermissionError:
        return ROOT_UNREADABLE
    pytest.skip(f"{ROOT_UNREADABLE} is readable here (or absent): no file the OS refuses to read")


@pytest.mark.parametrize("command", [["run", "-m", "uniform-bytes"], ["baselines", "--names", "gzip-9"],
                                     ["prequential", "--seeds", "0"]])
@pytest.mark.parametrize("defect", ["dangling link", "link loop", "unreadable file"])
def test_a_corpus_file_that_cannot_be_read_is_bad_input_not_dropped(tmp_path, existing_results, command, defect):
    corpus = _folder_corpus(tmp_path)
    bad = corpus / "a" / "z.txt"
    if defect == "dangling link":
        bad.symlink_to(tmp_path / "nonexistent")
        words = "points nowhere"
    elif defect == "link loop":
        bad.symlink_to(bad)
        words = "points nowhere"
    else:
        bad.symlink_to(_unreadable())
        words = "cannot read (Permission denied); fix its permissions or remove it from the corpus"
    for out in (tmp_path / "fresh", existing_results):
        before = snapshot(out)
        code, stdout, stderr = run_cli(*command, "-c", corpus, "--out", out)
        message = _one_error_line(stderr)
        assert code == 2 and str(bad) in message and words in message and stdout == "", stderr
        assert snapshot(out) == before
    code, _, stderr = run_cli("manifest", "create", corpus, "--name", "pinned", "--out-dir", tmp_path / "manifests")
    assert code == 2 and str(bad) in _one_error_line(stderr) and not (tmp_path / "manifests").exists()


def test_a_corpus_file_given_directly_that_cannot_be_read_is_bad_input(tmp_path):
    for name in ("doc.txt", "doc.jsonl"):
        link = tmp_path / name
        link.symlink_to(_unreadable())
        code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", link, "--out", tmp_path / "out")
        assert code == 2 and "cannot read (Permission denied)" in _one_error_line(stderr)
        assert not (tmp_path / "out").exists()
