"""Report sections for "where the bits go": context curves, window sweeps, and the attribution page.

Numbers come from the ``context_curve``, ``documents`` and ``summary`` tables (sum-then-divide, as everywhere);
the attribution page is ``mdlbench view`` for the two best runs with per-token rows (HTML reports only).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from mdlbench import tables
from mdlbench.codelength import bits_per_byte, bits_per_token, fsum_bits
from mdlbench.config import UNIFORM_BYTES
from mdlbench.errors import InputError
from mdlbench.report import context_figures as cf
from mdlbench.report.data import LeaderRow, Results
from mdlbench.report.document import Block, Embed, Figure, Heading, Para, Table
from mdlbench.report.figures import short

DASH = "—"
ATTRIBUTION_DOCS = 3


def _f4(x: float) -> str:
    return DASH if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _bucket(start: int, end: int) -> str:
    return f"[{start:,}, {end:,})"


# ------------------------------------------------------------------------------------------------ context curves


def context_section(res: Results, corpus: str, colors: dict[str, str], fig_dir: Path, rel: str, slug: str, *,
                    by_domain: bool = False) -> list[Block]:
    """Bits/token and bits/byte against context length per run, a per-bucket table, and (``by_domain``) one panel
    per domain."""
    blocks: list[Block] = [Heading(3, "Bits against context length")]
    runs = curve_runs(res.runs_of(corpus))
    curve = res.context_curve
    curve = None if curve is None else curve[curve["run_id"].isin(runs["run_id"])]
    if curve is None or curve.empty:
        return blocks + [Para(f"**Absent:** no `context_curve` rows in `{res.out_dir}` for these runs (written by "
                              "every model run of `mdlbench run`; re-run runs scored by an older version).")]
    path = cf.context_curves(curve, runs, colors, corpus, fig_dir / f"context-{slug}.png")
    blocks += [Para("Each prediction is counted in the bucket of its context length: the tokens it conditions on, "
                    "the BOS token included (0: coded without a model, e.g. a uniform first token). Bits/token divides "
                    "by the run's own tokens, so compare it only within a tokenizer; bits/byte divides by the bytes of "
                    "those tokens (the EOS symbol has none). The `all` row sums the buckets: it is the run's code "
                    "length, exactly. One run per model: the one with the largest window (the others are in the "
                    "window sweep). Only documents at least that long reach a long-context bucket, so where domains "
                    "differ in length the all-documents curve also shows which documents are long"
                    + ("; `--context-domains` draws one curve per domain." if not by_domain
                       and (curve["domain"] != "").any() else ".")),
               Figure(f"{rel}/{path.name}", f"Bits per token (left) and per byte (right) against context length on "
                                            f"{corpus}, all documents; log₂ x at each bucket's first context length; "
                                            "the dashed line is uniform-bytes at 8 bits/byte.")]
    blocks.append(_curve_table(curve, runs))
    if by_domain:
        if (curve["domain"] != "").any():
            path = cf.context_curves_by_domain(curve, runs, colors, corpus, fig_dir / f"context-domains-{slug}.png")
            blocks.append(Figure(f"{rel}/{path.name}", f"Bits per byte against context length per domain on "
                                                       f"{corpus}."))
        else:
            blocks.append(Para("No document of this corpus has a domain, so there is no per-domain curve."))
    return blocks


def curve_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per model (same name and weights): the one with the largest window, then the latest."""
    order = runs.assign(_w=runs["window"].fillna(0)).sort_values(["_w", "finished_at", "run_id"], ascending=False)
    return order.drop_duplicates(["model", "model_sha256"]).drop(columns="_w").sort_values("model")


