"""`mdlbench lens -m MODEL -c CORPUS`: what each part of a model costs in bits, and what it buys.

Takes `run`'s model, corpus and scoring flags (the base pass is that run, bit for bit). Tables go to ``--out``:
``component_codes``, ``ffn_activity``, ``ffn_pruning``, and a ``quantized-mixed`` row in ``two_part``; the plan,
an estimate and one line per re-scoring go to stderr; the summary tables to stdout.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from mdlbench.cli.args import add_out_arg, add_progress_args, non_negative_int, results_dir
from mdlbench.cli.fmt import format_table
from mdlbench.cli.run import add_scoring_arguments, scoring_options
from mdlbench.config import RunOptions
from mdlbench.console import fit_line
from mdlbench.progress import log_to_stderr

if TYPE_CHECKING:
    from mdlbench.lens.driver import LensResult

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scoring_arguments(parser, repeatable=False)
    add_out_arg(parser)
    add = parser.add_argument
    add("--bits", default="8,4,3,2", help="quantizer widths for the component codes, comma-separated, or 'none' "
        "(each component at each width is one re-scoring of the corpus; default 8,4,3,2)")
    add("--per-layer", action="store_true", help="also one row per (component, layer), and prune one layer at a "
        "time (many more re-scorings: see the plan printed first)")
    add("--prune", default="0.1,0.25,0.5,0.75", help="fractions of FFN neurons removed in every layer, "
        "comma-separated, or 'none' (default 0.1,0.25,0.5,0.75)")
    add("--criteria", help="pruning criteria, comma-separated (default: all three): frequency = fewest activations "
        "first, magnitude = smallest mean |h|, random = seeded control")
    add("--activity-threshold", type=float, default=0.01, metavar="TAU",
        help="non-ReLU activations: neuron i is active where |h_i| > TAU * RMS(h) (default 0.01)")
    add("--seed", type=non_negative_int, default=0, help="seed of the random pruning control (default 0)")
    add("--bootstrap-samples", type=non_negative_int, default=10_000,
        help="as in `run` (part of the run id: give the run's value to attach the lens to it)")
    add("--bootstrap-seed", type=non_negative_int, default=0, help="as `run --seed` (part of the run id)")
    add("--force", action="store_true", help="recompute the base run even when it is complete")
    add_progress_args(parser)


def main(args: argparse.Namespace) -> int:
    from mdlbench.lens.driver import LensSettings, parse_list
    from mdlbench.run.lens import run_lens

    criteria = {} if args.criteria is None else {"criteria": parse_list(args.criteria, str, "--criteria")}
    settings = LensSettings(bits=parse_list(args.bits, int, "--bits"), per_layer=args.per_layer,
                            prune=parse_list(args.prune, float, "--prune"), **criteria,
                            activity_threshold=args.activity_threshold, seed=args.seed)
    options = RunOptions(**scoring_options(args), bootstrap_samples=args.bootstrap_samples, seed=args.bootstrap_seed,
                         force=args.force, progress=args.progress)
    out_dir = results_dir(args)
    result = run_lens(args.model, args.corpus, options, settings, out_dir, log=log_to_stderr)
    print_summary(result, out_dir)
    return 0


def _mbit(bits: float) -> float:
    return bits / 1e6


def print_summary(result: LensResult, out_dir: Path) -> None:
    comp = [r for r in result.component_rows if r["layer"] == -1]
    print(fit_line(f"lens of run {result.run_id} -> {out_dir}"))
    if comp:
        print("\ncomponent codes (one component at k bits, the rest as stored; bits 0 = as stored):")
        print(format_table(
            ["component", "params", "bits", "param Mbit", "stored Mbit", "Δ data bits", "net bits saved"],
            [[r["component"], r["n_params"], r["bits"], _mbit(r["param_bits"]), _mbit(r["param_bits_reference"]),
              r["delta_data_bits"], r["net_bits_saved"]] for r in comp]))
    for r in result.two_part_rows:
        print("\n" + fit_line(f"{r['param_code']}: model {_mbit(r['model_bits']):.3f} Mbit + tokenizer "
                                f"{_mbit(r['tokenizer_bits']):.3f} Mbit + data {r['data_bits']:,.1f} bits = "
                                f"{r['total_bits_per_byte']:.4f} bits/byte ({r['detail']})"))
    overall = [r for r in result.activity_rows if r["domain"] == ""]
    if overall:
        print("\nFFN activity per layer (all documents; rule: " + overall[0]["active_rule"] + "):")
        print(format_table(["layer", "positions", "d_ff", "mean active", "dead", "active <1%", "p10", "p50", "p90",
                            "top-10% |h| share"],
                           [[r["layer"], r["n_positions"], r["d_ff"], r["mean_active_fraction"], r["dead_neurons"],
                             r["neurons_active_under_1pct"], r["p10"], r["p50"], r["p90"],
                             r["top10pct_mass_share"]] for r in overall]))
    if result.pruning_rows:
        print("\nFFN pruning (held-out: each fold scored by a model ranked on the other):")
        print(format_table(["criterion", "fraction", "layer", "neurons removed", "param bits saved",
                            "Δ data bits", "net bits saved"],
                           [[r["criterion"], r["fraction"], r["layer"], r["neurons_removed"], r["param_bits_saved"],
                             r["delta_data_bits"], r["net_bits_saved"]] for r in result.pruning_rows]))
    times = ", ".join(f"{k} {v:.1f} s" for k, v in result.timer.parts.items() if not math.isnan(v))
    print("\n" + fit_line(f"wall time: {times}"))
