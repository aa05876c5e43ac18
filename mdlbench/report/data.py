"""Load a results folder's Parquet tables and join them into the rows a report shows.

Everything here reads tables and calls the pure functions the runs used (``mdlbench.codelength``,
``mdlbench.mdl.two_part``); nothing is re-derived by other arithmetic. Rates are sum-then-divide.

Joins:
* ``documents`` and ``summary`` join ``runs`` on ``run_id``; ``two_part`` / ``two_part_vs_baseline`` and ``coding``
  are partitioned by the same ``run_id``.
* ``baselines`` join a run on ``corpus_sha256`` (the exact bytes scored), never on the corpus name.
* ``prequential`` / ``prequential_blocks`` are runs of their own (a model that learns as it reads); they join a
  corpus by its name, the only key they store.
* Two runs are paired document by document on ``(corpus_sha256, doc_id)``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdlbench import tables
from mdlbench.baselines.run import best_verified
from mdlbench.codelength import (
    BITS_PER_BYTE,
    bits_per_byte,
    bits_per_char,
    bits_per_token,
    bootstrap_ratio_ci,
    fsum_bits,
    paired_bootstrap_diff_ci,
)
from mdlbench.errors import InputError
from mdlbench.mdl.two_part import break_even_bytes

NO_DOMAIN = "(none)"
MATCHED_MODE = "per_document"  # the baseline protocol that matches the models' per-document coding
WHOLE_MODE = "concatenated"

# Optional tables and the command that fills each one (for the "absent" note of a report).
OPTIONAL_TABLES: dict[str, tuple[str, ...]] = {
    "baselines": ("mdlbench run", "mdlbench baselines -c CORPUS --out DIR"),  # on by default in `run`
    "two_part": ("mdlbench run --two-part naive,gguf-file",),  # on by default for models with parameters
    "prequential": ("mdlbench run --prequential", "mdlbench prequential -c CORPUS --out DIR"),
    "coding": ("mdlbench run --verify-coding N",),
    "context_curve": ("mdlbench run",),  # written by every model run
}


def read_any(out_dir: Path, name: str) -> pd.DataFrame | None:
    """A table as a DataFrame, or None when the folder has no partition of it."""
    key = tables.TABLES[name][0]
    if not any((Path(out_dir) / name).glob(f"{key}=*/part-0.parquet")):
        return None
    return tables.read_table(out_dir, name)


@dataclass
class Results:
    """The selected runs of a results folder and every table that refers to them (None: table absent)."""

    out_dir: Path
    runs: pd.DataFrame
    documents: pd.DataFrame
    summary: pd.DataFrame | None
    baselines: pd.DataFrame | None
    two_part: pd.DataFrame | None
    two_part_vs_baseline: pd.DataFrame | None
    prequential: pd.DataFrame | None
    prequential_blocks: pd.DataFrame | None
    coding: pd.DataFrame | None
    absent: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> commands that fill it
    context_curve: pd.DataFrame | None = None
    # The lens (mdlbench lens): None when absent; the "Model anatomy" section appears only with them.
    component_codes: pd.DataFrame | None = None
    ffn_activity: pd.DataFrame | None = None
    ffn_pruning: pd.DataFrame | None = None

    @property
    def corpora(self) -> list[str]:
        """Corpora of the selected runs, and of the prequential runs."""
        names = set(self.runs["corpus"].astype(str))
        if self.prequential is not None:
            names |= set(self.prequential["corpus"].astype(str))
        return sorted(names)

    def runs_of(self, corpus: str) -> pd.DataFrame:
        return self.runs[self.runs["corpus"] == corpus]

    def docs_of(self, run_id: str) -> pd.DataFrame:
        return self.documents[self.documents["run_id"] == run_id].sort_values("doc_index")


def resolve_runs(runs: pd.DataFrame, wanted: Sequence[str], out_dir: Path) -> list[str]:
    """Run ids for each of ``wanted``: a run id, a unique prefix of one, or a model name (or the ``-m`` spec it was
    run with, e.g. ``default``) with one run."""
    ids = runs["run_id"].astype(str).tolist()
    found = []
    for w in wanted:
        hits = [i for i in ids if i == w] or [i for i in ids if i.startswith(w)] or \
            runs.loc[runs["model"].astype(str) == w, "run_id"].astype(str).tolist() or \
            [str(r.run_id) for r in runs.itertuples() if _model_spec(r) == w]
        if len(hits) != 1:
            candidates = runs[runs["run_id"].astype(str).isin(hits)] if hits else runs
            listing = ", ".join(f"{r.run_id} ({r.model} × {r.corpus})" for r in candidates.itertuples())
            what = "matches no run" if not hits else f"is ambiguous: it names {len(hits)} runs"
            raise InputError(f"run {w!r} {what} in {out_dir}; give a run id (or a unique prefix) from: {listing}")
        found.append(hits[0])
    return found


def _model_spec(run: Any) -> str | None:
    """The ``-m`` spec a run was made with (recorded in config_json), or None."""
    import json

    raw = getattr(run, "config_json", None)
    try:
        return json.loads(raw).get("model_spec") if isinstance(raw, str) and raw else None
    except ValueError:
        return None


def load_results(out_dir: Path, *, run_ids: Sequence[str] | None = None, corpus: str | None = None) -> Results:
    """Read a results folder; raises InputError when it holds no runs or a selection matches nothing."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: no such results folder; give the --out folder of `mdlbench run`")
    runs = read_any(out_dir, "runs")
    prequential = read_any(out_dir, "prequential")
    if (runs is None or runs.empty) and (prequential is None or prequential.empty):
        raise InputError(f"{out_dir}: no runs in this folder (no runs/ or prequential/ partitions); run "
                         f"`mdlbench run --out {out_dir}` first or give the folder that holds the results")
    if runs is None:
        runs = tables.read_table(out_dir, "runs")  # empty, with the columns: a folder of prequential runs only
    if run_ids:
        runs = runs[runs["run_id"].isin(resolve_runs(runs, run_ids, out_dir))]
    if corpus is not None:
        names = sorted(set(runs["corpus"].astype(str)) | (set(prequential["corpus"].astype(str))
                                                          if prequential is not None else set()))
        if corpus not in names:
            raise InputError(f"--corpus {corpus!r}: no selected run scored it; corpora here: {', '.join(names)}")
        runs = runs[runs["corpus"] == corpus]
    runs = runs.sort_values(["corpus", "model", "run_id"]).reset_index(drop=True)
    selected = set(runs["run_id"])

    def by_run(name: str) -> pd.DataFrame | None:
        df = read_any(out_dir, name)
        return None if df is None else df[df["run_id"].isin(selected)].reset_index(drop=True)

    documents = by_run("documents")
    if documents is None and not runs.empty:
        raise InputError(f"{out_dir}: runs without a documents table; the folder is incomplete — run "
                         f"`mdlbench gc {out_dir}` and re-run")
    if documents is None:
        documents = tables.read_table(out_dir, "documents")
    documents = documents.merge(runs[["run_id", "corpus_sha256"]], on="run_id", how="left")
    documents["domain"] = documents["domain"].fillna(NO_DOMAIN).replace("", NO_DOMAIN)

    baselines = read_any(out_dir, "baselines")
    if baselines is not None:
        baselines = baselines[baselines["corpus_sha256"].isin(set(runs["corpus_sha256"]))].reset_index(drop=True)
    blocks = read_any(out_dir, "prequential_blocks")
    if prequential is not None:
        # Prequential runs of the selected corpora; on their own (no model runs, or no selection) every one.
        keep = set(runs["corpus"]) if (run_ids or len(runs)) else set(prequential["corpus"])
        if corpus is not None:
            keep = {corpus}
        prequential = prequential[prequential["corpus"].isin(keep)].reset_index(drop=True)
        if blocks is not None:
            blocks = blocks[blocks["run_id"].isin(set(prequential["run_id"]))].reset_index(drop=True)
    res = Results(out_dir=out_dir, runs=runs, documents=documents, summary=by_run("summary"),
                  baselines=baselines, two_part=by_run("two_part"),
                  two_part_vs_baseline=by_run("two_part_vs_baseline"), prequential=prequential,
                  prequential_blocks=blocks, coding=by_run("coding"), context_curve=by_run("context_curve"),
                  component_codes=by_run("component_codes"), ffn_activity=by_run("ffn_activity"),
                  ffn_pruning=by_run("ffn_pruning"))
    for name, how in OPTIONAL_TABLES.items():
        df = getattr(res, name)
        if df is None or df.empty:
            res.absent[name] = how
    return res