def _curve_table(curve: pd.DataFrame, runs: pd.DataFrame) -> Table:
    shown = runs.sort_values("model")
    shown = shown[shown["run_id"].isin(curve["run_id"])]
    every = curve[curve["domain"] == ""]
    buckets = sorted({(int(s), int(e)) for s, e in zip(every["context_bucket_start"], every["context_bucket_end"],
                                                       strict=True)})
    header = ["context (tokens)"]
    for _, r in shown.iterrows():
        name = f"`{short(str(r['model']))}`" + (f" W={int(r['window'])}" if not pd.isna(r["window"]) else "")
        header += [f"{name} tokens", f"{name} bits/token", f"{name} bits/byte"]
    rows = []
    for s, e in buckets:
        row = [_bucket(s, e)]
        for _, r in shown.iterrows():
            c = every[(every["run_id"] == r["run_id"]) & (every["context_bucket_start"] == s)]
            if c.empty:
                row += [DASH, DASH, DASH]
            else:
                c0 = c.iloc[0]
                row += [f"{int(c0['n_tokens']):,}", _f4(float(c0["bits_per_token"])),
                        DASH if pd.isna(c0["bits_per_byte"]) else _f4(float(c0["bits_per_byte"]))]
        rows.append(row)
    total = ["all"]
    for _, r in shown.iterrows():
        c = every[every["run_id"] == r["run_id"]]
        bits, n_tok = fsum_bits(c["code_length_bits"]), int(c["n_tokens"].sum())
        n_bytes = None if c["n_bytes"].isna().any() else int(c["n_bytes"].sum())
        total += [f"{n_tok:,}", _f4(bits_per_token(bits, n_tok)),
                  DASH if n_bytes is None else _f4(bits_per_byte(bits, n_bytes))]
    rows.append(total)
    return Table(header, rows, [False] + [True] * (len(header) - 1))


# ------------------------------------------------------------------------------------------------ window sweeps


def _stride_rule(window: int, stride: int, absolute: bool) -> str:
    if absolute:
        return f"S = {stride:,}"
    f = Fraction(stride, window)
    if f == 1:
        return "S = W"
    return f"S = W/{f.denominator}" if f.numerator == 1 else f"S = {f.numerator}W/{f.denominator}"


def sweep_lines(res: Results, corpus: str) -> list[tuple[str, str, pd.DataFrame]]:
    """(model, stride rule, points) for every model scored at two or more windows on a corpus; points have
    window, stride, bits_per_byte (Σ bits / Σ bytes of the documents), ci_low, ci_high (the run's summary) and
    run_id, by window. Runs are one model when weights, tokenizer, policies, protocol and dtype agree."""
    runs = res.runs_of(corpus)
    runs = runs[(runs["model"].astype(str) != UNIFORM_BYTES) & runs["window"].notna()]
    keys = ["model", "model_sha256", "tokenizer_sha256", "first_token", "end", "protocol", "dtype"]
    out = []
    for _, group in runs.groupby(keys, sort=True, dropna=False):
        if group["window"].nunique() < 2:
            continue
        points = []
        for _, r in group.iterrows():
            docs = res.docs_of(r["run_id"])
            total, n = fsum_bits(docs["code_length_bits"]), int(docs["n_bytes"].sum())
            low = high = math.nan
            if res.summary is not None:
                s = res.summary[res.summary["run_id"] == r["run_id"]]
                if not s.empty:
                    low, high = float(s["bpb_ci_low"].iloc[0]), float(s["bpb_ci_high"].iloc[0])
            points.append({"window": int(r["window"]), "stride": int(r["stride"]), "run_id": str(r["run_id"]),
                           "bits_per_byte": bits_per_byte(total, n), "ci_low": low, "ci_high": high})
        p = pd.DataFrame(points)
        # Lines of a constant stride fraction (the default S = W/2) unless a constant stride gives fewer lines.
        ratio = p.apply(lambda x: _stride_rule(x["window"], x["stride"], False), axis=1)
        absolute = p.apply(lambda x: _stride_rule(x["window"], x["stride"], True), axis=1)
        rule = absolute if absolute.nunique() < ratio.nunique() else ratio
        for name, g in p.assign(rule=rule).groupby("rule", sort=True):
            out.append((str(group["model"].iloc[0]), str(name), g.sort_values("window").reset_index(drop=True)))
    return out


