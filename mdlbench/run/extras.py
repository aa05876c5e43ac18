"""What a run adds beyond code lengths, each in its own table: two-part codes and real coding.

Extras are committed after (and separately from) the run's core tables and filled in on a later invocation when
missing, so re-running a job after adding ``--two-part quantized`` computes only the quantized codes. What is
missing is decided from the tables alone (``missing_two_part``, ``coding_missing``), so a rerun with nothing
missing loads no model. Compressor baselines depend only on the corpus; they run in a second process
(run/background.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from mdlbench import tables
from mdlbench.codelength import BITS_PER_BYTE, fsum_bits
from mdlbench.config import UNIFORM_BYTES
from mdlbench.corpora import Corpus
from mdlbench.errors import InputError
from mdlbench.mdl import two_part
from mdlbench.run.chunks import iter_chunks, token_columns
from mdlbench.run.plan import PlannedRun
from mdlbench.scoring.base import Scorer


def run_names(plan: PlannedRun, corpus: Corpus) -> dict[str, str]:
    """The model and corpus columns every table keyed by a run carries."""
    return {"model": str(plan.row["model"]), "corpus": corpus.name}


def corpus_data_bits(scorer: Scorer, corpus: Corpus, chunk_docs: int) -> float:
    """Σ code length of a corpus under a scorer, in the same fixed chunks as the run (bounded memory)."""
    return fsum_bits([c.code_length_bits for chunk in iter_chunks(corpus, chunk_docs) for c in scorer.score(chunk)])


def _stored(out_dir: Path, table: str, run_id: str) -> pd.DataFrame:
    if not tables.partition_exists(out_dir, table, run_id):
        return pd.DataFrame()
    return tables.read_partition(out_dir, table, run_id).drop(columns="run_id")


def missing_two_part(out_dir: Path, run_id: str, requested: Sequence[str], model_format: str) -> list[str]:
    """The requested parameter codes that the run's ``two_part`` partition does not hold yet."""
    present = _stored(out_dir, "two_part", run_id)
    codes = present["param_code"].astype(str).tolist() if len(present) else []
    return two_part.missing_codes(requested, codes, has_gguf=model_format == "gguf")


def tokens_missing(out_dir: Path, run_id: str, per_token: bool) -> bool:
    return per_token and not tables.partition_exists(out_dir, "tokens", run_id)


def tokens_partition(plan: PlannedRun, corpus: Corpus, chunk_docs: int) -> dict[tuple[str, str], Any]:
    """The ``tokens`` rows of a finished run that was scored without them: the corpus coded again in the run's own
    chunks (so the same batches and the same bits as its documents table)."""
    names = run_names(plan, corpus)
    parts = [tables.columns_to_arrow("tokens", token_columns(names["model"], names["corpus"],
                                                             sorted(plan.scorer.score(chunk),
                                                                    key=lambda c: c.doc_index)))
             for chunk in iter_chunks(corpus, chunk_docs)]
    return {("tokens", plan.run_id): pa.concat_tables(parts) if parts else tables.columns_to_arrow(
        "tokens", {n: [] for n in tables.TABLES["tokens"][1].names})}


def lens_missing(out_dir: Path, run_id: str, lens: bool) -> bool:
    return lens and not tables.partition_exists(out_dir, "component_codes", run_id)


def coding_missing(out_dir: Path, run_id: str, n_docs: int | Literal["all"]) -> bool:
    """Whether the ``coding`` partition holds fewer rows than requested ("all": the run's documents)."""
    if n_docs == "all":
        summary = _stored(out_dir, "summary", run_id)
        if not len(summary):
            return True
        n_docs = int(summary["n_docs"].iloc[0])
    return n_docs > 0 and len(_stored(out_dir, "coding", run_id)) < n_docs


def two_part_partitions(plan: PlannedRun, corpus: Corpus, summary: dict[str, Any], codes: list[str],
                        baselines: pd.DataFrame, chunk_docs: int, out_dir: Path) -> dict[tuple[str, str], Any]:
    """``two_part`` and ``two_part_vs_baseline`` for a finished run: the stored rows plus ``codes``, computed now
    (the model is loaded); ``quantized-best`` is re-chosen over every quantized code present."""
    from mdlbench.scoring.hf import HFScorer

    loaded = plan.loaded
    assert loaded is not None, "two-part codes need a model"
    scorer: Any = plan.scorer

    def rescore(model: Any) -> float:
        quantized = HFScorer(replace(loaded, model=model), scorer.settings)
        return corpus_data_bits(quantized, corpus, chunk_docs)

    try:
        new = two_part.two_part_rows(loaded.model, loaded.tokenizer, data_bits=float(summary["code_length_bits"]),
                                     n_bytes=int(summary["n_bytes"]), codes=codes, rescore=rescore,
                                     gguf_path=loaded.gguf_file)
    except ValueError as exc:
        raise InputError(f"--two-part {','.join(codes)}: {exc}") from None
    names = run_names(plan, corpus)
    stored = [{k: v for k, v in r.items() if k not in names}
              for r in _stored(out_dir, "two_part", plan.run_id).to_dict("records")]
    rows = two_part.merge_rows(stored, new)
    refs = [two_part.Baseline(str(r.compressor), str(r.mode), float(r.bits_per_byte)) for r in baselines.itertuples()]
    refs.append(two_part.Baseline(UNIFORM_BYTES, "per_document", float(BITS_PER_BYTE)))
    vs = two_part.vs_baseline_rows(rows, refs)
    return {("two_part", plan.run_id): tables.to_arrow("two_part", [{**names, **r} for r in rows]),
            ("two_part_vs_baseline", plan.run_id): tables.to_arrow("two_part_vs_baseline",
                                                                   [{**names, **r} for r in vs])}


def coding_options(plan: PlannedRun) -> dict[str, Any]:
    """The run's window, stride, first-token and end policies, as the coder takes them (``resolve_settings``)."""
    scorer: Any = plan.scorer
    return {"window": scorer.window, "stride": scorer.stride, "first_token": scorer.settings.first_token,
            "end": scorer.settings.end}


def coding_partition(plan: PlannedRun, corpus: Corpus, n_docs: int | Literal["all"]) -> dict[tuple[str, str], Any]:
    """Compress the first n_docs documents (or "all") into one lockstep archive and decompress it with a real range
    coder; the ``coding`` table."""
    from mdlbench.coding.coder import coding_table, verify_coding

    assert plan.loaded is not None, "real coding needs a model"
    docs = list(corpus.documents()) if n_docs == "all" else [
        d for _, d in zip(range(n_docs), corpus.documents(), strict=False)]
    rows = verify_coding(plan.loaded, docs, **coding_options(plan))
    names = run_names(plan, corpus)
    return {("coding", plan.run_id): coding_table([{**names, **r} for r in rows])}
