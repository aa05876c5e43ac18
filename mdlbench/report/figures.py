"""PNG figures of a report (matplotlib, Agg backend: no display needed).

Every figure has the same pixel size (``FIGSIZE_IN`` × ``DPI``), labelled axes with units, and a legend; each
model keeps one colour in every figure (``model_colors``); ``uniform-bytes`` is always grey. Labels placed next
to lines are spread apart (``spread``) so they never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedFormatter,
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)

from mdlbench.codelength import BITS_PER_BYTE, bits_per_byte, bits_per_token  # noqa: E402
from mdlbench.config import UNIFORM_BYTES  # noqa: E402
from mdlbench.report.data import (  # noqa: E402
    MATCHED_MODE,
    WHOLE_MODE,
    Comparison,
    DomainRate,
    LeaderRow,
    PrequentialRow,
    Results,
    best_baseline,
)

FIGSIZE_IN = (8.0, 4.8)
DPI = 90  # 720 × 432 px: readable on screen, small enough to commit
UNIFORM_COLOR = "#7f7f7f"
BASELINE_COLOR = "#444444"
# tab10 without its grey (reserved for uniform-bytes).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def pixel_size() -> tuple[int, int]:
    """(width, height) of every PNG in pixels."""
    return round(FIGSIZE_IN[0] * DPI), round(FIGSIZE_IN[1] * DPI)


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """One colour per model name, in sorted order, uniform-bytes grey; the same input gives the same colours."""
    colors: dict[str, str] = {}
    others = sorted({m for m in models if m != UNIFORM_BYTES})
    for i, m in enumerate(others):
        colors[m] = PALETTE[i % len(PALETTE)]
    colors[UNIFORM_BYTES] = UNIFORM_COLOR
    return colors


def short(name: str, width: int = 28) -> str:
    """A model name that fits a legend or a tick label: no parenthesized detail, the last path component,
    ellipsized in the middle. Example: short("SmolLM2-135M (SmolLM2.gguf)") -> "SmolLM2-135M"."""
    base = name.split(" (")[0].rstrip("/").split("/")[-1] or name  # "X (file.gguf)" -> "X"
    return base if len(base) <= width else base[: width // 2 - 1] + "…" + base[-(width // 2 - 1):]


def param_count(n: float) -> str:
    """A parameter count as people write it: 1.35e8 -> '135M', 7e9 -> '7B', 5e3 -> '5k'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def spread(positions: Sequence[float], min_gap: float, low: float = 0.0, high: float = 1.0) -> list[float]:
    """Move label positions (axes fractions) apart by at least ``min_gap``, keeping their order and the bounds.

    Example: spread([0.5, 0.5, 0.51], 0.05) -> [0.455, 0.505, 0.555] (centred on the original mean).
    """
    if not positions:
        return []
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    ys = [positions[i] for i in order]
    for _ in range(100):  # relax: push neighbours apart, then re-centre clusters within the bounds
        moved = False
        for k in range(1, len(ys)):
            overlap = min_gap - (ys[k] - ys[k - 1])
            if overlap > 1e-12:
                ys[k - 1] -= overlap / 2
                ys[k] += overlap / 2
                moved = True
        shift_low = low - ys[0]
        if shift_low > 0:
            ys = [y + shift_low for y in ys]
        shift_high = ys[-1] - high
        if shift_high > 0:
            ys = [y - shift_high for y in ys]
        if not moved:
            break
    out = [0.0] * len(ys)
    for i, y in zip(order, ys, strict=True):
        out[i] = y
    return out


def _new(nrows: int = 1, ncols: int = 1, **kw: object) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(nrows, ncols, figsize=FIGSIZE_IN, dpi=DPI, squeeze=False, **kw)
    return fig, axes


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no bbox_inches: every PNG has the same size
    plt.close(fig)
    return path


