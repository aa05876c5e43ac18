"""The "Model anatomy" section of a report: the lens tables of each run, and width against depth.

Present only when a selected run has ``component_codes`` / ``ffn_activity`` / ``ffn_pruning`` rows, or the
corpus has prequential runs of several shapes (``mdlbench prequential --arch-grid``). Every number is read from
the tables; the derived ones use the formulas of ``mdlbench.lens.rows`` (restated in the text).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mdlbench.report import anatomy_figures
from mdlbench.report.data import LeaderRow, Results
from mdlbench.report.document import Block, Figure, Heading, Para, Table
from mdlbench.report.figures import short

DASH = "—"


def _mbit(bits: float) -> str:
    return DASH if bits is None or math.isnan(bits) else f"{bits / 1e6:,.3f}"


def _bits(x: float) -> str:
    return DASH if x is None or math.isnan(x) else f"{x:+,.1f}"


def _size(n: float | None) -> str:
    if n is None or math.isnan(n) or math.isinf(n):
        return "any size" if n is not None and math.isinf(n) else DASH
    for div, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.3g} B"


def break_even_bytes(param_bits_saved: float, delta_data_bits: float, n_bytes: int) -> float:
    """Corpus size up to which the cheaper model is the shorter two-part code: the parameter bits it saves over
    its extra data bits per byte (Δ data bits grow with the corpus, the saving does not). inf when it costs no
    data bits. Example: 1e6 parameter bits saved, 100 more data bits on 10 kB -> 1e8 bytes (100 MB)."""
    if delta_data_bits <= 0:
        return math.inf
    return param_bits_saved * n_bytes / delta_data_bits


def _n_bytes(res: Results, run_id: str) -> int:
    return int(res.docs_of(run_id)["n_bytes"].sum())


def _of(df: pd.DataFrame | None, run_id: str) -> pd.DataFrame:
    return pd.DataFrame() if df is None else df[df["run_id"] == run_id]


def component_summary(comp: pd.DataFrame, n_bytes: int) -> Table:
    """One line per component: its best k (largest net_bits_saved), in words and numbers."""
    rows = []
    for component in dict.fromkeys(comp[comp["layer"] == -1]["component"]):
        g = comp[(comp["component"] == component) & (comp["layer"] == -1)]
        stored = g[g["bits"] == 0].iloc[0]
        quant = g[g["bits"] > 0]
        if quant.empty:
            continue
        best = quant.sort_values(["net_bits_saved", "bits"], ascending=[False, True]).iloc[0]
        fewer = float(stored["param_bits"] - best["param_bits"])
        more = float(best["delta_data_bits"])
        exact = int(best["n_quantized_params"]) == 0
        data_words = f"{more:,.1f} more data bits" if more >= 0 else f"{-more:,.1f} fewer data bits"
        words = (f"kept exactly (1-D tensors only), zstd-19 codes it in {fewer:,.0f} fewer bits" if exact else
                 f"stored at {int(best['bits'])} bits it costs {fewer:,.0f} fewer parameter bits and {data_words}")
        rows.append([f"`{component}`", f"{int(stored['n_params']):,}", str(stored["reference_code"]),
                     _mbit(float(stored["param_bits"])), "exact" if exact else str(int(best["bits"])),
                     _mbit(fewer), _bits(more), _mbit(float(best["net_bits_saved"])),
                     _size(break_even_bytes(fewer, more, n_bytes)), words])
    return Table(["component", "parameters", "stored as", "stored (Mbit)", "best k", "parameter Mbit saved",
                  "Δ data bits", "net Mbit saved", "pays up to a corpus of", "in one line"], rows,
                 [False, True, False, True, False, True, True, True, True, False])


def component_grid(comp: pd.DataFrame, n_bytes: int) -> Table:
    """Every (component, k) of the all-layers rows, with the corpus size each k-bit code pays up to."""
    rows = []
    for r in comp[comp["layer"] == -1].sort_values(["component", "bits"]).itertuples():
        marginal = r.marginal_data_bits_per_param_bit
        saved = r.param_bits_reference - r.param_bits
        pays = DASH if r.bits == 0 else "never" if saved <= 0 else _size(break_even_bytes(saved, r.delta_data_bits,
                                                                                          n_bytes))
        rows.append([f"`{r.component}`", "stored" if r.bits == 0 else str(r.bits), _mbit(r.param_bits),
                     _bits(r.delta_data_bits), _mbit(r.net_bits_saved),
                     DASH if marginal is None or pd.isna(marginal) else f"{marginal:.3g}", pays])
    return Table(["component", "bits", "parameter Mbit", "Δ data bits", "net Mbit saved",
                  "Δ data bits per parameter bit saved", "pays up to a corpus of"], rows,
                 [False, True, True, True, True, True, True])


def _lens_blocks(res: Results, row: LeaderRow, fig_dir: Path, rel: str, slug: str) -> list[Block]:
    run_id = row.run_id
    n_bytes = _n_bytes(res, run_id)
    comp, act, prune = _of(res.component_codes, run_id), _of(res.ffn_activity, run_id), _of(res.ffn_pruning, run_id)
    name = short(row.model, 32)
    blocks: list[Block] = [Heading(4, f"`{row.model}` (run `{run_id}`)")]
    if not comp.empty:
        path = anatomy_figures.component_tradeoff(comp[comp["layer"] == -1], fig_dir / f"components-{slug}.png",
                                                  title=f"{name}: each component at k bits, the rest as stored")
        blocks += [
            Para("**What each part costs.** One component at a time is rounded to k bits (RTN per output channel, "
                 "the `quantized-k` code restricted to it) and the corpus re-scored; `stored` is the component as "
                 "the checkpoint holds it. net = stored − k-bit parameter bits − Δ data bits; it pays up to the "
                 f"corpus size stored-saving × bytes / Δ data bits (this corpus: {n_bytes:,} bytes)."),
            component_summary(comp, n_bytes),
            Figure(f"{rel}/{path.name}", "Δ data bits against the component's parameter bits; each line runs from "
                                         "the stored form (square, Δ = 0) through k = 8 … 2 (labelled dots). Down "
                                         "and left is better."),
            component_grid(comp, n_bytes)]
    if not act.empty:
        path = anatomy_figures.activity_by_layer(act, fig_dir / f"activity-{slug}.png",
                                                 title=f"{name}: FFN activity per layer (coded positions)")
        overall = act[act["domain"] == ""].sort_values("layer")
        rule = str(overall["active_rule"].iloc[0])
        tau = overall["activity_threshold"].iloc[0]
        rule_text = rule if tau is None or pd.isna(tau) else rule.replace("tau", f"τ = {float(tau):g}")
        blocks += [
            Para(f"**How silent the FFN is.** Activation `{overall['activation'].iloc[0]}`; a neuron is active at a "
                 f"position when {rule_text}. Counted over the {int(overall['n_positions'].iloc[0]):,} coded "
                 "positions of the base pass, each token once. Mean active fraction = Σ active / (positions × "
                 "d_ff); dead = never active; p10/p50/p90 = quantiles over neurons of the fraction of positions "
                 "where each is active."),
            Figure(f"{rel}/{path.name}", "Per layer: mean active fraction (left) and the share of Σ|h| carried by "
                                         "the top 10% of neurons at each position (right); black = all documents."),
            Table(["layer", "positions", "d_ff", "mean active", "dead", "active < 1%", "p10", "p50", "p90",
                   "top-10% |h| share"],
                  [[str(r.layer), f"{r.n_positions:,}", str(r.d_ff), f"{r.mean_active_fraction:.4f}",
                    str(r.dead_neurons), str(r.neurons_active_under_1pct), f"{r.p10:.3f}", f"{r.p50:.3f}",
                    f"{r.p90:.3f}", f"{r.top10pct_mass_share:.3f}"] for r in overall.itertuples()],
                  [False] + [True] * 9)]
    if not prune.empty:
        path = anatomy_figures.pruning_curves(prune, n_bytes, fig_dir / f"pruning-{slug}.png",
                                              title=f"{name}: removing FFN neurons (held-out, cross-fitted)")
        rows = []
        for r in prune.sort_values(["layer", "criterion", "fraction"]).itertuples():
            rows.append([r.criterion, f"{r.fraction:g}", "all" if r.layer == -1 else str(r.layer),
                         f"{r.neurons_removed:,}", f"{r.params_removed:,}", _mbit(r.param_bits_saved),
                         _bits(r.delta_data_bits), _mbit(r.net_bits_saved),
                         _size(break_even_bytes(r.param_bits_saved, r.delta_data_bits, n_bytes))])
        blocks += [
            Para("**Is the silence compressible?** The fraction of neurons is removed for real in every layer "
                 "(smaller matrices), ranked on one document fold (sha256(doc)[0] mod 2) and scored on the other, "
                 "both ways; `random` is the control. Δ data bits = held-out bits − unmodified bits; parameter "
                 "bits saved = removed parameters × their stored width."),
            Figure(f"{rel}/{path.name}", "Left: held-out Δ data bits per criterion (random: the control). Right: "
                                         "the corpus size up to which the pruned model is the shorter two-part "
                                         "code, parameter bits saved × bytes / Δ data bits (▲: it costs no data "
                                         "bits, so it pays at any size)."),
            Table(["criterion", "fraction", "layer", "neurons removed", "parameters removed", "parameter Mbit saved",
                   "Δ data bits", "net Mbit saved", "pays up to a corpus of"], rows,
                  [False, True, False, True, True, True, True, True, True])]
    return blocks


def grid_cells(res: Results, corpus: str) -> pd.DataFrame:
    """One row per prequential run of the corpus with a recorded shape: mean and sd of bits/byte over seeds."""
    p = res.prequential
    if p is None or "n_layer" not in p.columns or "ffn_ratio" not in p.columns:
        return pd.DataFrame()
    p = p[(p["corpus"] == corpus) & p["n_layer"].notna() & p["ffn_ratio"].notna()]
    out = []
    for (run_id, estimator), g in p.groupby(["run_id", "estimator"], sort=True):
        bpb = [float(b) / int(n) for b, n in zip(g["prequential_bits"], g["n_bytes"], strict=True)]
        out.append({"run_id": run_id, "estimator": estimator, "n_layer": int(g["n_layer"].iloc[0]),
                    "ffn_ratio": float(g["ffn_ratio"].iloc[0]), "d_model": int(g["d_model"].iloc[0]),
                    "d_ff": int(g["d_ff"].iloc[0]), "n_params": int(g["n_params"].iloc[0]), "n_seeds": len(g),
                    "bits_per_byte_mean": statistics.fmean(bpb),
                    "bits_per_byte_sd": statistics.stdev(bpb) if len(bpb) > 1 else math.nan})
    return pd.DataFrame(out)


def _grid_blocks(cells: pd.DataFrame, corpus: str, fig_dir: Path, rel: str, slug: str) -> list[Block]:
    path = anatomy_figures.width_depth(cells, fig_dir / f"width-depth-{slug}.png",
                                       title=f"Width against depth on {corpus}: prequential code per shape")
    spread = (cells["n_params"].max() - cells["n_params"].min()) / cells["n_params"].median()
    rows = [[str(r.n_layer), f"{r.ffn_ratio:g}", str(r.d_model), str(r.d_ff), f"{r.n_params:,}", str(r.n_seeds),
             f"{r.bits_per_byte_mean:.4f}", DASH if pd.isna(r.bits_per_byte_sd) else f"{r.bits_per_byte_sd:.4f}",
             f"`{r.run_id[:16]}`"] for r in cells.sort_values(["n_layer", "ffn_ratio"]).itertuples()]
    return [Para(f"**Width against depth.** Each cell is an independent prequential run (a model trained as it "
                 f"reads, so its bits/byte is a complete code). Parameter counts span {100 * spread:.1f}% of their "
                 "median across cells."),
            Figure(f"{rel}/{path.name}", "Prequential bits/byte against the FFN ratio, one line per depth "
                                         "(mean ± sd over seeds; labels: d_model)."),
            Table(["n_layer", "ffn_ratio", "d_model", "d_ff", "parameters", "seeds", "bits/byte", "sd", "run"], rows,
                  [True, True, True, True, True, True, True, True, False])]


def anatomy_section(res: Results, rows: Sequence[LeaderRow], corpus: str, fig_dir: Path, rel: str,
                    slug: str) -> list[Block]:
    """The section's blocks for one corpus, or [] when there is nothing to show."""
    lensed = [r for r in rows if any(not _of(df, r.run_id).empty for df in
                                     (res.component_codes, res.ffn_activity, res.ffn_pruning))]
    cells = grid_cells(res, corpus)
    shaped = not cells.empty and (cells["n_layer"].nunique() > 1 or cells["ffn_ratio"].nunique() > 1)
    if not lensed and not shaped:
        return []
    blocks: list[Block] = [Heading(3, "Model anatomy")]
    for i, r in enumerate(lensed):
        blocks += _lens_blocks(res, r, fig_dir, rel, f"{slug}-{i}")
    if shaped:
        blocks += _grid_blocks(cells, corpus, fig_dir, rel, slug)
    return blocks
