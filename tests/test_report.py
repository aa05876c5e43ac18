"""`mdlbench report` and `mdlbench compare` on a small synthetic results folder built with tables.commit.

Two models and uniform-bytes on six documents in two domains, plus baselines, two-part and prequential rows.
Numbers are derived by hand here (Σ bits / Σ bytes) and parsed back from the Markdown.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import chromium, table_after

from mdlbench import tables
from mdlbench.cli import main as cli_main
from mdlbench.errors import InputError
from mdlbench.report import write_report
from mdlbench.report.data import compare_runs, load_results
from mdlbench.report.figures import clusters, dodge, is_blank, pixel_size, spread

SHA = "ab" * 32
# (doc_id, domain, n_bytes, bits under A, bits under B)
DOCS = [("p0", "prose", 100, 310.0, 350.0), ("p1", "prose", 250, 700.0, 760.5), ("p2", "prose", 40, 150.0, 149.0),
        ("c0", "code", 300, 600.0, 690.0), ("c1", "code", 120, 260.0, 300.0), ("c2", "code", 90, 200.0, 233.0)]
RUNS = {"aaaa000000000001": ("tiny-a", 1_000_000, 3), "bbbb000000000002": ("tiny-b", 4_000_000, 4),
        "cccc000000000003": ("uniform-bytes", 0, None)}


def _defaults(table: str, **values):
    """A full row of ``table``: zero/empty values for every column of the current schema, then ``values``."""
    _, schema = tables.TABLES[table]
    zero = {pa.string(): "", pa.int64(): 0, pa.float64(): 0.0, pa.bool_(): True}
    row = {f.name: zero.get(f.type) for f in schema}
    row.update({k: v for k, v in values.items() if k in row})
    return row


def _bits(run_id: str, i: int) -> float:
    name = RUNS[run_id][0]
    return 8.0 * DOCS[i][2] if name == "uniform-bytes" else DOCS[i][3] if name == "tiny-a" else DOCS[i][4]


def _write_results(out: Path, *, optional: bool = True) -> None:
    parts = {}
    for run_id, (model, n_params, per_doc_tokens) in RUNS.items():
        parts[("runs", run_id)] = tables.to_arrow("runs", [_defaults(
            "runs", model=model, corpus="toy", corpus_sha256=SHA, corpus_source="toy.jsonl", n_params=n_params,
            window=64 if per_doc_tokens else None, stride=32 if per_doc_tokens else None, first_token="bos",
            end="eos", protocol="mdlbench", dtype="float32", device="cpu", bootstrap_samples=2000, seed=0,
            model_format="folder", mdlbench_version="0.1.0",
            finished_at=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
            ffn_param_share=0.5 if per_doc_tokens else None)])
        parts[("documents", run_id)] = tables.to_arrow("documents", [_defaults(
            "documents", model=model, corpus="toy", doc_index=i, doc_id=d[0], domain=d[1], n_bytes=d[2],
            n_chars=d[2] - 5,
            n_tokens=d[2] // per_doc_tokens if per_doc_tokens else d[2], code_length_bits=_bits(run_id, i))
            for i, d in enumerate(DOCS)])
    if optional:
        from mdlbench.mdl.two_part import TwoPartCode, two_part_row

        n_bytes = sum(d[2] for d in DOCS)
        for run_id, (model, n_params, _) in RUNS.items():
            if n_params:
                data_bits = sum(_bits(run_id, i) for i in range(len(DOCS)))
                codes = [TwoPartCode("naive-16", 16.0 * n_params, 800.0, data_bits),
                         TwoPartCode("naive-32", 32.0 * n_params, 800.0, data_bits)]
                parts[("two_part", run_id)] = tables.to_arrow(
                    "two_part", [{"model": model, "corpus": "toy", **two_part_row(c, n_bytes=n_bytes,
                                                                                  n_params=n_params)} for c in codes])
        for i, (comp, mode, out_bytes) in enumerate([("gzip-9", "per_document", 500), ("xz-9e", "per_document", 480),
                                                     ("gzip-9", "concatenated", 400)]):
            parts[("baselines", f"b{i:015d}")] = tables.to_arrow("baselines", [_defaults(
                "baselines", corpus="toy", corpus_sha256=SHA, compressor=comp, library=comp.split("-")[0],
                mode=mode, n_docs=len(DOCS), n_bytes=n_bytes, compressed_bytes=out_bytes,
                bits_per_byte=8.0 * out_bytes / n_bytes, roundtrip_verified=True)])
        preq = pytest.importorskip("mdlbench.prequential.results")  # registers the prequential tables
        blocks, summaries = [], []
        for seed in (0, 1):
            bounds = [(0, 40), (40, 120), (120, 300)]
            costs = [40 * 15.0, 80 * (9.0 + seed), 180 * (6.0 + seed)]
            blocks += [_defaults(preq.BLOCKS_TABLE, estimator="blockwise", seed=seed, block_index=k, token_start=s,
                                 token_end=e, n_bytes=(e - s) * 3, coder="model", code_length_bits=c)
                       for k, ((s, e), c) in enumerate(zip(bounds, costs, strict=True))]
            summaries.append(_defaults(preq.SUMMARY_TABLE, estimator="blockwise", mode="blockwise", seed=seed,
                                       corpus="toy", n_documents=6, n_tokens=300, n_bytes=900, vocab_size=65536,
                                       prequential_bits=sum(costs), bits_per_byte=sum(costs) / 900,
                                       uniform_bits=300 * 16.0))
        parts.update(preq.to_tables("f" * 16, blocks, summaries))
    tables.commit(out, parts)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    _write_results(out)
    return out


@pytest.fixture(scope="module")
def report(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(results, out, html=True, command="mdlbench report RESULTS --out REPORT")
    return out




def test_leaderboard_numbers_are_sums_then_ratios(report):
    md = (report / "report.md").read_text("utf-8")
    assert md.splitlines()[0] == "Regenerate: `mdlbench report RESULTS --out REPORT`"
    board = {r["model"].strip("`"): r for r in table_after(md, "Leaderboard")}
    n_bytes = sum(d[2] for d in DOCS)
    bpb_a = sum(d[3] for d in DOCS) / n_bytes
    bpb_b = sum(d[4] for d in DOCS) / n_bytes
    assert float(board["tiny-a"]["bits/byte"]) == pytest.approx(bpb_a, abs=5e-5)
    assert float(board["tiny-b"]["bits/byte"]) == pytest.approx(bpb_b, abs=5e-5)
    assert float(board["uniform-bytes"]["bits/byte"]) == 8.0
    assert float(board["tiny-a"]["bits/char"]) == pytest.approx(sum(d[3] for d in DOCS) / (n_bytes - 30), abs=5e-5)
    assert float(board["tiny-a"]["bits/token"]) == pytest.approx(sum(d[3] for d in DOCS) /
                                                                 sum(d[2] // 3 for d in DOCS), abs=5e-5)
    # Best per-document compressor is xz-9e (480 bytes out), 8*480/900 bits/byte.
    xz = 8 * 480 / n_bytes
    assert board["tiny-a"]["best compressor (per_document)"] == f"xz-9e ({xz:.4f})"
    assert float(board["tiny-a"]["ratio to it"]) == pytest.approx(bpb_a / xz, abs=5e-5)
    assert board["tiny-a"]["best compressor (concatenated)"].startswith("gzip-9 (")
    # Two-part: the cheapest code is naive-16: (16 P + 800 + data) / bytes.
    tp_a = (16.0 * 1_000_000 + 800 + sum(d[3] for d in DOCS)) / n_bytes
    assert board["tiny-a"]["two-part bits/byte"] == f"{tp_a:.4f} (naive-16)"
    be = (16.0 * 1_000_000 + 800) / (xz - bpb_a)
    assert board["tiny-a"]["break-even corpus size"].startswith(f"{be / 1e6:.3g} MB (vs xz-9e)")
    assert board["tiny-a"]["parameters"] == "1.0M"
    if "ffn_param_share" in tables.TABLES["runs"][1].names:
        assert board["tiny-a"]["FFN share"] == "50.0%" and board["uniform-bytes"]["FFN share"] == "—"
    # CI brackets the point estimate; the order is best first.
    low, high = (float(x) for x in board["tiny-a"]["95% CI"].strip("[]").split(","))
    assert low <= bpb_a <= high
    assert [r["model"].strip("`") for r in table_after(md, "Leaderboard")][:3] == ["tiny-a", "tiny-b",
                                                                                     "uniform-bytes"]
    # The prequential learner: mean ± sd over 2 seeds.
    preq = [r for r in board.values() if r["model"].startswith("prequential")]
    per_seed = [(600 + 80 * (9 + s) + 180 * (6 + s)) / 900 for s in (0, 1)]
    assert preq[0]["prequential bits/byte"] == f"{np.mean(per_seed):.4f} ± {np.std(per_seed, ddof=1):.4f}"


def test_domain_table_sums_within_domain(report):
    md = (report / "report.md").read_text("utf-8")
    rows = {r["domain"].strip("`"): r for r in table_after(md, "Bits per byte by domain")}
    for domain in ("prose", "code"):
        sel = [d for d in DOCS if d[1] == domain]
        expect = sum(d[3] for d in sel) / sum(d[2] for d in sel)
        assert float(rows[domain]["`tiny-a` bits/byte [95% CI]"].split()[0]) == pytest.approx(expect, abs=5e-5)
        assert rows[domain]["documents"] == "3"


def test_figures_decode_have_size_and_are_not_blank(report):
    import matplotlib.image

    md = (report / "report.md").read_text("utf-8")
    pngs = sorted((report / "figures").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"bpb-vs-params-toy.png", "domains-toy.png", "two-part-toy.png", "prequential-toy.png"} <= names
    width, height = pixel_size()
    for png in pngs:
        assert f"figures/{png.name}" in md
        img = matplotlib.image.imread(png)
        assert img.shape[:2] == (height, width), png.name
        assert float(np.var(img[..., :3])) > 1e-3, png.name
        assert not is_blank(png)
    html = (report / "report.html").read_text("utf-8")
    assert html.count("data:image/png;base64,") == len(pngs) and "figures/" not in html.split("<body>")[1]


def test_self_comparison_is_exactly_zero(results):
    res = load_results(results)
    comp = compare_runs(res, "aaaa000000000001", "aaaa000000000001")
    for d in [comp.overall, *comp.by_domain]:
        assert (d.delta, d.ci_low, d.ci_high) == (0.0, 0.0, 0.0)
    assert comp.overall.n_docs == len(DOCS) and comp.n_unmatched == 0


def test_paired_difference_matches_hand_computation(results):
    comp = compare_runs(load_results(results), "aaaa000000000001", "bbbb000000000002", n_samples=500, seed=1)
    n_bytes = sum(d[2] for d in DOCS)
    assert comp.overall.delta == pytest.approx(sum(d[3] - d[4] for d in DOCS) / n_bytes, rel=1e-12)
    assert comp.overall.ci_low <= comp.overall.delta <= comp.overall.ci_high
    code = [d for d in DOCS if d[1] == "code"]
    got = {d.label: d for d in comp.by_domain}
    assert got["code"].delta == pytest.approx(sum(d[3] - d[4] for d in code) / sum(d[2] for d in code), rel=1e-12)


def test_compare_cli_end_to_end(results, capsys):
    assert cli_main(["compare", "aaaa", "tiny-b", "--out-dir", str(results), "--json", "--samples", "300"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["run_a"], got["run_b"], got["bootstrap_samples"]) == ("aaaa000000000001", "bbbb000000000002", 300)
    rows = {r["documents"]: r for r in got["rows"]}
    assert set(rows) == {"all", "code", "prose"}
    n_bytes = sum(d[2] for d in DOCS)
    assert rows["all"]["delta_bits_per_byte"] == pytest.approx(sum(d[3] - d[4] for d in DOCS) / n_bytes)
    assert cli_main(["compare", "aaaa000000000001", "aaaa000000000001", "--out-dir", str(results)]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("all"))
    assert line.split()[-3:] == ["0.0000", "0.0000", "0.0000"]
    assert cli_main(["compare", "zzzz", "tiny-b", "--out-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert "'zzzz' matches no run" in err and "aaaa000000000001 (tiny-a × toy)" in err


def test_two_models_get_a_paired_section_and_missing_tables_are_named(tmp_path):
    results = tmp_path / "results"
    _write_results(results, optional=False)
    out = tmp_path / "report"
    assert cli_main(["report", str(results), "--out", str(out), "--runs", "tiny-a,bbbb"]) == 0
    md = (out / "report.md").read_text("utf-8")
    assert md.startswith(f"Regenerate: `mdlbench report {results} --out {out} --runs tiny-a,bbbb`")
    for name in ("baselines", "two_part", "prequential", "coding"):
        assert f"**Absent:** `{name}`" in md
    board = table_after(md, "Leaderboard")
    assert [r["model"] for r in board] == ["`tiny-a`", "`tiny-b`"]
    assert board[0]["two-part bits/byte"] == "—" and board[0]["best compressor (per_document)"] == "—"
    paired = {r["documents"].strip("`"): r for r in table_after(md, "Paired comparison")}
    n_bytes = sum(d[2] for d in DOCS)
    assert float(paired["all"]["ΔR = R(A) − R(B)"]) == pytest.approx(sum(d[3] - d[4] for d in DOCS) / n_bytes,
                                                                      abs=5e-5)
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == ["bpb-vs-params-toy.png", "domains-toy.png",
                                                                       "paired-toy.png"]
    assert not (out / "report.html").exists()


def test_no_runs_and_bad_selections_are_input_errors(tmp_path, results):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no runs in this folder"):
        load_results(empty)
    assert cli_main(["report", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()
    with pytest.raises(InputError, match="--corpus 'nope'"):
        load_results(results, corpus="nope")


def test_spread_keeps_order_and_gap():
    got = spread([0.5, 0.5, 0.51], 0.05)
    assert got == sorted(got) and all(b - a >= 0.05 - 1e-9 for a, b in zip(got, got[1:], strict=False))
    assert math.isclose(sum(got) / 3, (0.5 + 0.5 + 0.51) / 3, abs_tol=1e-9)
    assert spread([0.0, 0.0], 0.1) == pytest.approx([0.0, 0.1])


# Appended to a copy of report.html: measures the laid-out page and writes the numbers into the DOM.
_MEASURE = """<script>
const boxes = [...document.querySelectorAll("table")].map(t => {
  const box = t.parentElement;
  return {boxed: box.matches("div.scroll"), overflow: getComputedStyle(box).overflowX, client: box.clientWidth,
          scroll: box.scrollWidth, right: box.getBoundingClientRect().right, head: t.querySelector("th").textContent,
          clipped: [...t.querySelectorAll("td, th")].filter(c => c.scrollWidth > c.clientWidth).length};
});
document.body.setAttribute("data-layout", JSON.stringify({window: window.innerWidth,
  page: document.documentElement.scrollWidth, boxes: boxes}));