def clusters(positions: Sequence[float], min_gap: float) -> list[list[int]]:
    """Indices of positions grouped so that neighbours (in position order) closer than ``min_gap`` share a group.

    Example: clusters([0.0, 30.0, 5.0], 10.0) -> [[0, 2], [1]] (groups in position order, members too).
    """
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and positions[i] - positions[groups[-1][-1]] < min_gap:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def dodge(positions: Sequence[float], min_gap: float) -> list[float]:
    """Positions (display pixels) with each group of near-equal ones (``clusters``) spread ``min_gap`` apart around
    the group's mean, in their order, so that no point hides another. Example: dodge([10, 10], 16) -> [2, 18]."""
    out = [float(p) for p in positions]
    for group in clusters(positions, min_gap):
        centre = sum(positions[i] for i in group) / len(group)
        for k, i in enumerate(group):
            out[i] = centre + (k - (len(group) - 1) / 2) * min_gap
    return out


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
DODGE_PX = 16.0  # markers closer than this (display pixels) are drawn side by side


def model_markers(models: Sequence[str]) -> dict[str, str]:
    """One marker shape per model name, in sorted order (uniform-bytes has none: it is a reference line)."""
    return {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(sorted({m for m in models if m != UNIFORM_BYTES}))}


def _label_lines(ax: plt.Axes, lines: Sequence[tuple[float, str, str]], min_gap: float = 0.055) -> None:
    """Write labels at the right edge of the axes next to horizontal lines at data heights (y, text, colour)."""
    lo, hi = ax.get_ylim()
    fracs = [(y - lo) / (hi - lo) for y, _, _ in lines]
    for (_, text, color), f, g in zip(lines, fracs, spread(fracs, min_gap), strict=True):
        ax.annotate(text, xy=(1.0, f), xycoords="axes fraction", xytext=(1.02, g), textcoords="axes fraction",
                    va="center", ha="left", fontsize=8, color=color,
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6} if abs(f - g) > 0.01 else None)


def _baseline_lines(res: Results, corpus_sha256: str) -> list[tuple[float, str]]:
    """The best verified per-document compressor of each family (gzip, xz, zstd...): (bits/byte, name)."""
    if res.baselines is None:
        return []
    b = res.baselines
    b = b[(b["corpus_sha256"] == corpus_sha256) & (b["mode"] == MATCHED_MODE) & b["roundtrip_verified"].astype(bool)]
    best: dict[str, tuple[float, str]] = {}
    for _, r in b.iterrows():
        family = str(r["compressor"]).split("-")[0]
        v = (float(r["bits_per_byte"]), str(r["compressor"]))
        if family not in best or v < best[family]:
            best[family] = v
    return sorted(best.values())


def _compressor_references(ax: plt.Axes, res: Results, corpus_sha256: str) -> list[tuple[float, str, str]]:
    """Draw the compressors on these bytes as one band (per document, the mode the models are coded in) and one line
    (the best on the corpus as one stream); return their labels (y, text, colour) for the right margin."""
    labels: list[tuple[float, str, str]] = []
    per_doc = _baseline_lines(res, corpus_sha256)
    if per_doc:
        (lo, best), (hi, worst) = per_doc[0], per_doc[-1]
        ax.axhspan(lo, hi, color=BASELINE_COLOR, alpha=0.14, lw=0)
        ax.axhline(lo, color=BASELINE_COLOR, lw=0.9, ls="--")
        text = (f"{best} {lo:.2f}, each document alone" if len(per_doc) == 1 else
                f"{len(per_doc)} compressors, each document\nalone: {best} {lo:.2f} … {worst} {hi:.2f}")
        labels.append(((lo + hi) / 2, text, BASELINE_COLOR))
    whole = best_baseline(res, corpus_sha256, WHOLE_MODE)
    if whole is not None:
        bpb = float(whole["bits_per_byte"])
        ax.axhline(bpb, color=BASELINE_COLOR, lw=0.9, ls=":")
        labels.append((bpb, f"{whole['compressor']} {bpb:.2f}, the corpus\nas one stream", BASELINE_COLOR))
    return labels


def _text_size_px(fig: plt.Figure, text: str, fontsize: float) -> tuple[float, float]:
    """(width, height) in display pixels of a text at this font size."""
    t = fig.text(0, 0, text, fontsize=fontsize)
    ext = t.get_window_extent(fig.canvas.get_renderer())
    t.remove()
    return ext.width, ext.height


