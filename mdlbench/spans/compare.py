"""The `--spans` part of `mdlbench compare`: cut two runs' documents into the byte spans both tokenizations agree
on, write the pair's span_diff partition, and aggregate it (by domain and span class, with the paired document
bootstrap) with the spans that differ most."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench.spans import diff
from mdlbench.spans.texts import run_texts

TOP_SPANS = 20


@dataclass
class SpanComparison:
    run_a: str
    run_b: str
    path: Path
    n_spans: int
    n_docs: int
    by_domain: list[Any]
    by_class: list[Any]
    gains: Any  # DataFrame
    losses: Any

    def as_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        def agg(a: Any) -> dict[str, Any]:
            return {"label": a.label, "n_docs": a.n_docs, "n_spans": a.n_spans, "n_bytes": a.n_bytes,
                    "bits_a": a.bits_a, "bits_b": a.bits_b, "delta_bits": a.delta_bits,
                    "bits_per_byte_a": num(a.bpb_a), "bits_per_byte_b": num(a.bpb_b),
                    "delta_bits_per_byte": num(a.delta), "ci_low": num(a.ci_low), "ci_high": num(a.ci_high)}

        def spans(df: Any) -> list[dict[str, Any]]:
            return [{"doc_id": r.doc_id, "span_start": int(r.span_start), "span_end": int(r.span_end), "text": r.text,
                     "bits_a": r.bits_a, "bits_b": r.bits_b, "delta_bits": r.delta_bits} for r in df.itertuples()]

        return {"table": str(self.path), "n_spans": self.n_spans, "n_docs": self.n_docs,
                "by_domain": [agg(a) for a in self.by_domain], "by_class": [agg(a) for a in self.by_class],
                "top_gains": spans(self.gains), "top_losses": spans(self.losses)}


def span_comparison(res: Any, run_a: str, run_b: str, *, corpus: str | None, n_samples: int,
                    seed: int) -> SpanComparison:
    """Validate, cut, aggregate, then write the pair's span_diff partition (nothing is written on bad input)."""
    runs = res.runs.set_index("run_id")
    for rid in (run_a, run_b):  # both refusals come before reading any corpus
        diff.check_run_tokens(res.out_dir, {"run_id": rid, "model": runs.loc[rid, "model"]})
    docs = diff.pair_documents(res, run_a, run_b)
    texts = run_texts({**runs.loc[run_a].to_dict(), "run_id": run_a}, set(docs["doc_id"]), corpus)
    spans = diff.build_spans(res, run_a, run_b, texts)
    frame = diff.frame_of(run_a, run_b, spans)
    by_domain, by_class = diff.aggregates(frame, n_samples=n_samples, seed=seed)
    gains, losses = diff.extremes(frame, TOP_SPANS)
    path = diff.write_span_diff(res.out_dir, run_a, run_b, spans)
    return SpanComparison(run_a, run_b, path, len(frame), len(spans), by_domain, by_class, gains, losses)
