"""The page of `mdlbench view`: which documents to show, and the HTML of a run's bits (or two runs' difference)."""

from __future__ import annotations

from typing import Any

from mdlbench.errors import InputError
from mdlbench.spans import diff
from mdlbench.spans.page import RunLabel, render_page
from mdlbench.spans.texts import run_texts

DEFAULT_VIEW_DOCS = 5


def default_documents(pair: Any, against: bool, top: int) -> list[str]:
    """Documents a page shows by default: the ``top`` with the largest |Δ bits| (ties: corpus order), or the first
    ``top`` of the run."""
    if against:
        order = pair.assign(absdelta=(pair["bits_a"] - pair["bits_b"]).abs()).sort_values(
            "absdelta", ascending=False, kind="stable")
        return order["doc_id"].astype(str).head(top).tolist()
    return pair["doc_id"].astype(str).head(top).tolist()


def build_view(res: Any, run_a: str, run_b: str | None, doc_ids: list[str] | None, *, top: int = DEFAULT_VIEW_DOCS,
               corpus: str | None = None) -> tuple[str, list[str]]:
    """(the page's HTML (see spans.page), the documents shown); InputError for a run without per-token rows or
    unknown documents."""
    runs = res.runs.set_index("run_id")
    other = run_b if run_b is not None else run_a
    for rid in dict.fromkeys((run_a, other)):
        diff.check_run_tokens(res.out_dir, {"run_id": rid, "model": runs.loc[rid, "model"]})
    pair = diff.pair_documents(res, run_a, other)
    if doc_ids:
        known = set(pair["doc_id"].astype(str))
        missing = [d for d in doc_ids if d not in known]
        if missing:
            sample = ", ".join(sorted(known)[:8])
            raise InputError(f"--doc {missing[0]!r}: not a document of run {run_a}"
                             + (f" shared with {run_b}" if run_b else "") + f"; ids look like: {sample}")
        chosen = list(dict.fromkeys(doc_ids))
    else:
        chosen = default_documents(pair, run_b is not None, top)
    texts = run_texts({**runs.loc[run_a].to_dict(), "run_id": run_a}, set(chosen), corpus)
    spans = diff.build_spans(res, run_a, other, texts, chosen)
    labels = {rid: RunLabel(rid, str(runs.loc[rid, "model"])) for rid in (run_a, other)}
    return render_page(spans, corpus=str(runs.loc[run_a, "corpus"]), run_a=labels[run_a],
                       run_b=labels[run_b] if run_b is not None else None), chosen