def _dodged(ax: plt.Axes, xs: Sequence[float], sides: Sequence[int]) -> tuple[list[float], list[float]]:
    """Display x of each point after ``dodge``, and where its label starts: left of its group's leftmost point
    (side < 0) or right of the rightmost one, so that no label covers a neighbour's marker."""
    true_px = [float(ax.transData.transform((x, 0))[0]) for x in xs]
    px = dodge(true_px, DODGE_PX)
    anchors = list(px)
    for g in clusters(true_px, DODGE_PX):
        lo, hi = min(px[i] for i in g), max(px[i] for i in g)
        for i in g:
            anchors[i] = lo if sides[i] < 0 else hi
    return px, anchors


def _log_limits_for_labels(ax: plt.Axes, xs: Sequence[float], widths: Sequence[float], sides: Sequence[int],
                           pad_px: float) -> None:
    """Widen a log x axis until every label (``widths`` px, left or right of its group at ``pad_px``) fits inside."""
    for _ in range(6):
        bbox = ax.get_window_extent()
        px, anchors = _dodged(ax, xs, sides)
        margin = 6.0  # pixels between a label and the axes' edge
        need_left = max([0.0] + [bbox.x0 + margin - (a - pad_px - w) for a, w, s in zip(anchors, widths, sides,
                                                                                        strict=True) if s < 0]
                        + [bbox.x0 - p + DODGE_PX for p in px])
        need_right = max([0.0] + [(a + pad_px + w) - (bbox.x1 - margin) for a, w, s in zip(anchors, widths, sides,
                                                                                           strict=True) if s > 0])
        if need_left <= 0.5 and need_right <= 0.5:
            return
        lo, hi = (math.log10(v) for v in ax.get_xlim())
        per_px = (hi - lo) / bbox.width
        # Adding decades also shrinks the pixels per decade, so grow by a little more than the shortfall.
        ax.set_xlim(10 ** (lo - 1.3 * need_left * per_px), 10 ** (hi + 1.3 * need_right * per_px))


