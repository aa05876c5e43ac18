"""Byte-aligned attribution between two runs (mdlbench.spans): the common refinement, span texts and classes,
`compare --spans` and its span_diff table, `mdlbench view` rendered in a real browser, and the report's embed.

The runs are real: a tiny GPT-2 with GPT-2's own tokenizer, a tiny GPT-2 over a byte-level BPE of 400 symbols
trained here with `tokenizers` (different boundaries, also inside multi-byte characters), and uniform-bytes, all
with --per-token, on documents with CJK, emoji, an empty one and code.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEXTS, chromium

from mdlbench import tables
from mdlbench.cli import main as cli_main
from mdlbench.report.data import compare_runs, load_results
from mdlbench.spans.diff import aggregates, build_spans, frame_of
from mdlbench.spans.refine import (
    check_tiling,
    classes_of,
    escape_text,
    lead_offsets,
    refine,
    span_texts,
    text_class,
)
from mdlbench.spans.texts import run_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOMAINS = ["prose", "", "prose", "mixed", "code", "poetry"]  # d1 has no domain


def _bpe_model(folder: Path) -> Path:
    """A byte-level BPE (400 symbols) trained on the test texts, under a 2-layer GPT-2 with a fixed seed."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS * 3, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                           show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(1)
    config = GPT2Config(vocab_size=len(fast), n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0,
                        eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_model_dir) -> dict:
    """A results folder with three per-token runs on one corpus, and their context_curve rows."""
    root = tmp_path_factory.mktemp("spans")
    corpus = root / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for i, (text, domain) in enumerate(zip(TEXTS, DOMAINS, strict=True)):
            f.write(json.dumps({"id": f"d{i}", "text": text, "domain": domain}, ensure_ascii=False) + "\n")
    bpe = _bpe_model(root / "bpe")
    out = root / "results"
    assert cli_main(["run", "-m", str(tiny_model_dir), "-m", str(bpe), "-m", "uniform-bytes", "-c", str(corpus),
                     "--id-field", "id", "--window", "16", "--stride", "8", "--per-token", "--out", str(out),
                     "--baselines", "none", "--two-part", "none", "--bootstrap-samples", "200", "--quiet"]) == 0
    runs = tables.read_table(out, "runs")
    ids = {"gpt2": runs.loc[runs["model"] == tiny_model_dir.name, "run_id"].item(),
           "bpe": runs.loc[runs["model"] == bpe.name, "run_id"].item(),
           "uniform": runs.loc[runs["model"] == "uniform-bytes", "run_id"].item()}
    return {"out": out, "corpus": corpus, "ids": ids, "root": root}


def _documents(out: Path, run_id: str) -> pd.DataFrame:
    docs = tables.read_table(out, "documents")
    return docs[docs["run_id"] == run_id].set_index("doc_id")


# ------------------------------------------------------------------------------------------------ pure rules


def test_refinement_of_a_hand_case():
    """A = "ab|c|d" + EOS, B = "a|bc|d": common boundaries {0, 3, 4} -> "abc", "d", and the EOS span."""
    r = refine([0, 2, 3, 4], [2, 3, 4, 4], [0, 1, 3], [1, 3, 4], 4)
    assert list(zip(r.span_start.tolist(), r.span_end.tolist(), strict=True)) == [(0, 3), (3, 4), (4, 4)]
    assert r.span_of_a.tolist() == [0, 0, 1, 2] and r.span_of_b.tolist() == [0, 0, 1]
    empty = refine([0], [0], [], [], 0)  # an empty document: only the EOS span, B codes nothing
    assert (empty.span_start.tolist(), empty.span_end.tolist(), empty.span_of_a.tolist()) == ([0], [0], [0])
    with pytest.raises(ValueError, match="breaks the tiling"):
        check_tiling(np.array([0, 2]), np.array([1, 3]), 3)