</script>"""


def test_report_html_fits_a_1280_px_window(report, tmp_path):
    page = tmp_path / "measured.html"
    page.write_text((report / "report.html").read_text("utf-8").replace("</body>", _MEASURE + "</body>"), "utf-8")
    dom = chromium("--dump-dom", "--window-size=1280,2000", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    layout = json.loads(html.unescape(re.search(r'data-layout="([^"]*)"', dom.stdout).group(1)))
    assert layout["window"] == 1280
    assert layout["page"] <= layout["window"]  # the page never scrolls sideways...
    boxes = layout["boxes"]
    assert len(boxes) >= 8 and all(b["boxed"] and b["overflow"] == "auto" for b in boxes)
    assert all(b["right"] <= layout["window"] and b["clipped"] == 0 for b in boxes)
    board = boxes[0]
    assert board["head"] == "model" and board["scroll"] > board["client"]  # ...the wide leaderboard scrolls in its box


def test_clusters_and_dodge_move_only_points_that_would_overlap():
    assert clusters([0.0, 30.0, 5.0], 10.0) == [[0, 2], [1]]
    assert dodge([10.0, 10.0, 100.0], 16.0) == [2.0, 18.0, 100.0]  # a pair spread around its size; a loner stays
    assert dodge([50.0, 50.0, 50.0], 10.0) == [40.0, 50.0, 60.0]


def test_models_of_equal_size_and_rate_are_both_visible(results, tmp_path):
    """A model and its quantized twin: the same parameter count and (here) the same bits; neither may hide the other."""
    import matplotlib.colors
    import matplotlib.image

    from mdlbench.report import figures
    from mdlbench.report.data import leaderboard

    res = load_results(results)
    a = next(r for r in leaderboard(res, "toy") if r.model == "tiny-a")
    twins = [a, replace(a, run_id="twin", model="tiny-a-q4")]
    colors = figures.model_colors([r.model for r in twins])
    img = matplotlib.image.imread(figures.bpb_vs_params(res, twins, colors, tmp_path / "twins.png"))[..., :3]
    for r in twins:
        rgb = np.array(matplotlib.colors.to_rgb(colors[r.model]))
        assert int((np.abs(img - rgb).max(axis=-1) < 0.05).sum()) > 20, r.model


def test_a_folder_of_prequential_runs_only_is_listed_and_reported(tmp_path):
    """`ls` and `report` show prequential results like any run (no model run is needed)."""
    from conftest import run_cli

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": "abc " * (i + 3)}) + "\n" for i in range(6)))
    out = tmp_path / "preq"
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2}))
    code, stdout, err = run_cli("prequential", "-c", corpus, "--arch", arch, "--estimator", "online", "--seeds",
                                "0,1", "--out", out, "--quiet")
    assert code == 0 and "(6 documents)" in stdout, err
    run_id = tables.read_table(out, "prequential")["run_id"].iloc[0]
    assert len(run_id) == 16
    code, stdout, _ = run_cli("ls", out)
    line = next(line for line in stdout.splitlines() if line.startswith(run_id))
    assert "prequential online, 2 seeds" in line and "gpt2 1x16" in line
    code, _, err = run_cli("report", out, "--out", tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert code == 0 and "1 prequential run" in md and f"`{run_id}`" in md, err


def test_an_ambiguous_run_name_counts_and_lists_exactly_its_candidates():
    import pandas as pd

    from mdlbench.errors import InputError
    from mdlbench.report.data import resolve_runs

    runs = pd.DataFrame({"run_id": ["a1", "a2", "a3", "b1"], "model": ["m", "m", "m", "other"],
                         "corpus": ["c", "c", "d", "c"], "config_json": [""] * 4})
    with pytest.raises(InputError) as caught:
        resolve_runs(runs, ["m"], Path("out"))
    message = str(caught.value)
    assert "names 3 runs" in message and message.count(" × ") == 3 and "b1" not in message
    assert resolve_runs(runs, ["b", "a2"], Path("out")) == ["b1", "a2"]  # a unique prefix, an exact id