# ------------------------------------------------------------------------------------------------ per-run numbers


def n_params_of(run: pd.Series) -> int:
    """Unique parameters of a run (0 for uniform-bytes, which has none)."""
    v = run.get("n_params")
    return 0 if v is None or pd.isna(v) else int(v)


@dataclass(frozen=True)
class Rates:
    """Sums over a set of documents and the ratios of those sums."""

    n_docs: int
    n_bytes: int
    n_chars: int
    n_tokens: int
    code_length_bits: float
    bits_per_byte: float
    bits_per_char: float
    bits_per_token: float
    ci_low: float
    ci_high: float


def rates(docs: pd.DataFrame, *, n_samples: int, seed: int) -> Rates:
    """Σ bits / Σ bytes (chars, tokens) and the document-bootstrap 95% CI of bits/byte."""
    bits = docs["code_length_bits"].to_numpy(dtype=np.float64)
    n_bytes = docs["n_bytes"].to_numpy(dtype=np.int64)
    total = fsum_bits(bits)
    nb, nc, nt = int(n_bytes.sum()), int(docs["n_chars"].sum()), int(docs["n_tokens"].sum())
    low, high = bootstrap_ratio_ci(bits, n_bytes, n_samples=n_samples, seed=seed)
    return Rates(len(docs), nb, nc, nt, total, bits_per_byte(total, nb), bits_per_char(total, nc),
                 bits_per_token(total, nt), low, high)