def window_sweep_section(res: Results, corpus: str, colors: dict[str, str], fig_dir: Path, rel: str,
                         slug: str) -> list[Block]:
    """Bits/byte against window size for models scored at several windows (nothing when there is no sweep)."""
    lines = sweep_lines(res, corpus)
    if not lines:
        return []
    curves = []
    for i, (model, rule, p) in enumerate(lines):  # a model's colour; a marker per line (stride rules differ)
        curves.append(cf.Curve(f"{short(model, 22)} ({rule})", colors.get(model, "#1f77b4"),
                               cf.MARKERS[i % len(cf.MARKERS)],
                               p["window"].to_numpy(np.float64), p["bits_per_byte"].to_numpy(np.float64),
                               p["ci_low"].to_numpy(np.float64), p["ci_high"].to_numpy(np.float64)))
    path = cf.window_sweep(curves, corpus, fig_dir / f"window-sweep-{slug}.png")
    rows = [[f"`{short(model)}`", rule, f"{int(r.window):,}", f"{int(r.stride):,}", _f4(r.bits_per_byte),
             DASH if math.isnan(r.ci_low) else f"[{r.ci_low:.4f}, {r.ci_high:.4f}]", f"`{r.run_id}`"]
            for model, rule, p in lines for r in p.itertuples()]
    return [Heading(3, "Bits per byte against window size"),
            Para("The same model scored with different windows W (tokens per forward pass; stride S = new tokens "
                 "scored per window): more context per prediction, fewer bits, until the model's own context is "
                 "used up. Bits/byte is Σ bits / Σ bytes of each run, the CI its document bootstrap."),
            Figure(f"{rel}/{path.name}", f"Bits per byte against window size on {corpus} (log₂ x), one line per "
                                         "model and stride rule, 95% CI."),
            Table(["model", "stride", "window W", "stride S", "bits/byte", "95% CI", "run"], rows,
                  [False, False, True, True, True, False, False])]


# ------------------------------------------------------------------------------------------------ attribution


def per_token_runs(res: Results, rows: list[LeaderRow]) -> list[LeaderRow]:
    """Leaderboard rows (best first) whose run has per-token rows in the results folder."""
    return [r for r in rows if tables.partition_exists(res.out_dir, "tokens", r.run_id)]


def attribution_section(res: Results, rows: list[LeaderRow], fig_dir: Path, rel: str, slug: str) -> list[Block]:
    """The `mdlbench view` page of the two best runs with per-token rows, for the documents that differ most."""
    from mdlbench.fsio import write_text_atomic
    from mdlbench.spans.view import build_view

    with_tokens = per_token_runs(res, rows)
    if len(with_tokens) < 2:
        return []
    a, b = with_tokens[0], with_tokens[1]
    blocks: list[Block] = [Heading(3, "Where the bits go between two runs")]
    try:
        page, shown = build_view(res, a.run_id, b.run_id, None, top=ATTRIBUTION_DOCS)
    except InputError as exc:
        return blocks + [Para(f"Not drawn: {exc}.")]
    path = fig_dir / f"attribution-{slug}.html"
    write_text_atomic(path, page)
    command = (f"mdlbench view {res.out_dir} --run {a.run_id} --against {b.run_id} -o page.html; "
               f"mdlbench compare {a.run_id} {b.run_id} --out {res.out_dir} --spans")
    return blocks + [
        Para(f"A = `{a.model}`, B = `{b.model}`: each document's bytes cut at every offset that is a token boundary "
             "in both runs, each span coloured by (bits under A − bits under B) / its bytes (blue: A needs fewer "
             "bits). "
             f"The {len(shown)} documents with the largest |Δ bits| are shown: {', '.join(f'`{d}`' for d in shown)}. "
             f"Hover a span for its tokens, bits and context lengths. Regenerate or look at others: `{command}`."),
        Embed(f"{rel}/{path.name}", f"Byte-aligned difference of {short(a.model)} against {short(b.model)}")]
