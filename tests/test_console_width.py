"""Console output fits CONSOLE_WIDTH columns (issue 17), even with long model and corpus names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import TEXTS, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL_NAME = "tiny-gpt2-with-a-rather-long-descriptive-folder-name-step-01"
CORPUS_NAME = "a-corpus-file-with-a-long-descriptive-name-part-000001.jsonl"


def test_every_console_line_fits_120_columns_with_long_names(tmp_path, tiny_model_dir, monkeypatch):
    from mdlbench.console import CONSOLE_WIDTH

    assert len(MODEL_NAME) == len(CORPUS_NAME) == 60 and CONSOLE_WIDTH == 120
    monkeypatch.chdir(tmp_path)  # names as a user types them; a path longer than a line is printed whole
    model, corpus = Path(MODEL_NAME), Path(CORPUS_NAME)
    shutil.copytree(tiny_model_dir, model)
    # three short documents: too few to train the zstd dictionary, so it is skipped
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in (TEXTS[0], TEXTS[3], TEXTS[4])), "utf-8")
    Path("arch.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2,
                                             "n_positions": 64}))
    Path("cfg.json").write_text(json.dumps({"context_tokens": 32, "min_steps": 1}))
    out = Path("out")
    # Not --quiet: progress lines (a plain line per update off a terminal) and log lines are checked too.
    commands = [
        ["baselines", "-c", corpus, "--out", out],
        ["prequential", "-c", corpus, "--arch", "arch.json", "--config", "cfg.json", "--seeds", "0,1", "--out", out],
        ["compress", corpus, "-m", model, "--window", "32", "--threads", "1", "-o", "c.mdlz"],
        ["decompress", "c.mdlz", "-o", "restored.jsonl"],
        ["run", "-m", model, "-c", corpus, "--window", "32", "--out", out, "--baselines", "gzip-9,zstd-19-dict",
         "--explain", "--verify-coding", "all"],
        ["lens", "-m", model, "-c", corpus, "--window", "32", "--out", out, "--bits", "8,2", "--prune", "0.5"],
        ["ls", out],
    ]
    wide, printed = [], {}
    for argv in commands:
        code, stdout, stderr = run_cli(*argv)
        assert code == 0, stderr
        lines = (stdout + stderr).replace("\r", "\n").splitlines()
        assert lines, argv[0]
        printed[argv[0]] = stdout
        wide += [f"{argv[0]} ({len(line)}): {line}" for line in lines if len(line) > CONSOLE_WIDTH]
    assert not wide, "\n".join(wide)
    # nothing dropped: the skip reason is a note under the table, and a cut name keeps both of its ends
    assert "zstd-19-dict: skipped: too little data to train a dictionary" in printed["baselines"]
    assert "method model" in printed["compress"] and "3 documents" in printed["compress"]
    for command in ("run", "ls"):
        row = next(line for line in printed[command].splitlines() if "…" in line)
        model_cell = row.split()[1 if command == "ls" else 0]
        assert MODEL_NAME.startswith(model_cell.split("…")[0]) and MODEL_NAME.endswith(model_cell.split("…")[1])