def bootstrap_settings(run: pd.Series) -> tuple[int, int]:
    """(resamples, seed) the run recorded, so the report's CIs are the run's."""
    n = run.get("bootstrap_samples")
    s = run.get("seed")
    return (10_000 if n is None or pd.isna(n) else int(n)), (0 if s is None or pd.isna(s) else int(s))


def best_baseline(res: Results, corpus_sha256: str, mode: str) -> pd.Series | None:
    """The verified compressor row with the fewest bits/byte on these exact bytes in ``mode``, or None."""
    return best_verified(res.baselines, mode, corpus_sha256)


def best_two_part(res: Results, run_id: str) -> pd.Series | None:
    """The parameter code with the smallest total_bits_per_byte for a run, or None."""
    if res.two_part is None:
        return None
    t = res.two_part[res.two_part["run_id"] == run_id]
    if t.empty:
        return None
    return t.sort_values(["total_bits_per_byte", "param_code"]).iloc[0]


@dataclass(frozen=True)
class LeaderRow:
    """One line of the leaderboard (NaN/None where a table is absent)."""

    run_id: str
    model: str
    corpus: str
    n_params: int
    ffn_param_share: float | None
    rates: Rates
    summary_ci: tuple[float, float] | None  # the CI stored by the run (None: no summary row)
    baseline_name: str | None
    baseline_bpb: float
    ratio_to_baseline: float
    concat_name: str | None
    concat_bpb: float
    two_part_code: str | None
    two_part_bpb: float
    break_even_vs: str | None
    break_even_bytes: float | None
    prequential_bpb: float = math.nan
    prequential_sd: float = math.nan
    prequential_seeds: int = 0


def leaderboard(res: Results, corpus: str) -> list[LeaderRow]:
    """Models on a corpus, best bits/byte first, then the prequential learners on that corpus."""
    rows = []
    for _, run in res.runs_of(corpus).iterrows():
        n_samples, seed = bootstrap_settings(run)
        r = rates(res.docs_of(run["run_id"]), n_samples=n_samples, seed=seed)
        ci = None
        if res.summary is not None:
            s = res.summary[res.summary["run_id"] == run["run_id"]]
            if not s.empty:
                ci = (float(s["bpb_ci_low"].iloc[0]), float(s["bpb_ci_high"].iloc[0]))
        base = best_baseline(res, run["corpus_sha256"], MATCHED_MODE)
        concat = best_baseline(res, run["corpus_sha256"], WHOLE_MODE)
        base_bpb = float(base["bits_per_byte"]) if base is not None else math.nan
        tp = best_two_part(res, run["run_id"])
        be_vs, be = None, None
        if tp is not None:
            # Break-even against the best matched compressor when there is one, else against raw bytes (8 b/B).
            be_vs, be_bpb = (base["compressor"], base_bpb) if base is not None else ("raw bytes",
                                                                                     BITS_PER_BYTE)
            be = break_even_bytes(float(tp["model_bits"]) + float(tp["tokenizer_bits"]),
                                  float(tp["data_bits_per_byte"]), be_bpb)
        share = run.get("ffn_param_share")
        rows.append(LeaderRow(
            run_id=str(run["run_id"]), model=str(run["model"]), corpus=corpus, n_params=n_params_of(run),
            ffn_param_share=None if share is None or pd.isna(share) else float(share), rates=r, summary_ci=ci,
            baseline_name=None if base is None else str(base["compressor"]), baseline_bpb=base_bpb,
            ratio_to_baseline=r.bits_per_byte / base_bpb if base is not None else math.nan,
            concat_name=None if concat is None else str(concat["compressor"]),
            concat_bpb=float(concat["bits_per_byte"]) if concat is not None else math.nan,
            two_part_code=None if tp is None else str(tp["param_code"]),
            two_part_bpb=float(tp["total_bits_per_byte"]) if tp is not None else math.nan,
            break_even_vs=be_vs, break_even_bytes=be))
    rows.sort(key=lambda x: (math.isnan(x.rates.bits_per_byte), x.rates.bits_per_byte, x.model))
    return rows