def bpb_vs_params(res: Results, rows: Sequence[LeaderRow], colors: Mapping[str, str], path: Path) -> Path:
    """Bits/byte against parameter count, one labelled point per model with its CI; uniform-bytes and the
    compressors as references at the right (a band for the per-document ones).

    Markers closer than DODGE_PX (equal sizes: two seeds of one architecture, a model and its quantized twin) are
    drawn side by side around their size's tick, each model with its own marker shape, and a note says so. The x
    axis has a tick at each size; with one size only, it is one tick, not a decade of empty log axis.
    """
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.09, right=0.7, bottom=0.13, top=0.88)
    corpus = rows[0].corpus if rows else "?"
    sized = sorted((r for r in rows if r.n_params > 0 and math.isfinite(r.rates.bits_per_byte)),
                   key=lambda r: (r.n_params, r.model))  # an all-empty corpus has no rate to draw
    markers = model_markers([r.model for r in rows])
    top = max([BITS_PER_BYTE] + [r.rates.ci_high for r in sized if not math.isnan(r.rates.ci_high)]
              + [r.rates.bits_per_byte for r in sized])
    ax.set_ylim(0, top * 1.1)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    sha = str(res.runs_of(corpus)["corpus_sha256"].iloc[0]) if rows else ""
    refs = [(BITS_PER_BYTE, f"{UNIFORM_BYTES}: 8", UNIFORM_COLOR)]
    ax.axhline(BITS_PER_BYTE, color=UNIFORM_COLOR, lw=1.2)
    refs += _compressor_references(ax, res, sha)
    _label_lines(ax, refs, min_gap=0.11)
    if not sized:
        ax.set_xlim(1e6, 1e10)
        ax.text(0.5, 0.5, "no model with parameters in this selection", transform=ax.transAxes, ha="center")
        ax.set_xlabel("parameters (count, log scale)")
    else:
        sizes = [float(r.n_params) for r in sized]
        span = max(math.log10(max(sizes) / min(sizes)), 0.5)
        ax.set_xlim(min(sizes) / 10 ** (0.15 * span), max(sizes) * 10 ** (0.15 * span))
        texts = [f"{_run_label(res, r, sized)}  {r.rates.bits_per_byte:.3f}" for r in sized]
        widths = [_text_size_px(fig, t, 8)[0] for t in texts]
        pad = 9.0
        sides = [1] * len(sized)

        def assign_sides() -> list[list[int]]:
            groups = clusters([ax.transData.transform((x, 0))[0] for x in sizes], DODGE_PX)
            for g in groups:  # a pair side by side: the left one is labelled on the left
                for k, i in enumerate(g):
                    sides[i] = -1 if len(g) > 1 and k < len(g) // 2 else 1
            return groups

        assign_sides()
        _log_limits_for_labels(ax, sizes, widths, sides, pad)
        groups = assign_sides()
        px, anchors = _dodged(ax, sizes, sides)
        inv = ax.transData.inverted()
        xs = [float(inv.transform((p, 0))[0]) for p in px]
        label_xs = [float(inv.transform((a, 0))[0]) for a in anchors]
        for r, x in zip(sized, xs, strict=True):
            y = r.rates.bits_per_byte
            err = None if math.isnan(r.rates.ci_low) else np.array([[y - r.rates.ci_low], [r.rates.ci_high - y]])
            ax.errorbar([x], [y], yerr=err, fmt=markers[r.model], ms=7, capsize=3, color=colors[r.model],
                        mec="black", mew=0.6, ecolor=colors[r.model], zorder=3)
        _point_labels(ax, [(x, r.rates.bits_per_byte, t, colors[r.model], s, w, lx)
                           for r, x, t, s, w, lx in zip(sized, xs, texts, sides, widths, label_xs, strict=True)], pad)
        ticks, labels = [], []
        for g in groups:
            lo, hi = min(sizes[i] for i in g), max(sizes[i] for i in g)
            ticks.append(math.sqrt(lo * hi))
            labels.append(param_count(lo) if param_count(lo) == param_count(hi) else
                          f"{param_count(lo)}–{param_count(hi)}")
        if len(groups) <= 6:
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FixedFormatter(labels))
        else:
            ax.xaxis.set_major_locator(LogLocator(base=10))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: param_count(v)))
        shared = [g for g in groups if len(g) > 1]
        if shared:
            note = "; ".join(f"{', '.join(dict.fromkeys(short(sized[i].model, 18) for i in g))} "
                             f"({param_count(sizes[g[0]])})" for g in shared)
            ax.text(0.01, 0.015, f"side by side, equal size: {note}", transform=ax.transAxes, fontsize=7,
                    color="#555555", va="bottom", ha="left")
        ax.set_xlabel(f"parameters (every model here has {labels[0]})" if len(groups) == 1 else
                      "parameters (count, log scale; a tick at each model's size)" if len(groups) <= 6 else
                      "parameters (count, log scale)")
    ax.set_ylabel("code length (bits/byte)")
    ax.set_title(f"Bits per byte vs model size on {corpus}\neach document coded alone; 95% document-bootstrap CI",
                 fontsize=9.5)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)