def test_span_text_takes_characters_by_their_first_byte():
    data = "a你b".encode()  # 你 is 3 bytes: offsets 1, 2, 3
    s, e = np.array([0, 2, 3]), np.array([2, 3, 5])  # cuts at 2 and 3, both inside 你
    assert span_texts(data, s, e) == ["a你", "", "b"]  # concatenation is the text; a continuation-only span is ""
    assert "".join(span_texts(data, s, e)) == "a你b"
    assert classes_of(data, s, e) == ["mixed", "CJK", "mixed"]  # overlapping characters: a+你, 你, 你+b
    assert lead_offsets(data).tolist() == [0, 1, 4, 5]


@pytest.mark.parametrize("chars,cls", [(" world", "letters"), ("\n\n  ", "whitespace"), ("x.", "mixed"),
                                       ("，", "punctuation"), ("明月", "CJK"), ("ひらがな", "CJK"), ("😀", "other"),
                                       (" 42", "digits"), ("naïve", "letters"), ("+", "other"), ("", "end"),
                                       ("\u0301", "letters")])
def test_span_classes(chars, cls):
    assert text_class(chars) == cls


def test_escape_text_for_the_console():
    assert escape_text("a\nb\tc\x1b\u200bd\\") == "a\\nb\\tc\\x1b\\u200bd\\\\"
    assert escape_text("abcdef", 4) == "abc…"


# ------------------------------------------------------------------------------------------------ real runs


@pytest.mark.parametrize("pair", [("gpt2", "bpe"), ("bpe", "gpt2"), ("gpt2", "uniform"), ("uniform", "bpe"),
                                  ("bpe", "bpe")])
def test_spans_tile_every_document_and_sum_to_each_run(results, pair):
    out, ids = results["out"], results["ids"]
    a, b = ids[pair[0]], ids[pair[1]]
    res = load_results(out)
    texts = run_texts({**res.runs.set_index("run_id").loc[a].to_dict(), "run_id": a})
    assert texts == {f"d{i}": t for i, t in enumerate(TEXTS)}
    docs_a, docs_b = _documents(out, a), _documents(out, b)
    tokens = tables.read_table(out, "tokens")
    mid_character = 0
    for d in build_spans(res, a, b, texts):
        text, data = texts[d.doc_id], texts[d.doc_id].encode()
        # Spans tile the bytes (and the end span, when a run codes EOS); texts concatenate to the document.
        regular = d.span_end > d.span_start
        assert d.span_start[regular][0:1].tolist() in ([0], []) and d.span_end[regular][-1:].tolist() in ([len(data)],
                                                                                                          [])
        assert (d.span_start[regular][1:] == d.span_end[regular][:-1]).all()
        assert "".join(d.text) == text
        # The cuts are exactly the offsets that are token boundaries in both runs (computed independently).
        bounds = []
        for run_id in (a, b):
            t = tokens[(tokens["run_id"] == run_id) & (tokens["doc_id"] == d.doc_id)]
            bounds.append(set(t["byte_start"]) | set(t["byte_end"]) | {0, len(data)})
        assert set(d.span_start[regular]) | {len(data)} == bounds[0] & bounds[1]
        # Per document the spans add up to each run's code length.
        for bits, docs in ((d.bits_a, docs_a), (d.bits_b, docs_b)):
            assert math.fsum(bits) == pytest.approx(docs.loc[d.doc_id, "code_length_bits"], rel=1e-12, abs=1e-12)
        mid_character += sum(1 for s in d.span_start[regular][1:] if (data[s] & 0xC0) == 0x80)
    if "uniform" in pair:  # GPT-2 / the BPE cut inside multi-byte characters; uniform-bytes keeps those cuts
        assert mid_character > 0