@dataclass(frozen=True)
class PrequentialRow:
    """A prequential learner on a corpus: bits/byte over seeds (mean, sample sd)."""

    run_id: str
    estimator: str
    mode: str
    conditional_on: str
    n_seeds: int
    bits_per_byte_mean: float
    bits_per_byte_sd: float
    n_tokens: int
    n_bytes: int
    uniform_bits_per_byte: float


def prequential_rows(res: Results, corpus: str) -> list[PrequentialRow]:
    """One row per (prequential run, estimator, mode, conditional_on) on a corpus; seeds are aggregated as mean ± sd
    (METHODS §7: training randomness is reported across seeds, not mixed with the document bootstrap)."""
    if res.prequential is None:
        return []
    p = res.prequential[res.prequential["corpus"] == corpus]
    out = []
    keys = ["run_id", "estimator", "mode", "conditional_on"]
    for key, g in p.groupby(keys, sort=True, dropna=False):
        bpb = [bits_per_byte(float(b), int(n)) for b, n in zip(g["prequential_bits"], g["n_bytes"], strict=True)]
        unif = bits_per_byte(float(g["uniform_bits"].iloc[0]), int(g["n_bytes"].iloc[0]))
        out.append(PrequentialRow(str(key[0]), str(key[1]), str(key[2]), "" if pd.isna(key[3]) else str(key[3]),
                                  len(g), statistics.fmean(bpb), statistics.stdev(bpb) if len(bpb) > 1 else math.nan,
                                  int(g["n_tokens"].iloc[0]), int(g["n_bytes"].iloc[0]), unif))
    return out


# ------------------------------------------------------------------------------------------------ domains, pairs


@dataclass(frozen=True)
class DomainRate:
    run_id: str
    model: str
    domain: str
    rates: Rates


def domain_rates(res: Results, corpus: str) -> list[DomainRate]:
    """Bits/byte per (model, domain): Σ bits / Σ bytes within the domain, with a document-bootstrap CI."""
    out = []
    for _, run in res.runs_of(corpus).iterrows():
        n_samples, seed = bootstrap_settings(run)
        docs = res.docs_of(run["run_id"])
        for domain, g in docs.groupby("domain", sort=True):
            out.append(DomainRate(str(run["run_id"]), str(run["model"]), str(domain),
                                  rates(g, n_samples=n_samples, seed=seed)))
    return out


@dataclass(frozen=True)
class PairedDiff:
    """ΔR = Σ(b_A − b_B) / Σ n_bytes over documents both runs scored, with a paired-bootstrap CI."""

    label: str  # "all" or a domain
    n_docs: int
    n_bytes: int
    bpb_a: float
    bpb_b: float
    delta: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    model_a: str
    model_b: str
    corpus: str
    n_unmatched: int  # documents of either run without a partner
    n_samples: int
    seed: int
    overall: PairedDiff
    by_domain: list[PairedDiff]


