"""PURE arithmetic of the lens tables: every derived column is one of these formulas of stored columns.

component_codes (one component at k bits, everything else as stored):
    delta_data_bits  = data_bits − data_bits of the unmodified model (the bits = 0 row of any component)
    net_bits_saved   = param_bits_reference − param_bits − delta_data_bits      (> 0: storing it at k bits pays)
    marginal_data_bits_per_param_bit = delta_data_bits / (param_bits_reference − param_bits)
                       (extra data bits per parameter bit saved; < 1 pays; null when no parameter bit is saved)
ffn_pruning:
    param_bits_saved = Σ removed elements × the stored width of their tensor (as in the reference code);
                       storage_bits_per_param = param_bits_saved / params_removed
    data_bits        = data_bits_fold0 + data_bits_fold1         (each fold scored by a model ranked on the other)
    delta_data_bits  = data_bits − base_data_bits;   net_bits_saved = param_bits_saved − delta_data_bits
quantized-mixed (``two_part``): for each component the option (stored, or one k) with the least
    param_bits + delta_data_bits; model_bits = Σ chosen param_bits + log2(options ^ components).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mdlbench.mdl.two_part import choice_cost_bits

REFERENCE_BITS = 0  # the ``bits`` value of a component's row as stored


def net_bits_saved(param_bits_reference: float, param_bits: float, delta_data_bits: float) -> float:
    """Example: stored 1000 bits, coded in 300 at k bits, 200 more data bits -> 500 bits saved."""
    return param_bits_reference - param_bits - delta_data_bits


def marginal_data_bits_per_param_bit(param_bits_reference: float, param_bits: float,
                                     delta_data_bits: float) -> float | None:
    """Δ data bits per parameter bit saved; None when the k-bit code saves no parameter bit.

    Example: 700 parameter bits saved for 200 more data bits -> 0.2857 (pays: below 1)."""
    saved = param_bits_reference - param_bits
    return delta_data_bits / saved if saved > 0 else None


def component_row(*, component: str, layer: int, bits: int, n_params: int, n_quantized_params: int,
                  param_bits: float, param_bits_reference: float, reference_code: str, data_bits: float,
                  base_data_bits: float, packed_bytes: int | None, side_bytes: int | None, wall_seconds: float,
                  detail: str) -> dict[str, Any]:
    """One ``component_codes`` row, columns in schema order."""
    delta = data_bits - base_data_bits
    return {
        "component": component, "layer": layer, "bits": bits, "n_params": n_params,
        "n_quantized_params": n_quantized_params, "param_bits": param_bits,
        "param_bits_reference": param_bits_reference, "reference_code": reference_code, "data_bits": data_bits,
        "delta_data_bits": delta, "net_bits_saved": net_bits_saved(param_bits_reference, param_bits, delta),
        "marginal_data_bits_per_param_bit": marginal_data_bits_per_param_bit(param_bits_reference, param_bits,
                                                                             delta),
        "packed_bytes": packed_bytes, "side_bytes": side_bytes, "wall_seconds": wall_seconds, "detail": detail,
    }


def pruning_row(*, criterion: str, fraction: float, layer: int, seed: int | None, neurons_removed: int,
                params_removed: int, param_bits_saved: float, fold_bits: Sequence[float],
                fold_docs: Sequence[int], base_data_bits: float, wall_seconds: float) -> dict[str, Any]:
    """One ``ffn_pruning`` row, columns in schema order."""
    data_bits = math.fsum(fold_bits)
    saved = param_bits_saved
    delta = data_bits - base_data_bits
    return {
        "criterion": criterion, "fraction": fraction, "layer": layer, "seed": seed,
        "neurons_removed": neurons_removed, "params_removed": params_removed,
        "storage_bits_per_param": saved / params_removed if params_removed else None, "param_bits_saved": saved,
        "data_bits": data_bits,
        "base_data_bits": base_data_bits, "delta_data_bits": delta, "net_bits_saved": saved - delta,
        "data_bits_fold0": fold_bits[0], "data_bits_fold1": fold_bits[1], "n_docs_fold0": fold_docs[0],
        "n_docs_fold1": fold_docs[1], "wall_seconds": wall_seconds,
    }


@dataclass(frozen=True, slots=True)
class MixedChoice:
    """The option chosen for one component: ``bits`` (0 = as stored) and what it costs."""

    component: str
    bits: int
    param_bits: float
    delta_data_bits: float
    exact: bool = False  # the component has nothing quantized-k rounds (1-D tensors only): every k codes it exactly


def choose_mixed(rows: Sequence[Mapping[str, Any]]) -> tuple[list[MixedChoice], int]:
    """Per component (layer -1 rows), the option with the least param_bits + delta_data_bits (ties: fewer bits
    first, the stored form before any k); and the number of combinations the choice was made among.

    Example: options {stored: 1000 + 0, 8: 600 + 10, 4: 300 + 900} -> 8 bits; two components with three options
    each -> 9 combinations.
    """
    by_component: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if int(r["layer"]) == -1:
            by_component.setdefault(str(r["component"]), []).append(r)
    choices = []
    n_combinations = 1
    for component, options in by_component.items():
        best = min(options, key=lambda r: (float(r["param_bits"]) + float(r["delta_data_bits"]),
                                           int(r["bits"]) != REFERENCE_BITS, int(r["bits"])))
        choices.append(MixedChoice(component, int(best["bits"]), float(best["param_bits"]),
                                   float(best["delta_data_bits"]), int(best["n_quantized_params"]) == 0))
        n_combinations *= len(options)
    return choices, n_combinations


def mixed_model_bits(choices: Sequence[MixedChoice], n_combinations: int) -> float:
    """Σ chosen parameter codes + log2(number of combinations): the price of having picked the best one."""
    return math.fsum(c.param_bits for c in choices) + choice_cost_bits(n_combinations)


def describe_mixed(choices: Sequence[MixedChoice], n_combinations: int) -> str:
    parts = [f"{c.component}: " + ("as stored" if c.bits == REFERENCE_BITS else
                                   "exact, zstd" if c.exact else f"{c.bits} bits") for c in choices]
    return (f"per-component choice ({', '.join(parts)}) + log2({n_combinations}) = "
            f"{choice_cost_bits(n_combinations):.3f} bits for the choice among {n_combinations} combinations; "
            "data re-scored with all choices applied at once")
