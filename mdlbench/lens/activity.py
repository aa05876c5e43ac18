"""How silent the FFN neurons are, measured in the forward passes that score the base model.

A forward pre-hook on each layer's down projection sees h (B, T, d_ff), the FFN hidden activation, and keeps only
the positions whose next-token predictions are coded (``ScoredPositions``), so every stream token counts once,
however windows overlap. The hooks read h and return nothing: the code lengths are unchanged, bit for bit.

Neuron i is *active* at a position when
* ReLU family (``layout.RELU_FAMILY``): h_i != 0 (for an ungated ReLU that is h_i > 0);
* otherwise (SiLU/GELU, gated or not): |h_i| > τ · RMS(h) at that position, RMS(h) = sqrt(mean_i h_i²).
Threshold-free: the share of Σ_i |h_i| carried by the ⌈d_ff / 10⌉ largest |h_i| at a position, averaged over
positions (those with Σ|h| = 0 have no share and are left out).

Per neuron the collector keeps, for each group of documents (domain × cross-fitting fold), the number of positions
where it is active and Σ|h_i|; every number of the ``ffn_activity`` table follows from these (``activity_row``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mdlbench.corpora import Document
from mdlbench.lens.layout import FfnLayout
from mdlbench.scoring.base import ScoredPositions

UNDER_FRACTION = 0.01  # neurons_active_under_1pct: active at fewer than this fraction of positions
QUANTILES = (0.1, 0.5, 0.9)  # of the per-neuron firing frequency (numpy's default linear interpolation)
TOP_SHARE = 0.1  # top10pct_mass_share: the largest ⌈TOP_SHARE · d_ff⌉ |h_i| at each position


def top_k(d_ff: int) -> int:
    """Neurons in the "top 10%": ⌈d_ff / 10⌉. Example: 1536 -> 154, 128 -> 13, 5 -> 1."""
    return max(1, math.ceil(TOP_SHARE * d_ff - 1e-9))


@dataclass
class NeuronStats:
    """Sums over the positions of one group of documents, for one layer."""

    d_ff: int
    n_positions: int = 0
    active_counts: np.ndarray = field(default=None)  # type: ignore[assignment]  # int64 (d_ff,)
    abs_h_sum: np.ndarray = field(default=None)  # type: ignore[assignment]  # float64 (d_ff,)
    top_share_sums: list[float] = field(default_factory=list)  # Σ share over positions, one entry per batch
    n_share_positions: int = 0

    def __post_init__(self) -> None:
        if self.active_counts is None:
            self.active_counts = np.zeros(self.d_ff, dtype=np.int64)
        if self.abs_h_sum is None:
            self.abs_h_sum = np.zeros(self.d_ff, dtype=np.float64)

    def add(self, other: NeuronStats) -> None:
        self.n_positions += other.n_positions
        self.active_counts += other.active_counts
        self.abs_h_sum += other.abs_h_sum
        self.top_share_sums += other.top_share_sums
        self.n_share_positions += other.n_share_positions

    @staticmethod
    def total(parts: Sequence[NeuronStats], d_ff: int) -> NeuronStats:
        out = NeuronStats(d_ff)
        for p in parts:
            out.add(p)
        return out

    @property
    def top10pct_mass_share(self) -> float:
        return math.fsum(self.top_share_sums) / self.n_share_positions if self.n_share_positions else math.nan


def active_mask(h: torch.Tensor, abs_h: torch.Tensor, *, relu_family: bool, threshold: float) -> torch.Tensor:
    """(P, d_ff) bool: which neurons are active at each position (rule in the module docstring)."""
    if relu_family:
        return h != 0
    rms = h.pow(2).mean(dim=-1, keepdim=True).sqrt()  # (P, 1)
    return abs_h > threshold * rms


def top_share(abs_h: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(share of Σ|h| in the ⌈d_ff/10⌉ largest |h_i|, float64, for each position with Σ|h| > 0; that mask)."""
    d_ff = abs_h.shape[-1]
    k = top_k(d_ff)
    if abs_h.device.type == "cpu":
        values = abs_h.numpy()
        # introselect instead of torch.topk: the same k values, far cheaper on a CPU for k in the hundreds.
        top = np.partition(values, d_ff - k, axis=-1)[:, d_ff - k:].sum(axis=-1, dtype=np.float64)
    else:
        top = abs_h.topk(k, dim=-1).values.sum(dim=-1, dtype=torch.float64).cpu().numpy()
    total = abs_h.sum(dim=-1, dtype=torch.float64).cpu().numpy()
    valid = total > 0
    return top[valid] / total[valid], valid


