"""The content of a report: which tables, figures and notes, in which order (rendered by ``document``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mdlbench.codelength import bits_per_byte, fsum_bits
from mdlbench.config import UNIFORM_BYTES
from mdlbench.errors import InputError
from mdlbench.report import anatomy, context, figures
from mdlbench.report.data import (
    MATCHED_MODE,
    OPTIONAL_TABLES,
    Comparison,
    LeaderRow,
    PrequentialRow,
    Results,
    best_baseline,
    compare_runs,
    domain_rates,
    leaderboard,
    prequential_rows,
    provenance,
)
from mdlbench.report.document import Block, Bullets, Figure, Heading, Para, Table

DASH = "—"
LEADERBOARD_TITLE = "Leaderboard"


# ------------------------------------------------------------------------------------------------ number formats


def f4(x: float | None) -> str:
    return DASH if x is None or math.isnan(x) else f"{x:.4f}"


def ci(low: float, high: float) -> str:
    return DASH if math.isnan(low) or math.isnan(high) else f"[{low:.4f}, {high:.4f}]"


def count(n: int | float | None) -> str:
    """A count with an SI suffix: 134515008 -> '134.5M'; below 10,000 the exact number."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return DASH
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= 10 * div or (abs(n) >= div and suffix != "k"):
            return f"{n / div:.1f}{suffix}"
    return f"{n:,.0f}"


def size_bytes(n: float | None) -> str:
    """Bytes in decimal units: 1.53e11 -> '153 GB'."""
    if n is None or math.isnan(n):
        return DASH
    for div, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.3g} B"


def bits(x: float) -> str:
    return DASH if math.isnan(x) else f"{x:.4g}"


# ------------------------------------------------------------------------------------------------ sections


def leaderboard_table(rows: Sequence[LeaderRow], preq: Sequence[PrequentialRow], show_ffn: bool) -> Table:
    header = ["model", "parameters"] + (["FFN share"] if show_ffn else []) + [
        "bits/byte", "95% CI", "bits/token", "bits/char", f"best compressor ({MATCHED_MODE})", "ratio to it",
        "best compressor (concatenated)", "two-part bits/byte", "break-even corpus size", "prequential bits/byte",
        "run"]
    out = []
    for r in rows:
        uniform = r.model == UNIFORM_BYTES
        ffn = ([DASH if r.ffn_param_share is None else f"{100 * r.ffn_param_share:.1f}%"] if show_ffn else [])
        base = DASH if r.baseline_name is None else f"{r.baseline_name} ({r.baseline_bpb:.4f})"
        concat = DASH if r.concat_name is None else f"{r.concat_name} ({r.concat_bpb:.4f})"
        tp = DASH if r.two_part_code is None else f"{r.two_part_bpb:.4f} ({r.two_part_code})"
        if r.two_part_code is None:
            be = DASH
        elif r.break_even_bytes is None:
            be = f"never (vs {r.break_even_vs})"
        else:
            be = f"{size_bytes(r.break_even_bytes)} (vs {r.break_even_vs})"
        out.append([f"`{r.model}`", "0 (none)" if uniform else count(r.n_params), *ffn, f4(r.rates.bits_per_byte),
                    ci(r.rates.ci_low, r.rates.ci_high), f4(r.rates.bits_per_token), f4(r.rates.bits_per_char),
                    base, f4(r.ratio_to_baseline), concat, tp, be, DASH, f"`{r.run_id}`"])
    for p in preq:
        sd = "" if math.isnan(p.bits_per_byte_sd) else f" ± {p.bits_per_byte_sd:.4f}"
        cond = f", conditional on {p.conditional_on}" if p.conditional_on else ""
        out.append([f"prequential `{p.estimator}` ({p.mode}, {p.n_seeds} seed{'s' * (p.n_seeds != 1)}{cond})", DASH,
                    *([DASH] if show_ffn else []), DASH, DASH, DASH, DASH, DASH, DASH, DASH, DASH, DASH,
                    f"{p.bits_per_byte_mean:.4f}{sd}", f"`{p.run_id[:16]}`"])
    return Table(header, out, [False, True] + ([True] if show_ffn else []) + [True, False, True, True, False, True,
                                                                                False, False, False, False, False])


