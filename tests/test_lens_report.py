"""The report's "Model anatomy" section from hand-written lens tables: numbers as derived here, figures drawn."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
from PIL import Image

from mdlbench import tables
from mdlbench.lens import rows
from mdlbench.report import write_report
from mdlbench.report.anatomy import break_even_bytes
from mdlbench.report.figures import is_blank, pixel_size

RUN = "aaaa000000000001"
N_BYTES = [400, 600]  # two documents, 1000 bytes
BASE_BITS = 2000.0


def _row(table: str, **values):
    _, schema = tables.TABLES[table]
    zero = {pa.string(): "", pa.int64(): 0, pa.float64(): 0.0, pa.bool_(): True}
    row = {f.name: zero.get(f.type) for f in schema}
    row.update(values)
    return row


def _component_rows():
    out = []
    # (component, n_params, stored bits, {k: (param bits, Δ data bits)})
    spec = [("embedding", 1000, 16000.0, {8: (8200.0, 1.0), 4: (4300.0, 40.0)}),
            ("ffn", 3000, 48000.0, {8: (24500.0, 2.0), 4: (12500.0, 300.0)}),
            ("norm", 40, 640.0, {8: (200.0, 0.0), 4: (200.0, 0.0)})]
    for comp, n, stored, ks in spec:
        out.append(rows.component_row(component=comp, layer=-1, bits=0, n_params=n, n_quantized_params=0,
                                      param_bits=stored, param_bits_reference=stored, reference_code="naive-16",
                                      data_bits=BASE_BITS, base_data_bits=BASE_BITS, packed_bytes=None,
                                      side_bytes=None, wall_seconds=0.0, detail=""))
        for k, (pb, delta) in ks.items():
            out.append(rows.component_row(component=comp, layer=-1, bits=k, n_params=n,
                                          n_quantized_params=0 if comp == "norm" else n, param_bits=pb,
                                          param_bits_reference=stored, reference_code="naive-16",
                                          data_bits=BASE_BITS + delta, base_data_bits=BASE_BITS, packed_bytes=0,
                                          side_bytes=int(pb / 8), wall_seconds=1.0, detail=""))
    return out


def _write(out: Path, *, lens: bool) -> None:
    parts = {("runs", RUN): tables.to_arrow("runs", [_row("runs", model="tiny-lens", corpus="toy",
                                                          corpus_sha256="ab" * 32, n_params=4040, window=64,
                                                          stride=32, bootstrap_samples=200)]),
             ("documents", RUN): tables.to_arrow("documents", [
                 _row("documents", corpus="toy", doc_index=i, doc_id=f"d{i}", domain="x", n_bytes=nb, n_chars=nb,
                      n_tokens=nb // 4, code_length_bits=BASE_BITS * nb / 1000) for i, nb in enumerate(N_BYTES)])}
    if lens:
        names = {"model": "tiny-lens", "corpus": "toy"}
        parts[("component_codes", RUN)] = tables.to_arrow("component_codes",
                                                          [{**names, **r} for r in _component_rows()])
        act = []
        for layer in range(3):
            for domain in ("", "x"):
                act.append(_row("ffn_activity", **names, layer=layer, domain=domain, n_positions=250, d_ff=8,
                                activation="silu", active_rule="|h| > tau * rms(h)", activity_threshold=0.01,
                                mean_active_fraction=0.9 - 0.1 * layer, top10pct_mass_share=0.3 + 0.1 * layer,
                                neuron_active_counts=[200] * 8, neuron_mean_abs_h=[0.1] * 8))
        parts[("ffn_activity", RUN)] = tables.to_arrow("ffn_activity", act)
        prune = []
        for criterion, deltas in (("frequency", (5.0, 50.0)), ("random", (-1.0, 400.0))):
            for fraction, delta in zip((0.25, 0.5), deltas, strict=True):
                prune.append(rows.pruning_row(criterion=criterion, fraction=fraction, layer=-1, seed=None,
                                              neurons_removed=int(6 * fraction * 8), params_removed=100,
                                              param_bits_saved=1600.0 * fraction * 2, fold_bits=[1000.0 + delta,
                                                                                                  1000.0],
                                              fold_docs=[1, 1], base_data_bits=BASE_BITS, wall_seconds=1.0))
        parts[("ffn_pruning", RUN)] = tables.to_arrow("ffn_pruning", [{**names, **r} for r in prune])
    tables.commit(out, parts)


def _write_grid(out: Path) -> None:
    from mdlbench.prequential.results import SUMMARY_TABLE

    summaries = []
    for i, (n_layer, ratio) in enumerate([(1, 1.0), (1, 4.0), (2, 1.0), (2, 4.0)]):
        for seed, bits in ((0, 3000.0 + 100 * i), (1, 3100.0 + 100 * i)):
            summaries.append(_row(SUMMARY_TABLE, model=f"gpt2 {n_layer}x32", estimator="blockwise", mode="restart",
                                  seed=seed, corpus="toy",
                                  n_tokens=1000, n_bytes=1000, prequential_bits=bits, uniform_bits=8000.0,
                                  n_layer=n_layer, d_model=32, d_ff=int(32 * ratio), ffn_ratio=ratio,
                                  n_params=10_000 + i, conditional_on=""))
        tables.commit(out, {(SUMMARY_TABLE, f"grid{i}"): tables.to_arrow(SUMMARY_TABLE, summaries[-2:])})


def test_anatomy_section_numbers_and_figures(tmp_path):
    results, report = tmp_path / "results", tmp_path / "report"
    _write(results, lens=True)
    _write_grid(results)
    (md_path,) = write_report(results, report)
    md = md_path.read_text()
    assert "### Model anatomy" in md
    # one line per component: the k with the largest net saving (embedding: 4 bits, 16000-4300-40 = 11660)
    line = next(li for li in md.splitlines() if li.startswith("| `embedding` | 1,000"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "4" and cells[5] == "0.012" and cells[6] == "+40.0" and cells[7] == "0.012"
    assert cells[8] == "292 kB"  # 11700 bits saved × 1000 bytes / 40 bits
    assert "stored at 4 bits it costs 11,700 fewer parameter bits and 40.0 more data bits" in md
    assert "kept exactly (1-D tensors only), zstd-19 codes it in 440 fewer bits" in md
    ffn = next(li for li in md.splitlines() if li.startswith("| `ffn` | 3,000"))
    assert ffn.split("|")[5].strip() == "4"  # 48000 - 12500 - 300 = 35200 beats 48000 - 24500 - 2 = 23498
    assert "any size" in md  # random at 0.25 costs no data bits
    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    for name in ("components-toy-0.png", "activity-toy-0.png", "pruning-toy-0.png", "width-depth-toy.png"):
        assert name in figures
        png = report / "figures" / name
        assert not is_blank(png) and Image.open(png).size == pixel_size()
    assert "| 2 | 4 | 32 | 128 | 10,003 | 2 | 3.3500 | 0.0707 |" in md  # seeds 3300 and 3400 bits on 1000 bytes


def test_no_lens_tables_no_anatomy_section(tmp_path):
    _write(tmp_path / "results", lens=False)
    (md_path,) = write_report(tmp_path / "results", tmp_path / "report")
    assert "Model anatomy" not in md_path.read_text()


def test_break_even_by_hand():
    assert break_even_bytes(1e6, 100.0, 10_000) == 1e8
    assert math.isinf(break_even_bytes(1e6, 0.0, 10_000)) and math.isinf(break_even_bytes(1e6, -3.0, 10))