def test_compare_spans_writes_span_diff_and_matches_compare(results, capsys):
    out, ids = results["out"], results["ids"]
    a, b = ids["gpt2"], ids["bpe"]
    assert cli_main(["compare", a, b, "--out-dir", str(out), "--spans", "--json", "--samples", "400"]) == 0
    got = json.loads(capsys.readouterr().out)
    table = tables.read_table(out, "span_diff")
    assert set(table["pair_id"]) == {f"{a}-{b}"} and list(table.columns[:-1]) == tables.TABLES["span_diff"][1].names
    assert (table["run_id_a"] == a).all() and (table["run_id_b"] == b).all()
    assert table.groupby("doc_id")["domain"].first().to_dict() == {f"d{i}": d for i, d in enumerate(DOMAINS)}
    assert np.array_equal(table["delta_bits"], table["bits_a"] - table["bits_b"])
    for run_id, col in ((a, "bits_a"), (b, "bits_b")):
        per_doc = table.groupby("doc_id")[col].agg(math.fsum)
        want = _documents(out, run_id)["code_length_bits"]
        assert np.allclose(per_doc.loc[want.index], want, rtol=1e-12, atol=1e-12)
    # Overall and per domain, the span aggregates are compare's paired bootstrap (same resampled documents).
    comp = compare_runs(load_results(out), a, b, n_samples=400, seed=0)
    spans = {r["label"]: r for r in got["spans"]["by_domain"]}
    for d in [comp.overall, *comp.by_domain]:
        s = spans[d.label]
        if math.isnan(d.delta):  # the domainless document is the empty one: no bytes, no rate
            assert d.label == "(none)" and s["delta_bits_per_byte"] is None
            continue
        assert s["delta_bits_per_byte"] == pytest.approx(d.delta, rel=1e-12)
        if not math.isnan(d.ci_low):
            assert (s["ci_low"], s["ci_high"]) == pytest.approx((d.ci_low, d.ci_high), rel=1e-9)
    # Classes partition the spans: their bits and bytes add up; each ΔR is Σ Δbits / Σ bytes of its spans.
    classes = {r["label"]: r for r in got["spans"]["by_class"]}
    width = table["span_end"] - table["span_start"]
    assert sum(r["n_bytes"] for r in classes.values()) == int(width.sum()) == spans["all"]["n_bytes"]
    assert math.fsum(r["delta_bits"] for r in classes.values()) == pytest.approx(spans["all"]["delta_bits"],
                                                                                 rel=1e-12)
    cjk = table[table["span_class"] == "CJK"]
    assert classes["CJK"]["delta_bits_per_byte"] == pytest.approx(
        math.fsum(cjk["delta_bits"]) / int((cjk["span_end"] - cjk["span_start"]).sum()), rel=1e-12)
    assert classes["end"]["n_spans"] == len(TEXTS) and classes["end"]["delta_bits_per_byte"] is None
    low, high = classes["CJK"]["ci_low"], classes["CJK"]["ci_high"]
    assert low <= classes["CJK"]["delta_bits_per_byte"] <= high  # two documents hold CJK: a real interval
    gains, losses = got["spans"]["top_gains"], got["spans"]["top_losses"]
    assert len(losses) == 20 and all(x["delta_bits"] > 0 for x in losses)
    assert [x["delta_bits"] for x in losses] == sorted((x["delta_bits"] for x in losses), reverse=True)
    assert losses[0]["delta_bits"] == table["delta_bits"].max()
    assert all(x["delta_bits"] < 0 for x in gains)
    assert not gains or gains[0]["delta_bits"] == table["delta_bits"].min()
    # The console listing: escaped text, no raw control characters.
    assert cli_main(["compare", a, b, "--out-dir", str(out), "--spans", "--samples", "200"]) == 0
    text = capsys.readouterr().out
    assert "20 spans where A loses most to B" in text and "span class" in text and "\\n" in text
    assert not any(ch in line for line in text.splitlines() for ch in "\r\t\x1b")


