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
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from mdlbench.codelength import BITS_PER_BYTE, bits_per_token  # noqa: E402
from mdlbench.config import UNIFORM_BYTES  # noqa: E402
from mdlbench.report.data import (  # noqa: E402
    MATCHED_MODE,
    Comparison,
    DomainRate,
    LeaderRow,
    PrequentialRow,
    Results,
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


def bpb_vs_params(res: Results, rows: Sequence[LeaderRow], colors: Mapping[str, str], path: Path) -> Path:
    """Bits/byte against parameter count (log x), one point per model with its CI; compressors as lines."""
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.09, right=0.74, bottom=0.12, top=0.9)
    sized = [r for r in rows if r.n_params > 0]
    for r in sized:
        y = r.rates.bits_per_byte
        err = np.array([[y - r.rates.ci_low], [r.rates.ci_high - y]]) if not math.isnan(r.rates.ci_low) else None
        ax.errorbar([r.n_params], [y], yerr=err, fmt="o", ms=7, capsize=3, color=colors[r.model],
                    label=f"{short(r.model)} ({y:.3f})")
    if sized:
        lo, hi = min(r.n_params for r in sized), max(r.n_params for r in sized)
        ax.set_xlim(lo / 4, hi * 4)
    else:
        ax.set_xlim(1e6, 1e10)
        ax.text(0.5, 0.5, "no model with parameters in this selection", transform=ax.transAxes, ha="center")
    ax.set_xscale("log")
    lo_x, hi_x = ax.get_xlim()
    narrow = math.log10(hi_x / lo_x) <= 2.5  # few decades: label 1-2-5 ticks too; many: decades only
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: param_count(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    sha = str(res.runs_of(rows[0].corpus)["corpus_sha256"].iloc[0]) if rows else ""
    lines = [(BITS_PER_BYTE, f"{UNIFORM_BYTES} (8)", UNIFORM_COLOR)]
    ax.axhline(BITS_PER_BYTE, color=UNIFORM_COLOR, lw=1.2)
    for bpb, name in _baseline_lines(res, sha):
        ax.axhline(bpb, color=BASELINE_COLOR, lw=0.9, ls="--")
        lines.append((bpb, f"{name} ({bpb:.2f})", BASELINE_COLOR))
    top = max([BITS_PER_BYTE] + [r.rates.ci_high for r in sized if not math.isnan(r.rates.ci_high)])
    ax.set_ylim(0, top * 1.08)
    _label_lines(ax, lines)
    ax.set_xlabel("parameters (count, log scale)")
    ax.set_ylabel("code length (bits/byte)")
    ax.set_title(f"Bits per byte vs model size on {rows[0].corpus if rows else '?'} (95% CI)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if sized:
        ax.legend(loc="lower left", fontsize=8, title="model (bits/byte)", title_fontsize=8)
    return _save(fig, path)


def two_part_bars(res: Results, rows: Sequence[LeaderRow], colors: Mapping[str, str], path: Path) -> Path:
    """Stacked bars per (model, parameter code): L(θ) (parameters + tokenizer) on top of L(D|θ); log y if needed."""
    assert res.two_part is not None
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.22, top=0.9)
    bars = []
    for r in rows:
        t = res.two_part[res.two_part["run_id"] == r.run_id].sort_values("total_bits")
        for _, c in t.iterrows():
            bars.append((r, str(c["param_code"]), float(c["data_bits"]),
                         float(c["model_bits"]) + float(c["tokenizer_bits"])))
    x = np.arange(len(bars))
    data = np.array([b[2] for b in bars])
    params = np.array([b[3] for b in bars])
    values = np.concatenate([data, params])
    positive = values[values > 0]
    log = len(positive) > 0 and positive.max() / positive.min() > 50
    cols = [colors[b[0].model] for b in bars]
    ax.bar(x, data, color=cols, edgecolor="black", lw=0.5)
    ax.bar(x, params, bottom=data, color=cols, alpha=0.45, hatch="//", edgecolor="black", lw=0.5)
    handles: list[Artist] = [Patch(facecolor="#cccccc", edgecolor="black", label="data bits L(D|θ)"),
                             Patch(facecolor="#cccccc", alpha=0.45, hatch="//", edgecolor="black",
                                   label="parameter + tokenizer bits L(θ)")]
    if rows:
        raw = BITS_PER_BYTE * rows[0].rates.n_bytes
        handles.append(ax.axhline(raw, color=UNIFORM_COLOR, lw=1.2, ls=":",
                                  label=f"raw corpus, 8 bits/byte ({raw:.3g} bits)"))
    if log:
        ax.set_yscale("log")
        ax.set_ylim(max(positive.min() / 3, 1.0), (data + params).max() * 5)
    few = len(bars) <= 5  # room for horizontal labels; more bars get slanted ones
    ax.set_xticks(x, [f"{short(b[0].model, 26)}\n{b[1]}" for b in bars], rotation=0 if few else 30,
                  ha="center" if few else "right", fontsize=8 if few else 7)
    fig.subplots_adjust(bottom=0.15 if few else 0.22)
    ax.set_ylabel("code length (bits" + (", log scale)" if log else ")"))
    ax.set_title("Two-part code: parameter bits vs data bits", fontsize=10)
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def prequential_curves(res: Results, corpus: str, preq: Sequence[PrequentialRow], best_baseline_bpb: float | None,
                       best_baseline_name: str | None, path: Path) -> Path:
    """Left: cumulative code length vs tokens seen, with the uniform code and the best compressor.
    Right: bits/token of each block."""
    assert res.prequential_blocks is not None and res.prequential is not None
    fig, axes = _new(1, 2)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.21, top=0.9, wspace=0.3)
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
        left.plot([0, end], [0, vocab_bits * end], color=UNIFORM_COLOR, ls=":", label="uniform code (log2|V|/token)")
        right.axhline(vocab_bits, color=UNIFORM_COLOR, ls=":", label="uniform code")
        if best_baseline_bpb is not None:
            tokens = np.concatenate([[0], blocks_seen["token_end"].to_numpy()])
            cum_bytes = np.concatenate([[0], np.cumsum(blocks_seen["n_bytes"].to_numpy())])
            left.plot(tokens, best_baseline_bpb * cum_bytes, color=BASELINE_COLOR, ls="--",
                      label=f"{best_baseline_name} ({best_baseline_bpb:.2f} bits/byte)")
            # The compressor's bits/byte spread over each block's bytes, per token of the block.
            per_token = [bits_per_token(best_baseline_bpb * int(nb), int(e - s0)) for nb, s0, e in
                         zip(blocks_seen["n_bytes"], blocks_seen["token_start"], blocks_seen["token_end"],
                             strict=True)]
            right.step(*_block_steps(blocks_seen, per_token), where="post", color=BASELINE_COLOR, ls="--")
    left.set_xlabel("tokens seen")
    left.set_ylabel("cumulative code length (bits)")
    left.set_title(f"Prequential code on {corpus}", fontsize=10)
    right.set_xscale("log")
    right.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlabel("tokens seen (end of block, log scale)")
    right.set_ylabel("code length of the block (bits/token)")
    right.set_title("Per-block cost", fontsize=10)
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
    """Grouped bars: bits/byte per domain (Σ bits / Σ bytes in the domain) per model, with 95% CIs."""
    fig, axes = _new()
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.14, top=0.9)
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
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_xlabel("domain")
    ax.set_ylabel("code length (bits/byte)")
    ax.set_title(f"Bits per byte by domain on {corpus} (95% CI)", fontsize=10)
    ax.set_ylim(0, max(BITS_PER_BYTE, *(d.rates.bits_per_byte for d in domains)) * 1.15)
    ax.legend(fontsize=8, loc="upper left", ncol=min(3, len(models) + 1))
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
    ax.set_title(f"Paired difference, A = {short(comp.model_a)}, B = {short(comp.model_b)} (95% CI)", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def is_blank(png: Path, threshold: float = 1e-4) -> bool:
    """True when a PNG's pixels barely vary (a figure that drew nothing)."""
    img = plt.imread(png)
    return float(np.var(img[..., :3])) < threshold


__all__ = ["DPI", "FIGSIZE_IN", "bpb_vs_params", "domain_bars", "is_blank", "model_colors", "paired_forest",
           "pixel_size", "prequential_curves", "short", "spread", "two_part_bars"]
