"""Bits against context length (mdlbench.context_curve): buckets, hand-derived sums, and equality with the tokens
rows a real scorer writes, aggregated independently with pandas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import GPT2_VOCAB, TEXTS

from mdlbench import tables
from mdlbench.config import ScoringSettings
from mdlbench.context_curve import (
    bucket_end,
    bucket_start,
    combine_curves,
    context_bucket,
    curve_from_tokens,
    document_curve,
    merge_curve_rows,
    merge_curves,
)
from mdlbench.corpora import Document
from mdlbench.scoring.hf import HFScorer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LOG2V = math.log2(GPT2_VOCAB)


def test_bucket_is_the_bit_length_and_holds_its_context():
    contexts = np.array([*range(0, 5000), 2**20 - 1, 2**20, 2**40 + 3], dtype=np.int64)
    k = context_bucket(contexts)
    assert k.tolist() == [int(c).bit_length() for c in contexts.tolist()]
    for c, b in zip(contexts.tolist(), k.tolist(), strict=True):
        assert bucket_start(b) <= c < bucket_end(b)
    assert [(bucket_start(b), bucket_end(b)) for b in range(4)] == [(0, 1), (1, 2), (2, 4), (4, 8)]
    with pytest.raises(ValueError, match=">= 0"):
        context_bucket([3, -1])


def test_hand_derived_document_from_the_docstring():
    p = document_curve([1, 2, 3, 4], [5.0, 3.0, 2.0, 1.0], [0, 2, 3, 5], [2, 3, 5, 5])
    assert p.n_tokens.tolist() == [0, 1, 2, 1]
    assert p.n_bytes is not None and p.n_bytes.tolist() == [0, 2, 3, 0]
    assert p.code_length_bits.tolist() == [0.0, 5.0, 5.0, 1.0]
    rows = combine_curves([("prose", p)])
    assert [(r["domain"], r["context_bucket_start"], r["context_bucket_end"], r["n_tokens"], r["n_bytes"])
            for r in rows] == [("", 1, 2, 1, 2), ("", 2, 4, 2, 3), ("", 4, 8, 1, 0),
                               ("prose", 1, 2, 1, 2), ("prose", 2, 4, 2, 3), ("prose", 4, 8, 1, 0)]
    assert rows[1]["bits_per_token"] == 2.5 and rows[1]["bits_per_byte"] == 5.0 / 3
    assert math.isnan(rows[2]["bits_per_byte"])  # only the EOS symbol: bits, but no bytes


def test_unknown_spans_give_null_bytes_and_stay_null_when_merged():
    known = document_curve([1, 2], [1.0, 2.0], [0, 1], [1, 3])
    unknown = document_curve([1, 2], [4.0, 8.0], [-1, -1], [-1, -1])
    assert unknown.n_bytes is None and document_curve([1], [1.0]).n_bytes is None
    merged = merge_curves([known, unknown])
    assert merged.n_bytes is None and merged.n_tokens.tolist() == [0, 2, 2]
    assert merged.code_length_bits.tolist() == [0.0, 5.0, 10.0]
    rows = combine_curves([("", known), ("", unknown)])
    assert all(r["n_bytes"] is None and r["bits_per_byte"] is None for r in rows)
    arrow = tables.to_arrow("context_curve", [{"model": "m", "corpus": "c", **r} for r in rows])  # takes nulls
    assert arrow.column("n_bytes").null_count == len(rows)


def _scorer(loaded, window, stride, first_token="bos"):
    return HFScorer(loaded, ScoringSettings(window, stride, first_token, "eos", 4, True))


def test_zero_model_windows_give_hand_derived_buckets(zero_model_dir):
    """A zero-logit model codes every symbol in exactly log2|V| bits, so each bucket holds n·log2|V| bits.

    "a a a a a a a a a a" is 10 GPT-2 tokens ("a", then 9 × " a"): stream BOS + 10 + EOS, 11 predictions. Window 4,
    stride 2 (windowing.py): the first window predicts with 1, 2, 3, 4 tokens of context, then windows [2, 6),
    [4, 8), [6, 10) predict with 3, 4 each and the last, [7, 11), with 4. Contexts in symbol order:
    1 2 3 4 3 4 3 4 3 4 4 -> bucket [1,2): token 0 (1 byte); [2,4): tokens 1, 2, 4, 6, 8 (2 bytes each);
    [4,8): tokens 3, 5, 7, 9 (2 bytes each) and EOS (0 bytes).
    """
    from mdlbench.scoring.models import load_model

    loaded = load_model(str(zero_model_dir), device="cpu")
    (code,) = _scorer(loaded, 4, 2).score([(0, Document("a", "a a a a a a a a a a"))])
    t = code.tokens
    assert t.context_tokens.tolist() == [1, 2, 3, 4, 3, 4, 3, 4, 3, 4, 4]
    p = document_curve(t.context_tokens, t.code_length_bits, t.byte_start, t.byte_end)
    assert p.n_tokens.tolist() == [0, 1, 5, 5] and p.n_bytes.tolist() == [0, 1, 10, 8]
    assert np.allclose(p.code_length_bits, np.array([0, 1, 5, 5]) * LOG2V, rtol=1e-12, atol=0)
    # first_token=uniform: token 0 is coded outside the model, in the [0, 1) bucket.
    (code,) = _scorer(loaded, 4, 2, "uniform").score([(0, Document("a", "a a a a a a a a a a"))])
    p = document_curve(code.tokens.context_tokens, code.tokens.code_length_bits, code.tokens.byte_start,
                       code.tokens.byte_end)
    assert (p.n_tokens[0], p.n_bytes[0]) == (1, 1) and p.code_length_bits[0] == LOG2V


def test_buckets_sum_to_documents_and_run_and_equal_the_tokens_rows(tiny_loaded):
    docs = [(i, Document(f"d{i}", t, "code" if "def" in t else "prose" if i % 2 else "")) for i, t in
            enumerate(TEXTS)]
    codes = sorted(_scorer(tiny_loaded, 8, 3).score(docs), key=lambda c: c.doc_index)
    partials = []
    for c in codes:
        t = c.tokens
        p = document_curve(t.context_tokens, t.code_length_bits, t.byte_start, t.byte_end)
        assert p.total_bits == pytest.approx(c.code_length_bits, rel=1e-12, abs=0)  # a document's buckets
        assert int(p.n_tokens.sum()) == c.n_tokens + 1 and int(p.n_bytes.sum()) == c.doc.n_bytes
        partials.append((c.doc.domain, p))
    rows = pd.DataFrame(combine_curves(partials))
    everything = rows[rows["domain"] == ""]
    run_bits = math.fsum(c.code_length_bits for c in codes)
    assert math.fsum(everything["code_length_bits"]) == pytest.approx(run_bits, rel=1e-12, abs=0)  # the run's
    assert set(rows["domain"]) == {"", "code", "prose"}  # documents without a domain count only in ""
    # The tokens rows the run writes, aggregated independently: bucket = bit length, plain pandas sums.
    tokens = pd.DataFrame({
        "doc_index": np.concatenate([np.full(len(c.tokens.token_index), c.doc_index) for c in codes]),
        **{k: np.concatenate([getattr(c.tokens, k) for c in codes])
           for k in ("context_tokens", "code_length_bits", "byte_start", "byte_end")}})
    tokens["domain"] = tokens["doc_index"].map({i: d.domain for i, d in docs})
    tokens["bucket"] = [int(x).bit_length() for x in tokens["context_tokens"]]
    tokens["n_bytes"] = tokens["byte_end"] - tokens["byte_start"]
    for domain in ("", "code", "prose"):
        sel = tokens if domain == "" else tokens[tokens["domain"] == domain]
        want = sel.groupby("bucket").agg(n_tokens=("bucket", "size"), n_bytes=("n_bytes", "sum"),
                                         code_length_bits=("code_length_bits", math.fsum)).reset_index()
        got = rows[rows["domain"] == domain].reset_index(drop=True)
        assert got["context_bucket_start"].tolist() == [0 if b == 0 else 2 ** (b - 1) for b in want["bucket"]]
        assert got["n_tokens"].tolist() == want["n_tokens"].tolist()
        assert got["n_bytes"].tolist() == want["n_bytes"].tolist()
        assert np.allclose(got["code_length_bits"], want["code_length_bits"], rtol=1e-12, atol=0)
        assert np.allclose(got["bits_per_byte"], want["code_length_bits"] / want["n_bytes"], rtol=1e-12, atol=0)
    # Rows of chunks of documents (as a run checkpoints them) merge into the same rows.
    chunks = [combine_curves(partials[i:i + 2]) for i in range(0, len(partials), 2)]
    merged = pd.DataFrame(merge_curve_rows(chunks))
    pd.testing.assert_frame_equal(merged, rows, check_exact=False, rtol=1e-12)
    assert merged[["n_tokens", "n_bytes", "context_bucket_start"]].equals(rows[["n_tokens", "n_bytes",
                                                                               "context_bucket_start"]])
    # The same rows from the tokens table itself (what the report and the lead's tests can use).
    from_table = pd.DataFrame(curve_from_tokens(tokens, {i: d.domain for i, d in docs}))
    pd.testing.assert_frame_equal(from_table, rows, check_exact=False, rtol=1e-15)


def test_every_run_writes_its_context_curve(tmp_path, tiny_model_dir, jsonl_corpus):
    """Written while scoring, checkpointed per chunk: the buckets add up to each run's code length, and with
    --per-token they equal the tokens rows aggregated by context length."""
    from conftest import run_cli

    out = tmp_path / "o"
    code, _, err = run_cli("run", "-m", str(tiny_model_dir), "-m", "uniform-bytes", "-c", str(jsonl_corpus),
                           "--window", "8", "--stride", "3", "--checkpoint-docs", "2", "--per-token", "--out", out,
                           "--baselines", "none", "--two-part", "none", "--quiet")
    assert code == 0, err
    curve, summary = tables.read_table(out, "context_curve"), tables.read_table(out, "summary")
    tokens, docs = tables.read_table(out, "tokens"), tables.read_table(out, "documents")
    for run in summary.itertuples():
        rows = curve[(curve["run_id"] == run.run_id)].reset_index(drop=True)
        assert set(rows["model"]) == {run.model} and set(rows["corpus"]) == {run.corpus}
        rows = rows.drop(columns=["run_id", "model", "corpus"])
        everything = rows[rows["domain"] == ""]
        assert math.fsum(everything["code_length_bits"]) == pytest.approx(run.code_length_bits, rel=1e-12, abs=0)
        assert everything["n_bytes"].sum() == run.n_bytes
        mine = docs[docs["run_id"] == run.run_id]
        expected = pd.DataFrame(curve_from_tokens(tokens[tokens["run_id"] == run.run_id],
                                                  dict(zip(mine["doc_index"], mine["domain"], strict=True))))
        pd.testing.assert_frame_equal(rows.astype(expected.dtypes.to_dict()), expected, check_exact=False,
                                      rtol=1e-12)
    uniform = curve[curve["run_id"] == summary.loc[summary["model"] == "uniform-bytes", "run_id"].item()]
    assert set(uniform["context_bucket_start"]) == {0}  # no model, no context: every byte in [0, 1)