def _leaderboard_notes(rows: Sequence[LeaderRow], n_docs: int, n_bytes: int) -> Para:
    return Para(
        f"Bits/byte is Σ code length / Σ UTF-8 bytes over the {n_docs} documents ({n_bytes:,} bytes), sum-then-divide; "
        "the 95% CI is the percentile document bootstrap (documents resampled with replacement, never tokens) "
        "with the run's own resamples and seed. Bits/token "
        "divides by the model's own tokens, so it is not comparable across tokenizers; bits/byte and bits/char are. "
        "The matched compressor is the best verified one coding each document alone (`per_document`), as the "
        "models do; `concatenated` codes the corpus as one stream (cross-document context the models do not get). "
        "Ratio < 1: the model beats that compressor. Two-part bits/byte adds the cheapest parameter code "
        "(parameters + tokenizer) to the data bits; the break-even corpus size is the fixed cost divided by the "
        "saving per byte against the matched compressor (or raw bytes). Prequential learners start from scratch "
        "and pay for what they learn as they read: their bits/byte is already a complete code (mean ± sd over "
        "seeds).")


def _absent(res: Results, name: str) -> Para:
    return Para(f"**Absent:** no `{name}` table in `{res.out_dir}` for these runs (fill it with "
                f"{_commands(OPTIONAL_TABLES[name])}).")


def _commands(commands: Sequence[str]) -> str:
    return " or ".join(f"`{c}`" for c in commands)


def _domain_section(res: Results, corpus: str, colors: dict[str, str], fig_dir: Path, rel: str) -> list[Block]:
    doms = domain_rates(res, corpus)
    names = sorted({d.domain for d in doms})
    models = [r.model for r in leaderboard(res, corpus)] if doms else []
    blocks: list[Block] = [Heading(3, "Bits per byte by domain")]
    if not doms:
        return blocks + [Para("No documents.")]
    path = figures.domain_bars(doms, colors, corpus, fig_dir / f"domains-{_slug(corpus)}.png")
    blocks.append(Figure(f"{rel}/{path.name}", f"Bits/byte per domain on {corpus}: Σ bits / Σ bytes within the "
                                                "domain (each document coded alone), 95% document-bootstrap CI."))
    by = {(d.model, d.domain): d.rates for d in doms}
    docs_in = {n: next(d.rates for d in doms if d.domain == n) for n in names}
    rows = []
    for n in names:
        row = [f"`{n}`", str(docs_in[n].n_docs), f"{docs_in[n].n_bytes:,}"]
        for m in models:
            r = by.get((m, n))
            row.append(DASH if r is None else f"{r.bits_per_byte:.4f} {ci(r.ci_low, r.ci_high)}")
        rows.append(row)
    blocks.append(Table(["domain", "documents", "bytes", *[f"`{figures.short(m)}` bits/byte [95% CI]" for m in models]],
                        rows, [False, True, True] + [True] * len(models)))
    return blocks


def comparison_table(comp: Comparison) -> Table:
    rows = [[f"`{d.label}`", str(d.n_docs), f"{d.n_bytes:,}", f4(d.bpb_a), f4(d.bpb_b), f"{d.delta:+.4f}",
             ci(d.ci_low, d.ci_high)] for d in [comp.overall, *comp.by_domain]]
    return Table(["documents", "D", "bytes", "R(A)", "R(B)", "ΔR = R(A) − R(B)", "95% CI"], rows,
                 [False, True, True, True, True, True, True])


def _comparison_section(res: Results, rows: Sequence[LeaderRow], fig_dir: Path, rel: str) -> list[Block]:
    a, b = rows[0], rows[1]
    try:
        comp = compare_runs(res, a.run_id, b.run_id)
    except InputError as exc:  # e.g. two selections of the same corpus name that share no document
        return [Heading(3, "Paired comparison"), Para(f"Not computed: {exc}.")]
    path = figures.paired_forest(comp, fig_dir / f"paired-{_slug(a.corpus)}.png")
    return [Heading(3, "Paired comparison"),
            Para(f"A = `{a.model}` (`{a.run_id}`), B = `{b.model}` (`{b.run_id}`), matched on (corpus_sha256, doc_id): "
                 f"{comp.overall.n_docs} documents ({comp.n_unmatched} unmatched). ΔR = Σ(b_A − b_B) / Σ bytes; the CI "
                 f"resamples documents with the same indices for both models ({comp.n_samples:,} resamples, seed "
                 f"{comp.seed}), which removes the variance between documents. "
                 f"`mdlbench compare {a.run_id} {b.run_id} --out {res.out_dir}` prints the same."),
            comparison_table(comp),
            Figure(f"{rel}/{path.name}", "ΔR overall and per domain with paired-bootstrap 95% CIs (left of 0: A "
                                         "needs fewer bits).")]