def _point_labels(ax: plt.Axes, items: Sequence[tuple[float, float, str, str, int, float, float]],
                  pad_px: float) -> None:
    """Label points directly: (x, y, text, colour, side, width px, label x), the text left (side < 0) or right of the
    label x (the point's, or its group's edge). Labels whose boxes would overlap are spread vertically, with a
    leader line to their point when moved."""
    fig = ax.figure
    bbox = ax.get_window_extent()
    height = _text_size_px(fig, "Ag", 8)[1] * 1.25 / bbox.height  # one label's height, as an axes fraction
    boxes = []
    for _, y, _, _, side, width, label_x in items:
        px, py = ax.transData.transform((label_x, y))
        x0 = px + pad_px if side > 0 else px - pad_px - width
        boxes.append((x0, x0 + width, (py - bbox.y0) / bbox.height))
    ys = [b[2] for b in boxes]
    order = sorted(range(len(items)), key=lambda i: boxes[i][0])
    groups: list[list[int]] = []
    right_edge = -math.inf
    for i in order:  # boxes that overlap horizontally (transitively) share a vertical spread
        if groups and boxes[i][0] < right_edge:
            groups[-1].append(i)
        else:
            groups.append([i])
            right_edge = -math.inf
        right_edge = max(right_edge, boxes[i][1])
    placed = list(ys)
    for g in groups:
        for i, v in zip(g, spread([ys[i] for i in g], height, 0.03, 0.97), strict=True):
            placed[i] = v
    for (x, y, text, color, side, _, label_x), (x0, x1, _), f, g in zip(items, boxes, ys, placed, strict=True):
        anchor = ((x0 if side > 0 else x1) - bbox.x0) / bbox.width
        moved = abs(f - g) > 0.005 or label_x != x
        ax.annotate(text, xy=(x, y), xycoords="data", xytext=(anchor, g), textcoords="axes fraction",
                    va="center", ha="left" if side > 0 else "right", fontsize=8, color="black",
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6, "shrinkA": 0, "shrinkB": 5}
                    if moved else None, zorder=4)


def _run_label(res: Results, row: LeaderRow, shown: Sequence[LeaderRow]) -> str:
    """The model's short name, and what tells its runs apart when it has several here (the window, else the id)."""
    name = short(row.model)
    same = [r for r in shown if r.model == row.model]
    if len(same) < 2:
        return name
    runs = res.runs.set_index("run_id")
    windows = {r.run_id: runs.at[r.run_id, "window"] if r.run_id in runs.index else None for r in same}
    if len({str(w) for w in windows.values()}) == len(same) and all(pd.notna(w) for w in windows.values()):
        return f"{name} W={int(windows[row.run_id])}"
    return f"{name} {row.run_id[:8]}"


