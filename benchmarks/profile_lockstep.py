"""Where the lockstep coder's time goes: cProfile of one corpus encode, the functions with the most own time.

    python benchmarks/profile_lockstep.py [--model tiny|smollm2] [--threads 2] [--batch-size 64] [--pieces 128]

The same model and pieces of the sample as benchmarks/bench_coding.py (built once into its cache folder); one
warm-up encode of 8 pieces, then the profiled encode. Prints tokens/s (profiling slows the Python parts) and the
top functions by own time; the README's account of the lockstep path's time comes from this script.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pieces", type=int, default=128)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--sort", default="tottime", help="pstats order: tottime (own time) or cumulative")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import bench_coding as bc
    import bench_throughput as bt
    import torch

    from mdlbench.coding.archive import Source, batch_settings, compress_documents
    from mdlbench.coding.identity import resolve_settings
    from mdlbench.scoring.models import load_model

    torch.set_num_threads(args.threads)
    cache = bc.DEFAULT_CACHE
    model_dir = bt.build_tiny(cache / "tiny-gpt2-l2-d128") if args.model == "tiny" else bt.build_smollm2(
        cache / bt.SMOLLM2_DIRNAME)
    _, piece_bytes, _ = bc.MODELS[args.model]
    loaded = load_model(str(model_dir), device="cpu")
    settings = resolve_settings(loaded, window=bc.WINDOW)
    batch = batch_settings(args.batch_size, loaded, settings.window)
    sources = [Source(f"doc{i}", t.encode("utf-8")) for i, t in enumerate(bc.pieces(args.pieces, piece_bytes))]
    compress_documents(loaded, sources[:8], settings=settings, batch=batch)
    profile = cProfile.Profile()
    t = time.perf_counter()
    profile.enable()
    packed = compress_documents(loaded, sources, settings=settings, batch=batch)
    profile.disable()
    seconds = time.perf_counter() - t
    n_symbols = sum(int(e["n_symbols"]) for e in packed.entries)
    print(f"{args.model}, batch {batch.batch_size}, {args.threads} thread(s), {len(sources)} pieces: "
          f"{n_symbols:,} symbols in {seconds:.1f} s under the profiler ({n_symbols / seconds:,.0f} tokens/s)")
    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