def _two_part_section(res: Results, rows: Sequence[LeaderRow], colors: dict[str, str], fig_dir: Path,
                      rel: str) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Two-part codes")]
    tp = res.two_part
    with_tp = [r for r in rows if tp is not None and (tp["run_id"] == r.run_id).any()]
    if not with_tp:
        return blocks + [_absent(res, "two_part")]
    path = figures.two_part_bars(res, with_tp, colors, fig_dir / f"two-part-{_slug(rows[0].corpus)}.png")
    blocks.append(Figure(f"{rel}/{path.name}", "Two-part code per model and parameter code, in bits per byte of the "
                                               "corpus, on two linear axes: data bits L(D|θ) (left; each document "
                                               "coded alone, against raw bytes at 8 and the best per-document "
                                               "compressor) and parameter + tokenizer bits L(θ) (right, with the "
                                               "total L(θ) + L(D|θ) at the end of each bar)."))
    table_rows = []
    assert tp is not None
    for r in with_tp:
        for _, c in tp[tp["run_id"] == r.run_id].sort_values("total_bits").iterrows():
            be = c["break_even_bytes_vs_uniform"]
            table_rows.append([f"`{figures.short(r.model)}`", f"`{c['param_code']}`", bits(float(c["model_bits"])),
                               bits(float(c["tokenizer_bits"])), bits(float(c["data_bits"])),
                               bits(float(c["total_bits"])), f4(float(c["data_bits_per_byte"])),
                               f4(float(c["total_bits_per_byte"])), f4(float(c["adjusted_compression_rate"])),
                               "never" if pd.isna(be) else size_bytes(float(be))])
    blocks.append(Table(["model", "parameter code", "L(θ) bits", "tokenizer bits", "L(D|θ) bits", "total bits",
                         "data bits/byte", "total bits/byte", "adjusted rate (fraction)", "break-even vs raw bytes"],
                        table_rows, [False, False] + [True] * 8))
    return blocks


def _baselines_section(res: Results, corpus_sha256: str) -> list[Block]:
    """One row per compressor, one bits/byte column per mode (best matched first)."""
    blocks: list[Block] = [Heading(3, "Classical compressors")]
    b = None if res.baselines is None else res.baselines[res.baselines["corpus_sha256"] == corpus_sha256]
    if b is None or b.empty:
        return blocks + [_absent(res, "baselines")]
    modes = [m for m in (MATCHED_MODE, "per_document_header_once", "concatenated") if (b["mode"] == m).any()]
    modes += sorted(set(b["mode"]) - set(modes))
    rows = []
    first = b[b["mode"] == modes[0]].sort_values(["bits_per_byte", "compressor"])["compressor"].tolist()
    for comp in first + sorted(set(b["compressor"]) - set(first)):
        g = b[b["compressor"] == comp]
        cells = []
        for m in modes:
            r = g[g["mode"] == m]
            cells.append(DASH if r.empty else f"{float(r['bits_per_byte'].iloc[0]):.4f}")
        bad = g[~g["roundtrip_verified"].astype(bool)]
        errors = ", ".join(f"{m}: {e}" for m, e in zip(bad["mode"], bad["roundtrip_error"], strict=True))
        check = "yes" if bad.empty else f"**no** ({errors})"
        rows.append([f"`{comp}`", *cells, check, f"{g['library'].iloc[0]} {g['library_version'].iloc[0]}"])
    sizes = ", ".join(f"`{m}` {int(b.loc[b['mode'] == m, 'n_bytes'].iloc[0]):,} bytes in" for m in modes)
    return blocks + [Para("Every compressor on exactly the bytes the models scored (matched by corpus sha256), in "
                          f"bits/byte ({sizes}; `concatenated` counts the separators between documents). "
                          "Deterministic, so no CI; an unverified round trip is never used as the best compressor."),
                     Table(["compressor", *[f"{m} bits/byte" for m in modes], "round trip verified", "library"],
                           rows, [False] + [True] * len(modes) + [False, False])]


