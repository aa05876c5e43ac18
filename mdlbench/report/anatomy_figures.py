"""PNG figures of the "Model anatomy" section (the lens tables and the width-against-depth prequential grid).

Same size and conventions as ``figures``: labelled axes with units, lines labelled directly at their ends (spread
apart so labels never overlap), the control (random pruning) grey and dashed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from mdlbench.report.figures import PALETTE, UNIFORM_COLOR, _new, _save, spread

CRITERION_COLORS = {"frequency": PALETTE[0], "magnitude": PALETTE[1], "random": UNIFORM_COLOR}
ALL_COLOR = "#000000"


def _end_labels(ax, items: Sequence[tuple[float, str, str]], *, min_gap: float = 0.06) -> None:
    """Labels just right of the axes at data heights (y, text, colour), spread apart; the axes scale is honoured
    (log and symlog axes go through the transform)."""
    if not items:
        return
    to_axes = ax.transAxes.inverted()
    fracs = []
    for y, _, _ in items:
        _, f = to_axes.transform(ax.transData.transform((ax.get_xlim()[1], y)))
        fracs.append(float(min(max(f, 0.0), 1.0)))
    for (_, text, color), f, g in zip(items, fracs, spread(fracs, min_gap), strict=True):
        ax.annotate(text, xy=(1.0, f), xycoords="axes fraction", xytext=(1.02, g), textcoords="axes fraction",
                    va="center", ha="left", fontsize=8, color=color,
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6} if abs(f - g) > 0.01 else None)


def _delta_axis(ax, values: np.ndarray, what: str) -> str:
    """Linear y when the nonzero |values| span less than 100x, else symlog with the linear band below the
    smallest one's decade; returns the axis label."""
    values = np.asarray(values, dtype=float)
    nonzero = np.abs(values[np.isfinite(values) & (values != 0)])
    if len(nonzero) and nonzero.max() / nonzero.min() > 100:
        lin = 10.0 ** math.floor(math.log10(nonzero.min()))
        ax.set_yscale("symlog", linthresh=lin)
        return f"{what}\n(symlog: linear within ±{lin:.0e})"
    return what


