"""Byte-aligned attribution between two runs: the ``span_diff`` table and its paired-bootstrap aggregates.

Reads a results folder (``tokens``, ``documents``, ``runs``) and the texts the runs scored (spans.texts); the
arithmetic is spans.refine (where the spans are) and mdlbench.codelength (rates and the document bootstrap,
the same paired resampling ``compare`` uses). One run may be compared with itself (``view`` without
``--against`` shows a run's own tokens that way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mdlbench import tables
from mdlbench.codelength import bits_per_byte, fsum_bits, paired_bootstrap_diff_ci
from mdlbench.errors import InputError
from mdlbench.report.data import NO_DOMAIN, Results, paired
from mdlbench.spans.refine import (
    SPAN_CLASSES,
    TilingError,
    check_tiling,
    classes_of,
    lead_offsets,
    refine,
    span_sums,
    span_texts,
)

TABLE = "span_diff"
TOKEN_COLUMNS = ["doc_index", "doc_id", "token_index", "token_id", "byte_start", "byte_end", "context_tokens",
                 "code_length_bits"]


def pair_id(run_a: str, run_b: str) -> str:
    """Partition value of the span_diff rows of the ordered pair (A, B)."""
    return f"{run_a}-{run_b}"


@dataclass(frozen=True, slots=True)
class Tokens:
    """One run's coded symbols of one document, in token order (arrays aligned)."""

    token_id: np.ndarray
    byte_start: np.ndarray
    byte_end: np.ndarray
    context_tokens: np.ndarray
    code_length_bits: np.ndarray


def _tokens_path(out_dir: Path, run: Mapping[str, object]) -> Path:
    """The run's tokens partition; InputError when it has none or its tokens do not map to bytes."""
    run_id, model = str(run["run_id"]), str(run["model"])
    path = tables.partition_dir(Path(out_dir), "tokens", run_id) / "part-0.parquet"
    if not path.is_file():
        raise InputError(f"run {run_id} ({model}) has no per-token rows in {out_dir}/tokens; score it again with "
                         "`mdlbench run ... --per-token` (same options otherwise)")
    starts = pq.read_table(path, columns=["byte_start"]).column("byte_start")
    if len(starts) and pc.min(starts).as_py() < 0:
        t = pq.read_table(path, columns=["doc_id", "byte_start"]).to_pandas()
        bad = t.loc[t["byte_start"] < 0, "doc_id"].unique()
        raise InputError(f"run {run_id} ({model}): its tokenizer's tokens do not map to bytes (byte_start -1 in its "
                         f"tokens table, {len(bad)} of {t['doc_id'].nunique()} documents, e.g. {bad[0]!r}), so its "
                         "bits cannot be placed on byte spans; compare runs of byte-level tokenizers")
    return path


def check_run_tokens(out_dir: Path, run: Mapping[str, object]) -> None:
    """Raise InputError unless the run has per-token rows with byte spans (read before anything is computed)."""
    _tokens_path(out_dir, run)


def read_run_tokens(out_dir: Path, run: Mapping[str, object],
                    doc_ids: Sequence[str] | None = None) -> dict[str, Tokens]:
    """{doc_id: Tokens} of a run (only ``doc_ids`` when given); InputError as check_run_tokens."""
    path = _tokens_path(out_dir, run)
    filters = [("doc_id", "in", list(doc_ids))] if doc_ids is not None else None
    df = pq.read_table(path, columns=TOKEN_COLUMNS, filters=filters).to_pandas()
    df = df.sort_values(["doc_index", "token_index"], kind="stable")
    out = {}
    for doc_id, g in df.groupby("doc_id", sort=False):
        out[str(doc_id)] = Tokens(*(g[c].to_numpy(np.int64) for c in ("token_id", "byte_start", "byte_end",
                                                                      "context_tokens")),
                                  g["code_length_bits"].to_numpy(np.float64))
    return out


_EMPTY = Tokens(*(np.zeros(0, dtype=np.int64) for _ in range(4)), np.zeros(0, dtype=np.float64))


@dataclass(frozen=True)
class DocumentSpans:
    """One document cut into the common refinement of two runs' tokens (see spans.refine)."""

    doc_id: str
    domain: str
    data: bytes
    span_start: np.ndarray
    span_end: np.ndarray
    text: list[str]
    span_class: list[str]
    bits_a: np.ndarray
    bits_b: np.ndarray
    span_of_a: np.ndarray
    span_of_b: np.ndarray
    tokens_a: Tokens
    tokens_b: Tokens

    @property
    def n_bytes(self) -> int:
        return len(self.data)