def _rate(v: float) -> str:
    """A bits/byte value in four significant digits, without exponents: 432.7, 7.181, 61,554."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


MAX_TWO_PART_ROWS = 12  # bars per figure; the table below the figure lists every code


def two_part_bars(res: Results, rows: Sequence[LeaderRow], colors: Mapping[str, str], path: Path) -> Path:
    """The two-part code as a linear split in bits per byte of the corpus: data bits L(D|θ) in the left panel,
    parameter + tokenizer bits L(θ) in the right one (each on its own linear axis, so neither hides the other),
    one bar per (model, parameter code), cheapest first, with the total written at the end of each bar."""
    assert res.two_part is not None
    per_model = max(1, MAX_TWO_PART_ROWS // max(1, len(rows)))
    bars: list[tuple[LeaderRow, str, float, float, float]] = []  # (row, code, data, parameters, total) bits/byte
    n_codes = 0
    for r in rows:
        t = res.two_part[res.two_part["run_id"] == r.run_id].sort_values(["total_bits", "param_code"])
        n_codes += len(t)
        for _, c in t.head(per_model).iterrows():
            n = int(c["n_bytes"])
            bars.append((r, str(c["param_code"]), float(c["data_bits_per_byte"]),
                         bits_per_byte(float(c["model_bits"]) + float(c["tokenizer_bits"]), n),
                         float(c["total_bits_per_byte"])))
    fig, axes = _new(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.0, 1.35]})
    left, right = axes[0, 0], axes[0, 1]
    fig.subplots_adjust(left=0.25, right=0.97, bottom=0.12 if len(bars) == n_codes else 0.16, top=0.8,
                        wspace=0.08)
    y, pos = [], 0.0
    for k, b in enumerate(bars):  # a gap between models
        if k and b[0].run_id != bars[k - 1][0].run_id:
            pos += 0.5
        y.append(pos)
        pos += 1.0
    y_arr = np.array(y)
    cols = [colors[b[0].model] for b in bars]
    data = np.nan_to_num(np.array([b[2] for b in bars], dtype=float))  # NaN only for an all-empty corpus
    params = np.nan_to_num(np.array([b[3] for b in bars], dtype=float))
    names = [f"{short(b[0].model, 26)} · {b[1]}" for b in bars]
    label_px = max([_text_size_px(fig, n, 8)[0] for n in names] + [40.0])
    fig.subplots_adjust(left=min(0.45, (label_px + 24) / fig.bbox.width))
    left.barh(y_arr, data, height=0.72, color=cols, edgecolor="black", lw=0.5)
    right.barh(y_arr, params, height=0.72, color=cols, alpha=0.55, hatch="//", edgecolor="black", lw=0.5)
    left.set_xlim(0, max([BITS_PER_BYTE, *data]) * 1.25)
    # Room for the text at the end of the longest bars: each bar plus its text fits inside the panel.
    notes = [f" {_rate(p)}  (total {_rate(b[4])})" for p, b in zip(params, bars, strict=True)]
    width_px = right.get_window_extent().width
    room = [p / max(0.2, 1 - (_text_size_px(fig, n, 7.5)[0] + 8) / width_px) for p, n in zip(params, notes,
                                                                                             strict=True)]
    right.set_xlim(0, max(room) if room and max(room) > 0 else 1.0)
    for yi, d, p, n in zip(y_arr, data, params, notes, strict=True):
        left.text(d, yi, f" {d:.3f}", va="center", ha="left", fontsize=7.5)
        right.text(p, yi, n, va="center", ha="left", fontsize=7.5)
    refs = [(BITS_PER_BYTE, "raw bytes: 8", UNIFORM_COLOR, "-")]
    if rows:
        sha = str(res.runs_of(rows[0].corpus)["corpus_sha256"].iloc[0])
        base = best_baseline(res, sha, MATCHED_MODE)
        if base is not None:
            refs.append((float(base["bits_per_byte"]), f"{base['compressor']}: {float(base['bits_per_byte']):.2f}",
                         BASELINE_COLOR, "--"))
    lo, hi = left.get_xlim()
    fracs = [(v - lo) / (hi - lo) for v, _, _, _ in refs]
    for (v, text, color, ls), f, g in zip(refs, fracs, spread(fracs, 0.42, 0.12, 0.88), strict=True):
        left.axvline(v, color=color, lw=1.1, ls=ls)
        left.annotate(text, xy=(f, 1.0), xycoords="axes fraction", xytext=(g, 1.035), textcoords="axes fraction",
                      ha="center", va="bottom", fontsize=7.5, color=color,
                      arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6} if abs(f - g) > 0.01 else None)
    left.set_yticks(y_arr, names, fontsize=8)
    extra = max(0.0, 6.0 - pos) / 2  # few bars stay slim, centred
    left.set_ylim(pos - 0.5 + extra, -0.5 - extra)  # cheapest code of the best model at the top
    left.set_xlabel("data L(D|θ), bits/byte", fontsize=8.5)
    right.set_xlabel("parameters + tokenizer L(θ), bits/byte", fontsize=8.5)
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    n_bytes = int(bars[0][0].rates.n_bytes) if bars else 0
    corpus = rows[0].corpus if rows else "?"
    fig.suptitle(f"Two-part code on {corpus} ({n_bytes:,} bytes): total = L(θ) + L(D|θ), in bits per byte\n"
                 "data: each document coded alone; lines: raw bytes and the best per-document compressor",
                 fontsize=9.5)
    if len(bars) < n_codes:
        fig.text(0.5, 0.01, f"the {per_model} cheapest parameter code{'s' * (per_model != 1)} of each model; the "
                 "table lists all", ha="center", va="bottom", fontsize=7.5, color="#555555")
    return _save(fig, path)


def prequential_curves(res: Results, corpus: str, preq: Sequence[PrequentialRow], best_baseline_bpb: float | None,
                       best_baseline_name: str | None, path: Path) -> Path:
    """Left: cumulative code length vs tokens seen, with the uniform code and the best compressor.
    Right: bits/token of each block."""
    assert res.prequential_blocks is not None and res.prequential is not None
    fig, axes = _new(1, 2)
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.21, top=0.84, wspace=0.3)
    left, right = axes[0, 0], axes[0, 1]
    estimators = sorted({(p.run_id, p.estimator, p.mode) for p in preq})
    palette = {e: PALETTE[i % len(PALETTE)] for i, e in enumerate(estimators)}
    vocab_bits = None
    blocks_seen = None
    for key in estimators:
        run_id, estimator, mode = key
        summ = res.prequential[(res.prequential["run_id"] == run_id) & (res.prequential["estimator"] == estimator)
                               & (res.prequential["mode"] == mode)]
        for i, (_, s) in enumerate(summ.sort_values("seed").iterrows()):
            b = res.prequential_blocks[(res.prequential_blocks["run_id"] == run_id)
                                       & (res.prequential_blocks["estimator"] == estimator)
                                       & (res.prequential_blocks["seed"] == s["seed"])].sort_values("block_index")
            if b.empty:
                continue
            tokens = np.concatenate([[0], b["token_end"].to_numpy()])
            cum = np.concatenate([[0.0], np.cumsum(b["code_length_bits"].to_numpy(np.float64))])
            label = f"{estimator} ({mode})" if i == 0 else None
            left.plot(tokens, cum, color=palette[key], lw=1.4, alpha=1.0 if i == 0 else 0.5, label=label)
            per_token = [bits_per_token(float(c), int(e - s0)) for c, s0, e in
                         zip(b["code_length_bits"], b["token_start"], b["token_end"], strict=True)]
            right.step(*_block_steps(b, per_token), where="post", color=palette[key],
                       alpha=1.0 if i == 0 else 0.5, label=label)
            n_tokens, uniform_bits = int(s["n_tokens"]), float(s["uniform_bits"])
            if vocab_bits is None and n_tokens > 0:
                vocab_bits = bits_per_token(uniform_bits, n_tokens)
                blocks_seen = b
    if vocab_bits is not None and blocks_seen is not None:
        end = int(blocks_seen["token_end"].max())
        left.plot([0, end], [0, vocab_bits * end], color=UNIFORM_COLOR, ls=":",
                  label=f"uniform code (log₂|V| = {vocab_bits:.3g} bits/token)")
        right.axhline(vocab_bits, color=UNIFORM_COLOR, ls=":", label="uniform code")
        if best_baseline_bpb is not None:
            tokens = np.concatenate([[0], blocks_seen["token_end"].to_numpy()])
            cum_bytes = np.concatenate([[0], np.cumsum(blocks_seen["n_bytes"].to_numpy())])
            left.plot(tokens, best_baseline_bpb * cum_bytes, color=BASELINE_COLOR, ls="--",
                      label=f"{best_baseline_name}, each document alone ({best_baseline_bpb:.2f} bits/byte)")
            # The compressor's bits/byte spread over each block's bytes, per token of the block.
            per_token = [bits_per_token(best_baseline_bpb * int(nb), int(e - s0)) for nb, s0, e in
                         zip(blocks_seen["n_bytes"], blocks_seen["token_start"], blocks_seen["token_end"],
                             strict=True)]
            right.step(*_block_steps(blocks_seen, per_token), where="post", color=BASELINE_COLOR, ls="--")
    left.set_xlabel("tokens seen")
    left.set_ylabel("cumulative code length (bits)")
    left.set_title("cumulative code length", fontsize=9)
    right.set_xscale("log")
    right.xaxis.set_major_formatter(FuncFormatter(lambda v, _: param_count(v)))
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlabel("tokens seen (end of block, log scale)")
    right.set_ylabel("code length of the block (bits/token)")
    right.set_title("each block's cost", fontsize=9)
    fig.suptitle(f"Prequential code on {corpus}: the documents as one stream, in order, coded by a model that "
                 "learns as it reads", fontsize=9.5)
    left.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, max(1, len(labels))),
               fontsize=8, frameon=False)
    return _save(fig, path)


def _block_steps(blocks: pd.DataFrame, values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) for a post-step plot of one value per block on a log x axis: x from each block's first token."""
    x = np.concatenate([blocks["token_start"].to_numpy(), blocks["token_end"].to_numpy()[-1:]]).astype(float)
    x = np.maximum(x, 1.0)  # log axis: the first block starts at token 0
    y = np.asarray(list(values) + list(values[-1:]), dtype=float)
    return x, y