def _coinciding(x: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> list[tuple[float, float, str]]:
    """Points with the same (x, y) get one joint label ("8/4/3/2"), so none hides under another."""
    groups: dict[tuple[float, float], list[str]] = {}
    for xi, yi, lab in zip(x, y, labels, strict=True):
        groups.setdefault((float(xi), float(yi)), []).append(lab)
    return [(xi, yi, "/".join(labs)) for (xi, yi), labs in groups.items()]


def component_tradeoff(rows: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Δ data bits against parameter bits, one line per component from its stored form (a square, Δ = 0)
    through each k (circles labelled with k); the component's name is written left of its cheapest point."""
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    ylabel = _delta_axis(ax, rows["delta_data_bits"].to_numpy(float), "Δ data bits vs the unmodified model")
    ax.set_xscale("log")
    lo, hi = float(rows["param_bits"].min()), float(rows["param_bits"].max())
    ax.set_xlim(lo / 20, hi * 3)  # room for the names left of the cheapest points
    names = []
    for i, comp in enumerate(dict.fromkeys(rows["component"])):
        g = rows[rows["component"] == comp].sort_values(["param_bits", "bits"])
        color = PALETTE[i % len(PALETTE)]
        x, y = g["param_bits"].to_numpy(float), g["delta_data_bits"].to_numpy(float)
        stored = (g["bits"] == 0).to_numpy()
        ax.plot(x, y, "-", color=color, lw=1.4)
        ax.plot(x[~stored], y[~stored], "o", color=color, ms=5)
        ax.plot(x[stored], y[stored], "s", color=color, ms=8, mfc="white", mew=1.6)
        labels = [str(int(b)) for b in g["bits"]]
        for xi, yi, text in _coinciding(x[~stored], y[~stored], [lab for lab, st in zip(labels, stored,
                                                                                           strict=True) if not st]):
            ax.annotate(text, (xi, yi), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7,
                        color=color)
        names.append((x[0], y[0], comp, color))
    ax.set_ylim(ax.get_ylim())
    to_axes = ax.transAxes.inverted()
    anchors = [to_axes.transform(ax.transData.transform((x0, y0))) for x0, y0, _, _ in names]
    heights = spread([float(a[1]) for a in anchors], 0.07, 0.08, 0.95)
    for (_, _, comp, color), (fx, fy), gy in zip(names, anchors, heights, strict=True):
        ax.annotate(comp, xy=(fx, fy), xycoords="axes fraction", xytext=(fx - 0.03, gy), textcoords="axes fraction",
                    ha="right", va="center", fontsize=9, color=color, fontweight="bold",
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6} if abs(fy - gy) > 0.01 else None)
    ax.axhline(0, color=UNIFORM_COLOR, lw=0.8)
    ax.set_xlabel("parameter code of the component (bits, log scale); □ = as stored, ● = k bits (labelled)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)


def activity_by_layer(rows: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Left: mean active fraction per layer; right: share of Σ|h| in the top 10% of neurons; per domain."""
    fig, axes = _new(1, 2)
    fig.subplots_adjust(left=0.08, right=0.86, bottom=0.14, top=0.86, wspace=0.42)
    domains = ["", *sorted(set(rows["domain"]) - {""})]
    panels = (("mean_active_fraction", "mean active fraction of d_ff"), ("top10pct_mass_share",
                                                                         "share of Σ|h| in the top 10% of neurons"))
    for ax, (column, label) in zip(axes[0], panels, strict=True):
        ends = []
        for i, domain in enumerate(domains):
            g = rows[rows["domain"] == domain].sort_values("layer")
            color = ALL_COLOR if domain == "" else PALETTE[i % len(PALETTE)]
            ax.plot(g["layer"], g[column], "-", marker="o" if len(g) < 12 else None, ms=4, color=color,
                    lw=2.0 if domain == "" else 1.1)
            ends.append((float(g[column].iloc[-1]), "all" if domain == "" else domain, color))
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.set_xlim(ax.get_xlim())
        _end_labels(ax, ends, min_gap=0.07)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def pruning_curves(rows: pd.DataFrame, n_bytes: int, path: Path, *, title: str) -> Path:
    """Left: held-out Δ data bits against the fraction removed, per criterion (random = grey dashed control).
    Right: the corpus size up to which the pruned model is the shorter two-part code,
    param_bits_saved / (Δ data bits / n_bytes); a variant that costs no data bits pays at any size (▲ at the top)."""
    fig, axes = _new(1, 2)
    fig.subplots_adjust(left=0.09, right=0.84, bottom=0.14, top=0.86, wspace=0.8)
    left, right = axes[0]
    rows = rows[rows["layer"] == -1]
    ylabel = _delta_axis(left, rows["delta_data_bits"].to_numpy(float), "held-out Δ data bits")
    ends_l = []
    series = []
    for criterion in dict.fromkeys(rows["criterion"]):
        g = rows[rows["criterion"] == criterion].sort_values("fraction")
        color = CRITERION_COLORS.get(criterion, PALETTE[3])
        style = "--" if criterion == "random" else "-"
        x = np.concatenate([[0.0], g["fraction"].to_numpy(float)])
        y = np.concatenate([[0.0], g["delta_data_bits"].to_numpy(float)])
        left.plot(x, y, style, marker="o", ms=4, color=color)
        ends_l.append((float(y[-1]), criterion + (" (control)" if criterion == "random" else ""), color))
        delta = g["delta_data_bits"].to_numpy(float)
        be = np.full(len(g), np.inf)
        positive = delta > 0
        be[positive] = g["param_bits_saved"].to_numpy(float)[positive] * max(1, n_bytes) / delta[positive]
        series.append((criterion, color, style, g["fraction"].to_numpy(float), be))
    left.axhline(0, color=UNIFORM_COLOR, lw=0.8)
    left.set_xlabel("fraction of FFN neurons removed in every layer")
    left.set_ylabel(ylabel)
    left.set_xlim(0, 1)
    finite_be = np.concatenate([b[np.isfinite(b)] for *_, b in series]) if series else np.array([])
    lo = 10.0 ** math.floor(math.log10(finite_be.min())) if len(finite_be) else 1e3
    hi = 10.0 ** math.ceil(math.log10(finite_be.max()) + 0.5) if len(finite_be) else 1e9
    top = hi * 0.8
    ends_r = []
    for i, (criterion, color, style, x, be) in enumerate(series):
        shown = np.where(np.isfinite(be), be, top)
        x = x + 0.012 * (i - (len(series) - 1) / 2)  # side by side: markers at the top never hide each other
        right.plot(x, shown, style, color=color)
        right.plot(x[np.isfinite(be)], be[np.isfinite(be)], "o", ms=4, color=color)
        right.plot(x[~np.isfinite(be)], np.full((~np.isfinite(be)).sum(), top), "^", ms=6, color=color)
        ends_r.append((float(shown[-1]), criterion, color))
    right.set_yscale("log")
    right.set_ylim(lo, hi)
    right.set_xlim(0, 1)
    right.set_xlabel("fraction of FFN neurons removed")
    right.set_ylabel("break-even corpus size (log; ▲ = any size)")
    right.yaxis.set_major_locator(LogLocator(base=10, numticks=12))
    right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _size(v)))
    right.yaxis.set_minor_formatter(NullFormatter())
    for ax, ends in ((left, ends_l), (right, ends_r)):
        ax.grid(True, which="major", alpha=0.3)
        _end_labels(ax, ends, min_gap=0.07)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _size(n: float) -> str:
    for div, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:g} {unit}"
    return f"{n:g} B"


def width_depth(cells: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Prequential bits/byte against FFN ratio (log2 x), one line per depth, error bars = sd over seeds."""
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.1, right=0.82, bottom=0.13, top=0.9)
    ends = []
    depths = cells.groupby("n_layer", sort=True)
    for i, (n_layer, g) in enumerate(depths):
        g = g.sort_values("ffn_ratio")
        color = PALETTE[i % len(PALETTE)]
        sd = g["bits_per_byte_sd"].fillna(0.0).to_numpy(float)
        # Depths side by side around each ratio, so error bars at the same ratio never cover each other.
        x = g["ffn_ratio"].to_numpy(float) * 2.0 ** (0.08 * (i - (len(depths) - 1) / 2))
        ax.errorbar(x, g["bits_per_byte_mean"], yerr=sd, fmt="-o", ms=5, capsize=3, color=color)
        for xi, r in zip(x, g.itertuples(), strict=True):
            ax.annotate(f"d={int(r.d_model)}", (xi, r.bits_per_byte_mean), textcoords="offset points",
                        xytext=(4, -11), ha="left", fontsize=7, color=color)
        ends.append((float(g["bits_per_byte_mean"].iloc[-1]), f"{int(n_layer)} layer{'s' * (n_layer != 1)}", color))
    ratios = sorted(set(cells["ffn_ratio"].astype(float)))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.xaxis.set_minor_formatter(NullFormatter())
    pad = 2 ** 0.3
    ax.set_xlim(min(ratios) / pad, max(ratios) * pad)
    lo = float((cells["bits_per_byte_mean"] - cells["bits_per_byte_sd"].fillna(0)).min())
    hi = float((cells["bits_per_byte_mean"] + cells["bits_per_byte_sd"].fillna(0)).max())
    span = max(hi - lo, 1e-3)
    ax.set_ylim(lo - 0.15 * span, hi + 0.25 * span)
    ax.set_xlabel("FFN ratio d_ff / d_model (log2 scale; depths drawn side by side; labels: d_model)")
    ax.set_ylabel("prequential code (bits/byte, mean ± sd over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    _end_labels(ax, ends)
    return _save(fig, path)

