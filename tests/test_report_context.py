"""The report's context-curve and window-sweep sections on a synthetic results folder (tables.commit), with
numbers derived by hand and parsed back from the Markdown; every figure decoded and checked for content."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import matplotlib.image
import pyarrow as pa
import pytest
from conftest import table_after

from mdlbench import tables
from mdlbench.context_curve import combine_curves, document_curve
from mdlbench.report import write_report
from mdlbench.report.context import sweep_lines
from mdlbench.report.data import load_results
from mdlbench.report.figures import is_blank, pixel_size

SHA = "cd" * 32
# (doc_id, domain, n_bytes): two domains.
DOCS = [("p0", "prose", 120), ("p1", "prose", 80), ("c0", "code", 200)]
# run id -> (model, window, stride, bits per byte of every document, a constant to keep it simple)
RUNS = {"a016": ("tiny-a", 16, 8, 3.0), "a032": ("tiny-a", 32, 16, 2.5), "a064": ("tiny-a", 64, 32, 2.25),
        "a064s": ("tiny-a", 64, 64, 2.4), "b064": ("tiny-b", 64, 32, 2.75), "u": ("uniform-bytes", None, None, 8.0)}


def _row(table: str, **values):
    _, schema = tables.TABLES[table]
    zero = {pa.string(): "", pa.int64(): 0, pa.float64(): 0.0, pa.bool_(): True}
    row = {f.name: zero.get(f.type) for f in schema}
    row.update({k: v for k, v in values.items() if k in row})
    return row


def _doc_bits(run_id: str, i: int) -> float:
    if RUNS[run_id][0] == "uniform-bytes":
        return 8.0 * DOCS[i][2]
    return RUNS[run_id][3] * DOCS[i][2] * (1.0 + 0.1 * i)  # documents differ, so the CIs are intervals


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("context-results")
    parts = {}
    for run_id, (model, window, stride, _) in RUNS.items():
        parts[("runs", run_id)] = tables.to_arrow("runs", [_row(
            "runs", model=model, model_sha256=model, corpus="toy", corpus_sha256=SHA, window=window, stride=stride,
            first_token="bos" if window else "none", end="eos" if window else "none", protocol="mdlbench",
            dtype="float32", bootstrap_samples=300, seed=0,
            finished_at=datetime.datetime(2025, 1, 1, 0, 0, len(run_id), tzinfo=datetime.timezone.utc))])
        docs = [_row("documents", model=model, corpus="toy", doc_index=i, doc_id=d[0], domain=d[1], n_bytes=d[2],
                     n_chars=d[2],
                     n_tokens=d[2] // 4, code_length_bits=_doc_bits(run_id, i)) for i, d in enumerate(DOCS)]
        parts[("documents", run_id)] = tables.to_arrow("documents", docs)
        bpb = [r["code_length_bits"] / r["n_bytes"] for r in docs]
        parts[("summary", run_id)] = tables.to_arrow("summary", [_row(
            "summary", model=model, corpus="toy", bpb_ci_low=min(bpb), bpb_ci_high=max(bpb))])
        # Context curve: each document's bits spread over two buckets, [1, 2) and [2, 4) (or [0, 1) for uniform).
        partials = []
        for i, d in enumerate(DOCS):
            bits = _doc_bits(run_id, i)
            ctx = [0, 0] if window is None else [1, 3]
            partials.append((d[1], document_curve(ctx, [0.25 * bits, 0.75 * bits], [0, 10], [10, d[2]])))
        parts[("context_curve", run_id)] = tables.to_arrow("context_curve", [
            {"model": model, "corpus": "toy", **r} for r in combine_curves(partials)])
    tables.commit(out, parts)
    return out




def test_window_sweep_lines_group_one_model_by_stride_rule(results):
    lines = sweep_lines(load_results(results), "toy")
    assert [(m, rule, p["window"].tolist()) for m, rule, p in lines] == [("tiny-a", "S = W", [64]),
                                                                         ("tiny-a", "S = W/2", [16, 32, 64])]
    half = lines[1][2]
    n_bytes = sum(d[2] for d in DOCS)
    for rid, got in zip(half["run_id"], half["bits_per_byte"], strict=True):
        assert got == pytest.approx(math.fsum(_doc_bits(rid, i) for i in range(len(DOCS))) / n_bytes, rel=1e-12)


def test_report_draws_context_curves_and_the_window_sweep(results, tmp_path):
    out = tmp_path / "report"
    write_report(results, out, command="mdlbench report R", context_domains=True)
    md = (out / "report.md").read_text("utf-8")
    for name in ("context-toy.png", "context-domains-toy.png", "window-sweep-toy.png"):
        png = out / "figures" / name
        assert f"figures/{name}" in md
        img = matplotlib.image.imread(png)
        assert img.shape[:2] == pixel_size()[::-1] and not is_blank(png), name
    # Context table: one run per model (tiny-a at its largest window; of the two W=64 runs the later one).
    rows = {r["context (tokens)"]: r for r in table_after(md, "Bits against context length")}
    assert list(rows) == ["[0, 1)", "[1, 2)", "[2, 4)", "all"]
    col = next(h for h in rows["all"] if h.startswith("`tiny-a` W=64") and h.endswith("bits/byte"))
    winner = "a064s"  # finished later than a064 (same window)
    n_bytes = sum(d[2] for d in DOCS)
    bits = [_doc_bits(winner, i) for i in range(len(DOCS))]
    assert float(rows["[1, 2)"][col]) == pytest.approx(0.25 * math.fsum(bits) / (10 * len(DOCS)), abs=5e-5)
    assert float(rows["[2, 4)"][col]) == pytest.approx(0.75 * math.fsum(bits) / (n_bytes - 10 * len(DOCS)), abs=5e-5)
    assert float(rows["all"][col]) == pytest.approx(math.fsum(bits) / n_bytes, abs=5e-5)
    assert rows["[0, 1)"]["`uniform-bytes` bits/byte"] == "8.0000" and rows["[0, 1)"][col] == "—"
    # Window sweep table: every tiny-a run, bits/byte and the run's CI.
    sweep = table_after(md, "Bits per byte against window size")
    assert [(r["window W"], r["stride S"], r["stride"]) for r in sweep] == [
        ("64", "64", "S = W"), ("16", "8", "S = W/2"), ("32", "16", "S = W/2"), ("64", "32", "S = W/2")]
    for r in sweep:
        rid = r["run"].strip("`")
        want = math.fsum(_doc_bits(rid, i) for i in range(len(DOCS))) / n_bytes
        assert float(r["bits/byte"]) == pytest.approx(want, abs=5e-5)
        low, high = (float(x) for x in r["95% CI"].strip("[]").split(","))
        assert low <= want <= high


def test_no_context_curve_table_is_named(tmp_path, results):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    shutil.rmtree(copy / "context_curve")
    out = tmp_path / "report"
    write_report(copy, out, command="mdlbench report R")
    md = (out / "report.md").read_text("utf-8")
    assert "**Absent:** `context_curve`" in md and "no `context_curve` rows" in md
    assert not (out / "figures" / "context-toy.png").exists()