def document_spans(doc_id: str, domain: str, text: str, tokens_a: Tokens | None, tokens_b: Tokens | None,
                   labels: tuple[str, str] = ("A", "B")) -> DocumentSpans:
    """The spans of one document; InputError naming the run when its tokens do not tile the text's bytes."""
    data = text.encode("utf-8")
    ta, tb = tokens_a or _EMPTY, tokens_b or _EMPTY
    for label, t in zip(labels, (ta, tb), strict=True):
        try:
            check_tiling(t.byte_start, t.byte_end, len(data))
        except TilingError as exc:
            raise InputError(f"document {doc_id!r}: the tokens of run {label} do not tile its {len(data)} bytes "
                             f"({exc}); the tokens table and the corpus text disagree") from None
    r = refine(ta.byte_start, ta.byte_end, tb.byte_start, tb.byte_end, len(data))
    leads = lead_offsets(data)
    return DocumentSpans(doc_id, domain, data, r.span_start, r.span_end, span_texts(data, r.span_start, r.span_end,
                                                                                     leads),
                         classes_of(data, r.span_start, r.span_end, leads),
                         span_sums(r.span_of_a, ta.code_length_bits, len(r)),
                         span_sums(r.span_of_b, tb.code_length_bits, len(r)), r.span_of_a, r.span_of_b, ta, tb)


def pair_documents(res: Results, run_a: str, run_b: str) -> pd.DataFrame:
    """Documents both runs scored (doc_id, domain, bits_a, bits_b, n_bytes); InputError if none."""
    m, _ = paired(res.docs_of(run_a), res.docs_of(run_b))
    if m.empty:
        raise InputError(f"runs {run_a} and {run_b} share no document; compare two runs on the same corpus")
    return m


def build_spans(res: Results, run_a: str, run_b: str, texts: Mapping[str, str],
                doc_ids: Sequence[str] | None = None) -> list[DocumentSpans]:
    """DocumentSpans of the documents both runs scored (or of ``doc_ids``), checked against the documents table:
    per document the spans add up to each run's code length."""
    runs = res.runs.set_index("run_id")
    ra, rb = runs.loc[run_a], runs.loc[run_b]
    docs = pair_documents(res, run_a, run_b)
    if doc_ids is not None:
        docs = docs.set_index("doc_id").loc[list(doc_ids)].reset_index()
    tok_a = read_run_tokens(res.out_dir, {"run_id": run_a, "model": ra["model"]}, doc_ids)
    tok_b = tok_a if run_b == run_a else read_run_tokens(res.out_dir, {"run_id": run_b, "model": rb["model"]},
                                                         doc_ids)
    out = []
    for d in docs.itertuples(index=False):
        doc_id = str(d.doc_id)
        if doc_id not in texts:
            raise InputError(f"document {doc_id!r} is not in the corpus texts read for run {run_a}")
        domain = "" if d.domain == NO_DOMAIN else str(d.domain)  # the documents table's value, not the label
        spans = document_spans(doc_id, domain, texts[doc_id], tok_a.get(doc_id), tok_b.get(doc_id),
                               (f"{run_a} ({ra['model']})", f"{run_b} ({rb['model']})"))
        for label, bits, want in (("A", spans.bits_a, d.bits_a), ("B", spans.bits_b, d.bits_b)):
            got = fsum_bits(bits)
            if not math.isclose(got, float(want), rel_tol=1e-9, abs_tol=1e-9):
                raise InputError(f"document {doc_id!r}: run {label}'s tokens add up to {got:.6f} bits but its "
                                 f"documents row says {float(want):.6f}; the results folder is inconsistent")
        out.append(spans)
    return out


def span_rows(run_a: str, run_b: str, docs: Sequence[DocumentSpans]) -> dict[str, list | np.ndarray]:
    """The span_diff columns (without the partition key) of documents cut into spans."""
    cols: dict[str, list] = {name: [] for name in tables.TABLES[TABLE][1].names}
    for d in docs:
        n = len(d.span_start)
        cols["run_id_a"] += [run_a] * n
        cols["run_id_b"] += [run_b] * n
        cols["doc_id"] += [d.doc_id] * n
        cols["domain"] += [d.domain] * n
        cols["span_start"] += d.span_start.tolist()
        cols["span_end"] += d.span_end.tolist()
        cols["text"] += d.text
        cols["span_class"] += d.span_class
        cols["bits_a"] += d.bits_a.tolist()
        cols["bits_b"] += d.bits_b.tolist()
        cols["delta_bits"] += (d.bits_a - d.bits_b).tolist()
    return cols