def domain_bars(domains: Sequence[DomainRate], colors: Mapping[str, str], corpus: str, path: Path) -> Path:
    """Grouped bars: bits/byte per domain (Σ bits / Σ bytes in the domain) per model, with 95% CIs. The legend is
    one row above the axes, where it covers no bar; uniform-bytes is a labelled line, not a bar."""
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.12, top=0.8)
    names = sorted({d.domain for d in domains})
    # uniform-bytes is 8 in every domain by construction: a reference line, not bars that dwarf the models.
    models = sorted({d.model for d in domains} - {UNIFORM_BYTES})
    if any(d.model == UNIFORM_BYTES for d in domains):
        ax.axhline(BITS_PER_BYTE, color=UNIFORM_COLOR, ls="--", lw=1.2, label=f"{UNIFORM_BYTES} (8)")
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        vals = {d.domain: d.rates for d in domains if d.model == model}
        x = np.arange(len(names)) + (j - (len(models) - 1) / 2) * width
        y = np.array([vals[n].bits_per_byte if n in vals else np.nan for n in names])
        lo = np.array([vals[n].ci_low if n in vals else np.nan for n in names])
        hi = np.array([vals[n].ci_high if n in vals else np.nan for n in names])
        err = np.nan_to_num(np.vstack([y - lo, hi - y]), nan=0.0)
        ax.bar(x, y, width=width * 0.95, color=colors[model], label=short(model), yerr=err, capsize=2,
               error_kw={"lw": 0.8})
    n_docs = {d.domain: d.rates.n_docs for d in domains}
    ax.set_xticks(np.arange(len(names)), [f"{n}\n({n_docs[n]} doc{'s' * (n_docs[n] != 1)})" for n in names],
                  fontsize=8.5)
    ax.set_ylabel("code length (bits/byte)")
    ax.set_title(f"Bits per byte by domain on {corpus}\neach document coded alone; 95% document-bootstrap CI",
                 fontsize=9.5, pad=22)
    ax.set_ylim(0, max(BITS_PER_BYTE, *(d.rates.bits_per_byte for d in domains),
                       *(d.rates.ci_high for d in domains if not math.isnan(d.rates.ci_high))) * 1.1)
    if domains:
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(5, len(models) + 1),
                  frameon=False, handlelength=1.6, borderaxespad=0.2)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def paired_forest(comp: Comparison, path: Path) -> Path:
    """ΔR (bits/byte, A − B) overall and per domain with paired-bootstrap 95% CIs."""
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.18, right=0.97, bottom=0.14, top=0.88)
    items = [comp.overall, *comp.by_domain]
    y = np.arange(len(items))[::-1]
    for yi, d in zip(y, items, strict=True):
        color = "black" if d.label == "all" else "#1f77b4"
        ax.errorbar([d.delta], [yi], xerr=[[d.delta - d.ci_low], [d.ci_high - d.delta]], fmt="s" if d.label == "all"
                    else "o", color=color, capsize=3)
    ax.axvline(0, color=UNIFORM_COLOR, lw=1)
    ax.set_yticks(y, [f"{d.label} (D={d.n_docs})" for d in items], fontsize=8)
    ax.set_xlabel("ΔR = R(A) − R(B)  (bits/byte; < 0: A compresses better)")
    ax.set_title(f"Paired difference on {comp.corpus}: A = {short(comp.model_a)}, B = {short(comp.model_b)}\n"
                 "each document coded alone; paired-bootstrap 95% CI", fontsize=9.5)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def is_blank(png: Path, threshold: float = 1e-4) -> bool:
    """True when a PNG's pixels barely vary (a figure that drew nothing)."""
    img = plt.imread(png)
    return float(np.var(img[..., :3])) < threshold


__all__ = ["DPI", "FIGSIZE_IN", "bpb_vs_params", "domain_bars", "is_blank", "model_colors", "paired_forest",
           "pixel_size", "prequential_curves", "short", "spread", "two_part_bars"]