def test_compare_spans_refuses_runs_without_byte_spans_and_writes_nothing(results, tmp_path, capsys):
    out = tmp_path / "results"
    shutil.copytree(results["out"], out)
    shutil.rmtree(out / "span_diff", ignore_errors=True)
    ids = results["ids"]
    gpt2_tokens = tables.partition_dir(out, "tokens", ids["gpt2"]) / "part-0.parquet"
    schema = pq.read_schema(gpt2_tokens)
    df = pq.read_table(gpt2_tokens).to_pandas().assign(byte_start=-1, byte_end=-1)  # as for a tokenizer without spans
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), gpt2_tokens)
    assert cli_main(["compare", ids["gpt2"], ids["bpe"], "--out-dir", str(out), "--spans"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tokens do not map to bytes" in err and ids["gpt2"] in err
    shutil.rmtree(tables.partition_dir(out, "tokens", ids["gpt2"]))
    assert cli_main(["compare", ids["bpe"], ids["gpt2"], "--out-dir", str(out), "--spans"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--per-token" in err and ids["gpt2"] in err
    assert not (out / "span_diff").exists()
    # Without --spans the same comparison needs no per-token rows.
    assert cli_main(["compare", ids["bpe"], ids["gpt2"], "--out-dir", str(out)]) == 0


def test_a_changed_corpus_is_refused_and_the_original_can_be_named(results, tmp_path, capsys):
    out, ids, corpus = results["out"], results["ids"], results["corpus"]
    moved = tmp_path / "moved.jsonl"
    shutil.copy(corpus, moved)
    original = corpus.read_text("utf-8")
    try:
        corpus.write_text(original.replace("Hello world", "Hello World"), encoding="utf-8")
        assert cli_main(["view", str(out), "--run", ids["bpe"], "-o", str(tmp_path / "p.html")]) == 2
        err = capsys.readouterr().err
        assert "no longer holds the documents" in err and "--corpus" in err and not (tmp_path / "p.html").exists()
        assert cli_main(["view", str(out), "--run", ids["bpe"], "--corpus", str(moved), "--doc", "d0", "-o",
                         str(tmp_path / "p.html")]) == 0
    finally:
        corpus.write_text(original, encoding="utf-8")
    assert cli_main(["view", str(out), "--run", ids["bpe"], "--doc", "nope", "-o", str(tmp_path / "q.html")]) == 2
    assert "--doc 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the page


class _Spans(HTMLParser):
    """Collects each document section's span elements (attributes and text) from a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.docs: dict[str, dict] = {}
        self.body: dict[str, str] = {}
        self._doc: str | None = None
        self._span: dict | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(a[key])
        if tag == "body":
            self.body = a
        if tag == "section" and "data-doc-id" in a:
            self._doc = a["data-doc-id"]
            self.docs[self._doc] = {"attrs": a, "spans": []}
        if tag == "span" and "s" in (a.get("class") or "").split() and self._doc is not None:
            self._span = {**a, "text": ""}
            self.docs[self._doc]["spans"].append(self._span)

    def handle_endtag(self, tag):
        if tag == "span":
            self._span = None

    def handle_data(self, data):
        if self._span is not None:
            self._span["text"] += data


_HOVER = ('<script>document.querySelector("section[data-doc-id=d0] .s:nth-child(2)").dispatchEvent('
          'new MouseEvent("mouseover", {bubbles: true}));</script>')


def test_view_page_in_a_real_browser(results, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (`apt-get install -y chromium`; .ci/run installs it)")
    out, ids = results["out"], results["ids"]
    for name, extra in (("run", []), ("diff", ["--against", ids["gpt2"]])):
        page = tmp_path / f"{name}.html"
        assert cli_main(["view", str(out), "--run", ids["bpe"], *extra, "--top", "6", "-o", str(page)]) == 0
        dom = chromium("--dump-dom", page.as_uri())
        assert dom.returncode == 0, dom.stderr[-2000:]
        parsed = _Spans()
        parsed.feed(dom.stdout)
        assert parsed.body.get("data-ready") == "1"  # the page's script ran to its end
        assert parsed.external == []  # self-contained: nothing to fetch
        assert sorted(parsed.docs) == [f"d{i}" for i in range(len(TEXTS))]
        docs_a, docs_b = _documents(out, ids["bpe"]), _documents(out, ids["gpt2"])
        for doc_id, d in parsed.docs.items():
            spans = d["spans"]
            assert len(spans) == int(d["attrs"]["data-n-spans"]) > 0  # one element per span
            assert "".join(s["text"] for s in spans) == TEXTS[int(doc_id[1:])]  # the text, nothing added
            assert math.fsum(float(s["data-bits"]) for s in spans) == pytest.approx(
                docs_a.loc[doc_id, "code_length_bits"], rel=1e-12)
            if name == "diff":
                assert math.fsum(float(s["data-bits-b"]) for s in spans) == pytest.approx(
                    docs_b.loc[doc_id, "code_length_bits"], rel=1e-12)
                for s in spans:  # each span's tokens are the ones whose bits it records
                    assert math.fsum(t[2] for t in json.loads(s["data-tb"])) == pytest.approx(
                        float(s["data-bits-b"]), rel=1e-12, abs=1e-12)
        if name == "run":
            continue
        # The tooltip: hovering a span shows its tokens (ids from its data attribute) in #tip.
        first = parsed.docs["d0"]["spans"][1]
        hover = tmp_path / f"{name}-hover.html"
        hover.write_text(page.read_text("utf-8").replace("</body>", _HOVER + "</body>"), encoding="utf-8")
        dom = chromium("--dump-dom", hover.as_uri()).stdout
        tip = dom[dom.index('id="tip"'):]
        tip = tip[:tip.index("</div></div>") if "</div></div>" in tip else len(tip)]
        assert "hidden" not in tip.split(">", 1)[0] and "context" in tip
        assert all(f"<td>{t[0]}</td>" in tip for t in json.loads(first["data-ta"]) + json.loads(first["data-tb"]))
        shot = tmp_path / f"{name}.png"
        r = chromium(f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
        assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
        width, height = struct.unpack(">II", shot.read_bytes()[16:24])  # PNG IHDR
        assert (width, height) == (1280, 2000)


def test_report_html_embeds_the_page_and_draws_context_curves(results, tmp_path):
    from mdlbench.report import write_report

    report = tmp_path / "report"
    write_report(results["out"], report, html=True, command="mdlbench report R --html", context_domains=True)
    md = (report / "report.md").read_text("utf-8")
    for name in ("context-corpus.png", "context-domains-corpus.png"):
        assert f"figures/{name}" in md and (report / "figures" / name).is_file()
    assert "window-sweep" not in md  # one window per model: no sweep
    html = (report / "report.html").read_text("utf-8")
    assert html.count("<iframe") == 1 and "srcdoc=" in html and "data-bits-b=" in html
    assert "figures/attribution-corpus.html" in md and (report / "figures" / "attribution-corpus.html").is_file()
    # The context table's "all" row is each run's bits/byte (the buckets add up to the run).
    line = next(x for x in md.splitlines() if x.startswith("| all |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    summary = tables.read_table(results["out"], "summary").set_index("model")
    assert f"{summary.loc['uniform-bytes', 'bits_per_byte']:.4f}" == cells[-1] == "8.0000"


def test_aggregates_by_class_hold_every_byte_once(results):
    out, ids = results["out"], results["ids"]
    res = load_results(out)
    a, b = ids["bpe"], ids["uniform"]
    texts = run_texts({**res.runs.set_index("run_id").loc[a].to_dict(), "run_id": a})
    frame = frame_of(a, b, build_spans(res, a, b, texts))
    by_domain, by_class = aggregates(frame, n_samples=100, seed=3)
    total = sum(len(t.encode()) for t in TEXTS)
    assert by_domain[0].n_bytes == total == sum(c.n_bytes for c in by_class)
    assert by_domain[0].bpb_b == 8.0  # uniform-bytes
    # Class of each span from the characters overlapping it, recomputed from the text.
    for doc_id, g in frame.groupby("doc_id"):
        data = texts[doc_id].encode()
        assert g["span_class"].tolist() == classes_of(data, g["span_start"].to_numpy(), g["span_end"].to_numpy())


def test_runs_resolve_by_the_model_spec_they_were_run_with():
    from mdlbench.report.data import resolve_runs

    runs = pd.DataFrame({"run_id": ["aa01", "bb02"], "model": ["SmolLM2-135M (x.gguf)", "uniform-bytes"],
                         "corpus": ["sample", "sample"],
                         "config_json": [json.dumps({"model_spec": "default"}), json.dumps({"model_spec": "x"})]})
    assert resolve_runs(runs, ["default", "uniform-bytes", "bb"], Path(".")) == ["aa01", "bb02", "bb02"]
