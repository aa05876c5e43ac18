"""The three pieces of a lockstep coding step that this session's speed-ups replaced, each against its predecessor.

    python benchmarks/bench_coding_rows.py [--threads 2] [--vocab 50257] [--width 128] [--out FILE.json]

Random inputs of the tiny benchmark model's shapes (width 128, GPT-2's vocabulary), medians of repeated calls:

* head: (B, D) × (D, V) by ``torch.mm`` on a row-major (D, V) weight (the previous kernel) against oneDNN's linear
  on the weight converted once (``scoring/head_kernels.py``), in GFLOP/s for B = 32, 64 and 128, and whether the
  two gave exactly the same values (``torch.equal``);
* rows: the previous four passes over a (64, V) batch (max, subtract, exp, sum) against one ``torch.softmax``
  (``coding/rows.probability_rows``), ms per step;
* coder: constriction's ``encode`` per symbol with one V-entry row (the previous one-level code) against the two
  rows of ``coding/rows.py``'s two-level code (block masses, then the block), µs per symbol.

Results: benchmarks/results/coding-rows-cpu.json (the README's account of the coding speed cites them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "coding-rows-cpu.json"
REPEATS = 7


def _median_seconds(fn: Callable[[], object], calls: int) -> float:
    """Median over REPEATS rounds of the mean time of ``calls`` calls (after one warm-up round)."""
    fn()
    rounds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def bench_head(vocab: int, width: int) -> list[dict[str, object]]:
    import torch

    from mdlbench.scoring.head_kernels import MM, ONEDNN, head_kernel, make_head

    weight = torch.randn(vocab, width)
    out = []
    for batch in (32, 64, 128):
        hidden = torch.randn(batch, width)
        flop = 2 * batch * width * vocab
        row = {"batch": batch}
        results = {}
        for kernel in dict.fromkeys([MM, head_kernel("cpu", torch.float32)]):
            head = make_head(kernel, weight, None)
            results[kernel] = head.apply(hidden)
            row[f"{kernel}_gflops"] = flop / _median_seconds(lambda h=head, x=hidden: h.apply(x), 10) / 1e9
        row["identical"] = bool(torch.equal(results[MM], results.get(ONEDNN, results[MM])))
        out.append(row)
    return out


def bench_rows(vocab: int) -> dict[str, float]:
    import torch

    from mdlbench.coding.rows import probability_rows

    logits = torch.randn(64, vocab) * 3

    def four_passes() -> None:
        z = logits.clone()
        z.sub_(z.amax(dim=-1, keepdim=True)).exp_().sum(dim=-1)

    def copy_only() -> None:
        logits.clone()

    copy = _median_seconds(copy_only, 20)
    return {"four_passes_ms": (_median_seconds(four_passes, 20) - copy) * 1e3,  # the clone is not part of it
            "softmax_ms": _median_seconds(lambda: probability_rows(logits), 20) * 1e3}


def bench_coder(vocab: int) -> dict[str, float]:
    import constriction
    import numpy as np
    import torch

    from mdlbench.coding.rows import block_masses, block_symbols, probability_rows

    family = constriction.stream.model.Categorical(perfect=False)
    p = probability_rows(torch.randn(64, vocab) * 3)
    block = block_symbols(vocab)
    p_np, masses = p.numpy(), block_masses(p, block).numpy()
    targets = np.random.default_rng(0).integers(0, vocab, 64).astype(np.int32)
    blocks, inner = np.divmod(targets, np.int32(block))
    encoder = constriction.stream.queue.RangeEncoder()

    def one_level() -> None:
        for r in range(64):
            encoder.encode(targets[r:r + 1], family, p_np[r:r + 1])

    def two_level() -> None:
        for r in range(64):
            b = int(blocks[r])
            encoder.encode(blocks[r:r + 1], family, masses[r:r + 1])
            encoder.encode(inner[r:r + 1], family, p_np[r:r + 1, b * block:(b + 1) * block])

    return {"one_level_us_per_symbol": _median_seconds(one_level, 3) / 64 * 1e6,
            "two_level_us_per_symbol": _median_seconds(two_level, 3) / 64 * 1e6, "block_symbols": block}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=50_257)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = {"benchmark": "coding-rows", "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                          "cpu_capability": torch.backends.cpu.get_cpu_capability()},
              "threads": args.threads, "vocab": args.vocab, "width": args.width,
              "head": bench_head(args.vocab, args.width), "rows": bench_rows(args.vocab),
              "coder": bench_coder(args.vocab)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    print(json.dumps({k: result[k] for k in ("head", "rows", "coder")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