def _prequential_section(res: Results, corpus: str, corpus_sha256: str, preq: Sequence[PrequentialRow],
                         fig_dir: Path, rel: str) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Prequential code")]
    if not preq:
        return blocks + [_absent(res, "prequential")]
    rows = [[f"`{p.estimator}`", p.mode, str(p.n_seeds), f"{p.n_tokens:,}", f"{p.n_bytes:,}",
             f4(p.bits_per_byte_mean), f4(p.bits_per_byte_sd), f4(p.uniform_bits_per_byte), p.conditional_on or DASH,
             f"`{p.run_id[:16]}`"] for p in preq]
    blocks.append(Table(["estimator", "mode", "seeds", "tokens", "bytes", "bits/byte (mean)", "sd over seeds",
                         "uniform code bits/byte", "conditional on", "run"], rows,
                        [False, False, True, True, True, True, True, True, False, False]))
    if res.prequential_blocks is not None and not res.prequential_blocks.empty:
        base = best_baseline(res, corpus_sha256, MATCHED_MODE)
        path = figures.prequential_curves(
            res, corpus, preq, None if base is None else float(base["bits_per_byte"]),
            None if base is None else str(base["compressor"]), fig_dir / f"prequential-{_slug(corpus)}.png")
        blocks.append(Figure(f"{rel}/{path.name}", "Left: cumulative prequential code length against tokens seen, "
                                                   "with the uniform code and the best per-document compressor "
                                                   "(bytes attributed to blocks). Right: each block's bits/token."))
    else:
        blocks.append(Para("**Absent:** no `prequential_blocks` rows, so no curves."))
    return blocks


def _coding_section(res: Results, rows: Sequence[LeaderRow]) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Real coding")]
    c = res.coding
    with_c = [r for r in rows if c is not None and (c["run_id"] == r.run_id).any()]
    if not with_c:
        return blocks + [_absent(res, "coding")]
    assert c is not None
    out = []
    for r in with_c:
        g = c[c["run_id"] == r.run_id].merge(res.docs_of(r.run_id)[["doc_index", "n_bytes"]], on="doc_index",
                                            how="left")
        ideal, coded = fsum_bits(g["ideal_bits"]), fsum_bits(g["coded_bits"].astype("float64"))
        nb = int(g["n_bytes"].fillna(0).sum())
        ok = int(g["roundtrip_ok"].astype(bool).sum())
        out.append([f"`{figures.short(r.model)}`", str(len(g)), f"{nb:,}", bits(ideal), bits(coded),
                    f"{100 * (coded - ideal) / ideal:.3f}%" if ideal > 0 else DASH, f4(bits_per_byte(ideal, nb)),
                    f4(bits_per_byte(coded, nb)), f"{int(g['header_bytes'].sum()):,}",
                    f"{ok}/{len(g)}" + ("" if ok == len(g) else " **FAILED**")])
    return blocks + [Para("An arithmetic coder driven by the model: ideal bits are Σ −log2 p of the symbols coded, "
                          "coded bits are 8 × the payload (container headers listed separately)."),
                     Table(["model", "documents", "bytes", "ideal bits", "coded bits", "overhead", "ideal bits/byte",
                            "coded bits/byte", "header bytes", "round trips ok"], out,
                           [False] + [True] * 8 + [False])]


def _provenance(res: Results) -> list[Block]:
    p = provenance(res)
    blocks: list[Block] = [Heading(2, "Provenance"),
                           Table(["mdlbench", "scoring code", "torch", "transformers"], p["versions"]),
                           Table(["corpus", "source", "corpus sha256 (documents scored)"],
                                 [[f"`{c}`", f"`{s}`", f"`{h}`"] for c, s, h in p["corpora"]]),
                           Table(["run", "model", "format", "revision", "weights sha256 (16)",
                                  "tokenizer sha256 (16)", "documents / bytes / tokens", "round-trip failures",
                                  "window W", "stride S", "first token", "end", "protocol", "dtype", "device",
                                  "bootstrap B / seed", "finished (UTC)"],
                                 [[f"`{r[0]}`", f"`{r[1]}`", *r[2:]] for r in p["settings"]])]
    if "compressors" in p:
        blocks.append(Table(["compressor", "library", "version", "setting"], p["compressors"]))
    if "prequential" in p:
        blocks.append(Table(["prequential run", "estimator", "mode", "seed", "conditional on"], p["prequential"]))
    return blocks


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)[:60] or "corpus"