class ActivityCollector:
    """A ``ForwardObserver`` with one hook per layer; groups positions by ``group_of(document)``."""

    def __init__(self, layout: FfnLayout, *, threshold: float, group_of: Callable[[Document], Hashable]) -> None:
        self.layout = layout
        self.threshold = threshold
        self.group_of = group_of
        self.stats: dict[tuple[int, Hashable], NeuronStats] = {}  # (layer, group) -> sums
        self._positions: ScoredPositions | None = None
        self._row_group: torch.Tensor | None = None  # (B,) index into _keys
        self._keys: list[Hashable] = []
        self._staged: dict[int, list[NeuronStats]] = {}

    # -- ForwardObserver -----------------------------------------------------------------------------------------
    def begin(self, positions: ScoredPositions) -> None:
        keys = [self.group_of(d) for d in positions.documents]
        self._keys = list(dict.fromkeys(keys))
        index = {k: i for i, k in enumerate(self._keys)}
        self._row_group = torch.tensor([index[k] for k in keys], dtype=torch.long, device=positions.rows.device)
        self._positions = positions
        self._staged = {}  # a batch that failed before commit is dropped here

    def commit(self) -> None:
        for layer, parts in self._staged.items():
            for key, part in zip(self._keys, parts, strict=True):
                if part.n_positions:
                    self.stats.setdefault((layer, key), NeuronStats(part.d_ff)).add(part)
        self._staged = {}
        self._positions = None

    # -- hooks ---------------------------------------------------------------------------------------------------
    def _hook(self, layer: int) -> Callable[[Any, tuple[Any, ...]], None]:
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            if self._positions is None or self._row_group is None:
                return  # a forward outside a scored batch (e.g. the head check)
            h = args[0][self._positions.rows, self._positions.cols].float()  # (P, d_ff): coded positions only
            abs_h = h.abs()
            active = active_mask(h, abs_h, relu_family=self.layout.relu_family, threshold=self.threshold)
            share, valid = top_share(abs_h)
            group = self._row_group[self._positions.rows].cpu().numpy()  # (P,) group of each position
            parts = []
            for g in range(len(self._keys)):
                if len(self._keys) == 1:
                    a, m, sel = active, abs_h, slice(None)
                else:
                    sel = group == g
                    mask = torch.as_tensor(sel, device=h.device)
                    a, m = active[mask], abs_h[mask]
                parts.append(NeuronStats(
                    h.shape[-1], int(a.shape[0]), a.sum(dim=0).cpu().numpy().astype(np.int64),
                    m.sum(dim=0, dtype=torch.float64).cpu().numpy(),
                    [math.fsum(share[group[valid] == g].tolist()) if len(self._keys) > 1 else
                     math.fsum(share.tolist())], int(valid[sel].sum())))
            self._staged[layer] = parts

        return hook

    @contextmanager
    def observing(self, scorer: Any) -> Iterator[ActivityCollector]:
        """Hooks on every down projection and the scorer's observer set, for the duration of the block."""
        handles = [layer.module(layer.out_proj).register_forward_pre_hook(self._hook(layer.index))
                   for layer in self.layout.layers]
        previous = scorer.forward_observer
        scorer.forward_observer = self
        try:
            yield self
        finally:
            scorer.forward_observer = previous
            for handle in handles:
                handle.remove()

    # -- results ---------------------------------------------------------------------------------------------------
    def layer_stats(self, layer: int, keep: Callable[[Hashable], bool] = lambda key: True) -> NeuronStats:
        """Sums of one layer over the groups that ``keep`` accepts."""
        d_ff = self.layout.layers[layer].d_ff
        return NeuronStats.total([s for (lay, key), s in self.stats.items() if lay == layer and keep(key)], d_ff)


def activity_row(stats: NeuronStats, *, layer: int, domain: str, activity_threshold: float | None,
                 active_rule: str, activation: str) -> dict[str, Any]:
    """One ``ffn_activity`` row from a layer's sums (columns in schema order).

    mean_active_fraction = Σ active_counts / (n_positions · d_ff); dead_neurons = #(count == 0);
    neurons_active_under_1pct = #(count < 0.01 · n_positions); p10/p50/p90 = quantiles of count / n_positions.
    """
    n, d_ff = stats.n_positions, stats.d_ff
    counts = stats.active_counts
    freq = counts / n if n else np.full(d_ff, np.nan)
    q = np.quantile(freq, QUANTILES) if n else [math.nan] * len(QUANTILES)
    return {
        "layer": layer, "domain": domain, "n_positions": n, "d_ff": d_ff, "activation": activation,
        "active_rule": active_rule, "activity_threshold": activity_threshold,
        "mean_active_fraction": int(counts.sum()) / (n * d_ff) if n else math.nan,
        "dead_neurons": int((counts == 0).sum()),
        "neurons_active_under_1pct": int((counts < UNDER_FRACTION * n).sum()),
        "p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2]),
        "top10pct_mass_share": stats.top10pct_mass_share,
        "n_active": int(counts.sum()),
        "neuron_active_counts": counts.astype(np.int64).tolist(),
        "neuron_mean_abs_h": (stats.abs_h_sum / n).tolist() if n else [math.nan] * d_ff,
    }


def active_rule_of(layout: FfnLayout) -> str:
    if layout.relu_family:
        return "h != 0 (ReLU family)"
    return "|h| > tau * rms(h)"
