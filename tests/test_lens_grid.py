"""Width against depth: grid files, exact parameter matching, and one prequential run per cell with its shape."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoModelForCausalLM

from mdlbench.errors import InputError
from mdlbench.lens import grid
from mdlbench.mdl.params import count_parameters
from mdlbench.prequential.estimators import _hf_config, resolve_arch
from mdlbench.prequential.vocab import byte_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_nearest_width_by_hand():
    assert grid.nearest_width(lambda d: d * d, 1000, 8) == 32  # 1024 is nearer than 576 (24) or 1600 (40)
    assert grid.nearest_width(lambda d: d * d, 1, 8) == 8  # never below one step
    assert grid.nearest_width(lambda d: 10 * d, 100, 4) == 8  # 80 and 120 tie: the narrower


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, match", [
    ("n_layer = [1]\nffn_ratio = [1]\nwidth = 3\n", r"unknown key\(s\) 'width'"),
    ("ffn_ratio = [1]\n", "n_layer is required"),
    ("n_layer = [0]\nffn_ratio = [1]\n", "n_layer must be a non-empty list of positive integers"),
    ("n_layer = [1]\nffn_ratio = [1]\nmatch_params = 100\nd_model = 64\n", "not both"),
    ("n_layer = [1]\nffn_ratio = [1\n", "not valid TOML"),
])
def test_bad_grid_files_fail_with_one_line(tmp_path, text, match):
    with pytest.raises(InputError, match=match):
        grid.load_grid(_write(tmp_path, text))


def test_matched_cells_have_exact_counts_and_the_nearest_width(tmp_path):
    g = grid.load_grid(_write(tmp_path, "n_layer = [1, 3]\nffn_ratio = [2.5]\nmatch_params = 60000\n"))
    cells = grid.grid_cells(g, vocab_size=257, context_tokens=64, start_id=256)
    assert [(c.n_layer, c.ffn_ratio) for c in cells] == [(1, 2.5), (3, 2.5)]
    assert cells[0].d_model > cells[1].d_model  # deeper at equal size: narrower
    for c in cells:
        assert c.d_model % 4 == 0 and c.d_ff == round(c.ffn_ratio * c.d_model)  # GPT-2, 4 heads
        built = AutoModelForCausalLM.from_config(_hf_config(resolve_arch(c.arch, vocab_size=257, context_tokens=64,
                                                                         start_id=256)))
        assert count_parameters(built).params_total == c.n_params  # the count is the built model's
        assert built.config.n_positions == 64 and built.config.n_inner == c.d_ff
        for other in (c.d_model - 4, c.d_model + 4):  # no neighbouring width is closer to the target
            if other > 0:
                n = grid.count_arch_params(grid.cell_arch(c.arch, c.n_layer, other, c.ffn_ratio),
                                           vocab_size=257, context_tokens=64, start_id=256)
                assert abs(n - 60000) >= abs(c.n_params - 60000)
    # hand count of the widest cell's shape: GPT-2, tied head, V = 257, 64 positions
    c = cells[0]
    d, f = c.d_model, c.d_ff
    per_layer = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
    assert c.n_params == (257 + 64) * d + per_layer + 2 * d


def test_grid_runs_one_prequential_run_per_cell_and_records_the_shape(tmp_path, capsys):
    from mdlbench.cli import main

    corpus = tmp_path / "c.jsonl"
    with corpus.open("w") as f:
        for i in range(6):
            f.write(json.dumps({"text": f"line {i}: " + "abcde fghij " * (3 + i)}) + "\n")
    path = _write(tmp_path, "n_layer = [1, 2]\nffn_ratio = [1, 4]\nd_model = 16\n[arch]\nmodel_type = \"gpt2\"\n"
                            "n_head = 2\nn_positions = 32\n")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"context_tokens": 32, "epochs": 1, "min_steps": 1}))
    tok = tmp_path / "tok"
    byte_tokenizer().save_pretrained(tok)
    out = tmp_path / "out"
    argv = ["prequential", "--corpus", str(corpus), "--arch-grid", str(path), "--config", str(cfg), "--seeds", "0",
            "--tokenizer", str(tok), "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "width against depth" in first.out and "[arch-grid 4/4] n_layer 2, ffn_ratio 4" in first.err
    rows = pd.read_parquet(out / "prequential").sort_values(["n_layer", "ffn_ratio"])
    assert rows[["n_layer", "d_model", "d_ff"]].values.tolist() == [[1, 16, 16], [1, 16, 64], [2, 16, 16],
                                                                   [2, 16, 64]]
    assert rows["ffn_ratio"].tolist() == [1.0, 4.0, 1.0, 4.0] and rows["run_id"].nunique() == 4
    d = 16
    for r in rows.itertuples():  # GPT-2 with 32 positions, tied head
        f = r.d_ff
        per_layer = 4 * d + 4 * d * d + 4 * d + 2 * d * f + f + d
        assert r.n_params == (257 + 32) * d + r.n_layer * per_layer + 2 * d
    assert main(argv) == 0  # content-addressed cells: every one is reused
    assert capsys.readouterr().err.count("already complete") == 4


def test_older_prequential_rows_read_as_null(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mdlbench import tables

    shape = ("n_layer", "d_model", "d_ff", "ffn_ratio", "n_params")
    old = pa.schema([f for f in tables.TABLES["prequential"][1] if f.name not in shape])
    row = {f.name: None for f in old}
    row.update(estimator="blockwise", seed=0, corpus="x")
    folder = tmp_path / "prequential" / "run_id=old"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old), folder / "part-0.parquet")
    df = tables.read_table(tmp_path, "prequential")
    assert df["n_layer"].isna().all() and df["n_params"].isna().all() and df["corpus"].tolist() == ["x"]