def paired(docs_a: pd.DataFrame, docs_b: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Documents of A and B matched on (corpus_sha256, doc_id): columns bits_a, bits_b, n_bytes, domain."""
    key = ["corpus_sha256", "doc_id"]
    a = docs_a[key + ["code_length_bits", "n_bytes", "domain"]]
    b = docs_b[key + ["code_length_bits", "n_bytes"]]
    m = a.merge(b, on=key, suffixes=("_a", "_b"), how="inner", validate="one_to_one")
    bad = m[m["n_bytes_a"] != m["n_bytes_b"]]
    if not bad.empty:
        raise InputError(f"document {bad['doc_id'].iloc[0]!r} has {bad['n_bytes_a'].iloc[0]} bytes in one run and "
                         f"{bad['n_bytes_b'].iloc[0]} in the other: the runs did not score the same text")
    m = m.rename(columns={"code_length_bits_a": "bits_a", "code_length_bits_b": "bits_b", "n_bytes_a": "n_bytes"})
    m = m.sort_values(key).reset_index(drop=True)
    return m[["doc_id", "domain", "bits_a", "bits_b", "n_bytes"]], len(a) + len(b) - 2 * len(m)


def _diff(label: str, m: pd.DataFrame, n_samples: int, seed: int) -> PairedDiff:
    a, b, n = (m["bits_a"].to_numpy(np.float64), m["bits_b"].to_numpy(np.float64), m["n_bytes"].to_numpy(np.int64))
    point, low, high = paired_bootstrap_diff_ci(a, b, n, n_samples=n_samples, seed=seed)
    nb = int(n.sum())
    return PairedDiff(label, len(m), nb, bits_per_byte(fsum_bits(a), nb), bits_per_byte(fsum_bits(b), nb),
                      point, low, high)


def compare_runs(res: Results, run_a: str, run_b: str, *, n_samples: int | None = None,
                 seed: int | None = None) -> Comparison:
    """Paired comparison of two runs on the documents they share (same resampled indices for both)."""
    ra = res.runs[res.runs["run_id"] == run_a].iloc[0]
    rb = res.runs[res.runs["run_id"] == run_b].iloc[0]
    m, unmatched = paired(res.docs_of(run_a), res.docs_of(run_b))
    if m.empty:
        raise InputError(f"runs {run_a} ({ra['corpus']}, sha256 {str(ra['corpus_sha256'])[:12]}) and {run_b} "
                         f"({rb['corpus']}, sha256 {str(rb['corpus_sha256'])[:12]}) share no document; compare "
                         "two runs on the same corpus")
    default_n, default_seed = bootstrap_settings(ra)
    n_samples = default_n if n_samples is None else n_samples
    seed = default_seed if seed is None else seed
    by_domain = [_diff(str(d), g, n_samples, seed) for d, g in m.groupby("domain", sort=True)]
    return Comparison(run_a, run_b, str(ra["model"]), str(rb["model"]), str(ra["corpus"]), unmatched, n_samples,
                      seed, _diff("all", m, n_samples, seed), by_domain)


# ------------------------------------------------------------------------------------------------ provenance


def provenance(res: Results) -> dict[str, list[tuple[str, ...]]]:
    """Versions, corpus sources and hashes, settings and ids of the selected runs, as rows of small tables."""
    def s(v: Any) -> str:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return "—"
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)  # ints read back as float

    runs = res.runs
    versions = sorted({tuple(s(r.get(c)) for c in ("mdlbench_version", "scoring_code_version", "torch_version",
                                                     "transformers_version")) for _, r in runs.iterrows()})
    corpora = sorted({(s(r["corpus"]), s(r["corpus_source"]), s(r["corpus_sha256"])) for _, r in runs.iterrows()})
    settings = []
    for _, r in runs.iterrows():
        docs = res.docs_of(r["run_id"])
        failures = int((~docs["tokenizer_roundtrip_ok"].fillna(True).astype(bool)).sum())
        settings.append((s(r["run_id"]), s(r["model"]), s(r["model_format"]), s(r["model_revision"]) or "—",
                         s(r["model_sha256"])[:16] or "—", s(r["tokenizer_sha256"])[:16] or "—",
                         f"{len(docs)} / {int(docs['n_bytes'].sum()):,} / {int(docs['n_tokens'].sum()):,}",
                         str(failures), s(r["window"]), s(r["stride"]), s(r["first_token"]), s(r["end"]),
                         s(r["protocol"]), s(r["dtype"]), s(r["device"]),
                         f"{s(r['bootstrap_samples'])} / {s(r['seed'])}", s(r["finished_at"])))
    out: dict[str, list[tuple[str, ...]]] = {"versions": versions, "corpora": corpora, "settings": settings}
    if res.baselines is not None and not res.baselines.empty:
        out["compressors"] = sorted({(s(r["compressor"]), s(r["library"]), s(r["library_version"]), s(r["setting"]))
                                     for _, r in res.baselines.iterrows()})
    if res.prequential is not None and not res.prequential.empty:
        out["prequential"] = sorted({(s(r["run_id"])[:16], s(r["estimator"]), s(r["mode"]), s(r["seed"]),
                                      s(r["conditional_on"]) or "—") for _, r in res.prequential.iterrows()})
    return out