def write_span_diff(out_dir: Path, run_a: str, run_b: str, docs: Sequence[DocumentSpans]) -> Path:
    """Commit the pair's span_diff partition atomically (replacing an earlier one); returns its folder."""
    arrow = tables.columns_to_arrow(TABLE, span_rows(run_a, run_b, docs))
    tables.commit(Path(out_dir), {(TABLE, pair_id(run_a, run_b)): arrow})
    return tables.partition_dir(Path(out_dir), TABLE, pair_id(run_a, run_b))


# ------------------------------------------------------------------------------------------------ aggregates


@dataclass(frozen=True)
class SpanAggregate:
    """Σ over a set of spans of the matched documents, with ΔR's paired document-bootstrap 95% CI."""

    label: str
    n_docs: int  # documents holding at least one such span
    n_spans: int
    n_bytes: int
    bits_a: float
    bits_b: float
    delta_bits: float
    bpb_a: float
    bpb_b: float
    delta: float  # ΔR = Σ(b_A − b_B) / Σ bytes (NaN without bytes: the end spans)
    ci_low: float
    ci_high: float


def _aggregate(label: str, frame: pd.DataFrame, doc_ids: Sequence[str], n_samples: int, seed: int) -> SpanAggregate:
    """One aggregate; every matched document is a resampling unit (one without such spans contributes 0 / 0)."""
    width = (frame["span_end"] - frame["span_start"]).to_numpy(np.int64)
    per_doc = frame.assign(n_bytes=width).groupby("doc_id")[["bits_a", "bits_b", "n_bytes"]].agg(
        {"bits_a": fsum_bits, "bits_b": fsum_bits, "n_bytes": "sum"}).reindex(doc_ids, fill_value=0)
    a, b = per_doc["bits_a"].to_numpy(np.float64), per_doc["bits_b"].to_numpy(np.float64)
    n = per_doc["n_bytes"].to_numpy(np.int64)
    point, low, high = paired_bootstrap_diff_ci(a, b, n, n_samples=n_samples, seed=seed)
    n_holding = int(frame["doc_id"].nunique())
    if n_holding < 2:  # one document holds all such spans: resampling it says nothing about variation
        low = high = math.nan
    nb = int(width.sum())
    bits_a, bits_b = fsum_bits(frame["bits_a"]), fsum_bits(frame["bits_b"])
    return SpanAggregate(label, n_holding, len(frame), nb, bits_a, bits_b,
                         fsum_bits(frame["delta_bits"]), bits_per_byte(bits_a, nb), bits_per_byte(bits_b, nb),
                         point, low, high)


def aggregates(frame: pd.DataFrame, *, n_samples: int, seed: int) -> tuple[list[SpanAggregate], list[SpanAggregate]]:
    """(overall + by domain, by span class) of a span_diff frame of one pair; classes in SPAN_CLASSES order."""
    doc_ids = sorted(frame["doc_id"].unique().tolist())
    by_domain = [_aggregate("all", frame, doc_ids, n_samples, seed)]
    for domain, g in frame.groupby("domain", sort=True):
        ids = sorted(g["doc_id"].unique().tolist())
        by_domain.append(_aggregate(str(domain) or NO_DOMAIN, g, ids, n_samples, seed))
    by_class = [_aggregate(c, frame[frame["span_class"] == c], doc_ids, n_samples, seed)
                for c in SPAN_CLASSES if (frame["span_class"] == c).any()]
    return by_domain, by_class


def frame_of(run_a: str, run_b: str, docs: Sequence[DocumentSpans]) -> pd.DataFrame:
    return pd.DataFrame(span_rows(run_a, run_b, docs))


def extremes(frame: pd.DataFrame, k: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The k spans where A gains most over B (most negative delta_bits) and the k where it loses most."""
    keys = ["delta_bits", "doc_id", "span_start"]
    gains = frame[frame["delta_bits"] < 0].sort_values(keys, kind="stable").head(k)
    losses = frame[frame["delta_bits"] > 0].sort_values(keys, ascending=[False, True, True], kind="stable").head(k)
    return gains, losses
