"""PNG figures of bits against context length (``context_curve``) and against window size (window sweeps).

Same conventions as ``figures``: fixed pixel size, one colour per model, uniform-bytes grey, labels written next
to the lines' ends and spread apart so they never overlap. Each model also gets its own marker shape, and the
lines of a panel are drawn a few pixels apart (``DODGE_PX`` in all, within a bucket), so that curves that coincide
(two seeds of one architecture, a model and its quantized twin) stay visible side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mdlbench.codelength import BITS_PER_BYTE
from mdlbench.config import UNIFORM_BYTES
from mdlbench.report.figures import MARKERS, UNIFORM_COLOR, _new, _save, _text_size_px, short, spread

DODGE_PX = 4.0  # horizontal distance between neighbouring lines' markers
ZERO_X = 0.5  # where context length 0 (bucket [0, 1)) sits on the log axis, labelled "0"


@dataclass(frozen=True)
class Curve:
    """One line: a label, its colour and marker, and its points (x ascending)."""

    label: str
    color: str
    marker: str
    x: np.ndarray
    y: np.ndarray
    y_low: np.ndarray | None = None  # error bars (CI), when known
    y_high: np.ndarray | None = None


def bucket_x(starts: Sequence[int] | np.ndarray) -> np.ndarray:
    """x position of a bucket on the log axis: its first context length, ZERO_X for the bucket [0, 1)."""
    s = np.asarray(starts, dtype=np.float64)
    return np.where(s == 0, ZERO_X, s)


def _log2_axis(ax: Axes, xs: Sequence[float], zero: bool) -> None:
    lo, hi = min(xs), max(xs)
    ax.set_xscale("log", base=2)
    ticks = [2.0 ** k for k in range(int(math.floor(math.log2(max(lo, 1.0)))), int(math.ceil(math.log2(hi))) + 1)]
    step = max(1, math.ceil(len(ticks) / 8))  # at most ~8 labelled ticks
    ticks = ticks[::step]
    labels = [f"{int(t):,}" for t in ticks]
    if zero:
        ticks, labels = [ZERO_X, *ticks], ["0", *labels]
    ax.set_xticks(ticks, labels)
    ax.minorticks_off()
    ax.set_xlim(lo / 1.6, hi * 1.6)


def _draw(ax: Axes, curves: Sequence[Curve], refs: Sequence[tuple[float, str, str]], *,
          label_ends: bool = True) -> None:
    """Lines with markers (and CI bars), horizontal reference lines, and the labels at the right edge. Call after the
    x axis is set: line k of n is moved (k − (n−1)/2) · DODGE_PX pixels sideways."""
    ends = []
    for k, c in enumerate(curves):
        ok = np.isfinite(c.y)
        if not ok.any():
            continue
        if len(curves) > 1:
            px = ax.transData.transform(np.column_stack([c.x, np.ones_like(c.x)]))
            px[:, 0] += (k - (len(curves) - 1) / 2) * DODGE_PX
            c = Curve(c.label, c.color, c.marker, ax.transData.inverted().transform(px)[:, 0], c.y, c.y_low,
                      c.y_high)
        if c.y_low is not None and c.y_high is not None:
            err = np.vstack([c.y[ok] - c.y_low[ok], c.y_high[ok] - c.y[ok]])
            ax.errorbar(c.x[ok], c.y[ok], yerr=np.nan_to_num(err), fmt="none", ecolor=c.color, elinewidth=0.9,
                        capsize=3)
        ax.plot(c.x[ok], c.y[ok], color=c.color, marker=c.marker, ms=5, lw=1.5, mfc="white", mew=1.4,
                label=c.label)
        ends.append((float(c.y[ok][-1]), c.label, c.color))
    for y, text, color in refs:
        ax.axhline(y, color=color, lw=1.1, ls="--", label=text)
        ends.append((y, text, color))
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(0.0, lo), hi + 0.04 * (hi - lo))
    if label_ends and ends:
        lo, hi = ax.get_ylim()
        fracs = [(y - lo) / (hi - lo) for y, _, _ in ends]
        for (_, text, color), f, g in zip(ends, fracs, spread(fracs, 0.07), strict=True):
            ax.annotate(text, xy=(1.0, f), xycoords="axes fraction", xytext=(1.03, g), textcoords="axes fraction",
                        va="center", ha="left", fontsize=8, color=color,
                        arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6} if abs(f - g) > 0.01 else None)


def _labels_px(fig: Figure, labels: Sequence[str]) -> float:
    """Width in pixels of the longest end-of-line label, with the gap between the axes and the label."""
    return max([_text_size_px(fig, t, 8)[0] for t in labels] + [30.0]) + 0.03 * fig.bbox.width / 2


def model_curves(curve: pd.DataFrame, runs: pd.DataFrame, colors: Mapping[str, str], column: str,
                 domain: str = "") -> list[Curve]:
    """One Curve per run (uniform-bytes excluded: it is a reference line) of ``column`` against the bucket; pass one
    run per model (the colour and marker are the model's)."""
    out = []
    models = sorted(str(m) for m in runs["model"] if str(m) != UNIFORM_BYTES)
    for _, run in runs.sort_values("model").iterrows():
        model = str(run["model"])
        if model == UNIFORM_BYTES:
            continue
        c = curve[(curve["run_id"] == run["run_id"]) & (curve["domain"] == domain)].sort_values(
            "context_bucket_start")
        if c.empty:
            continue
        y = pd.to_numeric(c[column], errors="coerce").to_numpy(np.float64)
        label = short(model, 22)
        out.append(Curve(label, colors.get(model, UNIFORM_COLOR), MARKERS[models.index(model) % len(MARKERS)],
                         bucket_x(c["context_bucket_start"].to_numpy()), y))
    return out


def context_curves(curve: pd.DataFrame, runs: pd.DataFrame, colors: Mapping[str, str], corpus: str,
                   path: Path) -> Path:
    """Left: bits/token against context length; right: bits/byte (log2 x), one line per run, all documents."""
    fig, axes = _new(1, 2)
    left, right = axes[0, 0], axes[0, 1]
    tok = model_curves(curve, runs, colors, "bits_per_token")
    byte = model_curves(curve, runs, colors, "bits_per_byte")
    refs = [(BITS_PER_BYTE, f"{UNIFORM_BYTES} (8)", UNIFORM_COLOR)] if (
        runs["model"].astype(str) == UNIFORM_BYTES).any() else []
    # Each panel's labels sit right of it: leave room for the longest one after each panel.
    width = fig.bbox.width
    label_px = _labels_px(fig, [c.label for c in tok + byte] + [r[1] for r in refs])
    right_px, gap_px = width - label_px - 8, label_px + 62
    panel_px = max(80.0, (right_px - 0.075 * width - gap_px) / 2)
    fig.subplots_adjust(left=0.075, right=right_px / width, bottom=0.13, top=0.88, wspace=gap_px / panel_px)
    xs = [float(x) for c in tok + byte for x in c.x] or [1.0, 2.0]
    zero = any(x == ZERO_X for x in xs)
    for ax, curves, r, ylabel in ((left, tok, [], "code length (bits/token)"),
                                  (right, byte, refs, "code length (bits/byte)")):
        _log2_axis(ax, xs, zero)
        _draw(ax, curves, r)
        ax.set_xlabel("context length (tokens, bucket start; log₂)", fontsize=8.5)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
    left.set_title("Bits per token vs context (own tokens)", fontsize=9.5)
    right.set_title("Bits per byte vs context", fontsize=9.5)
    fig.suptitle(f"Context curves on {corpus}: each document coded alone; buckets [1, 2), [2, 4), [4, 8), …",
                 fontsize=10)
    return _save(fig, path)


def context_curves_by_domain(curve: pd.DataFrame, runs: pd.DataFrame, colors: Mapping[str, str], corpus: str,
                             path: Path) -> Path:
    """Bits/byte against context length, one panel per domain (shared axes), one line per run; legend below."""
    domains = sorted(d for d in curve.loc[curve["run_id"].isin(runs["run_id"]), "domain"].astype(str).unique() if d)
    n = max(1, len(domains))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = _new(nrows, ncols, sharex=True, sharey=True)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.2 if nrows == 1 else 0.16, top=0.88, wspace=0.12,
                        hspace=0.38)
    handles: dict[str, object] = {}
    panels = [model_curves(curve, runs, colors, "bits_per_byte", d) for d in domains]
    xs = [float(x) for curves in panels for c in curves for x in c.x] or [1.0, 2.0]
    ys = [float(y) for curves in panels for c in curves for y in c.y if np.isfinite(y)] or [1.0]
    refs = [(BITS_PER_BYTE, f"{UNIFORM_BYTES} (8)", UNIFORM_COLOR)] if (
        runs["model"].astype(str) == UNIFORM_BYTES).any() else []
    top = max(ys + [r[0] for r in refs])
    for i, ax in enumerate(axes.flat):
        if i >= len(domains):
            ax.set_visible(False)
            continue
        _log2_axis(ax, xs, any(x == ZERO_X for x in xs))
        _draw(ax, panels[i], refs, label_ends=False)
        ax.set_title(domains[i], fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7.5)
        for line in ax.get_lines():
            handles.setdefault(str(line.get_label()), line)
    axes[0, 0].set_ylim(0.0, top * 1.08)  # shared: every panel shows every point
    for ax in axes[-1, :]:
        ax.set_xlabel("context length (tokens; log₂)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("bits/byte", fontsize=8.5)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, max(1, len(handles))),
               fontsize=8, frameon=False)
    fig.suptitle(f"Bits per byte vs context length by domain on {corpus} (each document coded alone)", fontsize=10)
    return _save(fig, path)


def window_sweep(curves: Sequence[Curve], corpus: str, path: Path) -> Path:
    """Bits/byte against the window size (log2 x), one line per model and stride rule, 95% CIs."""
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.09, right=max(0.55, 1 - (_labels_px(fig, [c.label for c in curves]) + 8) /
                                            fig.bbox.width), bottom=0.13, top=0.88)
    xs = [float(x) for c in curves for x in c.x] or [1.0, 2.0]
    _log2_axis(ax, xs, False)
    _draw(ax, curves, [])
    ax.set_xlabel("window W (tokens per forward pass; log₂)")
    ax.set_ylabel("code length (bits/byte)")
    ax.set_title(f"Bits per byte vs window size on {corpus}\neach document coded alone; 95% document-bootstrap CI",
                 fontsize=9.5)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)