def build_report(res: Results, out_dir: Path, *, command: str, fig_subdir: str = "figures",
                 attribution: bool = False, context_domains: bool = False) -> list[Block]:
    """Every block of the report; figures are written to ``out_dir / fig_subdir``. ``attribution`` adds the
    `mdlbench view` page of two runs with per-token rows (for HTML reports); ``context_domains`` draws the context
    curves per domain too."""
    fig_dir = Path(out_dir) / fig_subdir
    colors = figures.model_colors(res.runs["model"].astype(str).tolist())
    n_preq = 0 if res.prequential is None else res.prequential["run_id"].nunique()
    show_ffn = "ffn_param_share" in res.runs.columns and res.runs["ffn_param_share"].notna().any()
    blocks: list[Block] = [
        Para(f"Regenerate: `{command}`"),
        Heading(1, "mdlbench report"),
        Para(f"{len(res.runs)} model run{'s' * (len(res.runs) != 1)}"
             + (f" and {n_preq} prequential run{'s' * (n_preq != 1)}" if n_preq else "") + f" on {len(res.corpora)} "
             f"corpus{'es' * (len(res.corpora) != 1)} ({', '.join(f'`{c}`' for c in res.corpora)}), read from the "
             f"Parquet tables in `{res.out_dir}`. All rates are sum-then-divide over documents; every number is "
             "recomputed from the `documents`, `baselines`, `two_part`, `prequential` and `coding` tables with "
             "`mdlbench.codelength` and `mdlbench.mdl.two_part`."),
    ]
    if res.absent:
        blocks.append(Bullets([f"**Absent:** `{name}` (fill it with {_commands(how)})"
                               for name, how in res.absent.items()]))
    for corpus in res.corpora:
        rows = leaderboard(res, corpus)
        preq = prequential_rows(res, corpus)
        if not rows:  # prequential runs only: a learner that reads the corpus, no scored model
            blocks += [Heading(2, f"Corpus `{corpus}`")]
            blocks += _prequential_section(res, corpus, "", preq, fig_dir, fig_subdir)
            continue
        sha = str(res.runs_of(corpus)["corpus_sha256"].iloc[0])
        docs = res.documents[res.documents["run_id"] == rows[0].run_id]
        blocks += [Heading(2, f"Corpus `{corpus}`"), Heading(3, LEADERBOARD_TITLE),
                   leaderboard_table(rows, preq, bool(show_ffn)),
                   _leaderboard_notes(rows, len(docs), int(docs["n_bytes"].sum()))]
        path = figures.bpb_vs_params(res, rows, colors, fig_dir / f"bpb-vs-params-{_slug(corpus)}.png")
        blocks += [Heading(3, "Bits per byte against model size"),
                   Figure(f"{fig_subdir}/{path.name}",
                          f"Bits/byte against parameter count on {corpus} (log x, a tick at each model's size; "
                          "95% CI; each document coded alone). References: uniform-bytes at 8, the per-document "
                          "compressors as a band from the best to the worst family (dashed: the best), and the best "
                          "compressor on the corpus as one stream (dotted). Models of equal size are drawn side by "
                          "side around their tick.")]
        blocks += _domain_section(res, corpus, colors, fig_dir, fig_subdir)
        if len(rows) == 2:
            blocks += _comparison_section(res, rows, fig_dir, fig_subdir)
        # Where the bits go (context.py): context curves, window sweeps, the attribution page.
        blocks += context.context_section(res, corpus, colors, fig_dir, fig_subdir, _slug(corpus),
                                          by_domain=context_domains)
        blocks += context.window_sweep_section(res, corpus, colors, fig_dir, fig_subdir, _slug(corpus))
        if attribution:
            blocks += context.attribution_section(res, rows, fig_dir, fig_subdir, _slug(corpus))
        blocks += _two_part_section(res, rows, colors, fig_dir, fig_subdir)
        blocks += anatomy.anatomy_section(res, rows, corpus, fig_dir, fig_subdir, _slug(corpus))
        blocks += _baselines_section(res, sha)
        blocks += _prequential_section(res, corpus, sha, preq, fig_dir, fig_subdir)
        blocks += _coding_section(res, rows)
    return blocks + _provenance(res)
