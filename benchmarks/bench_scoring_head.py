"""The scorer's output layer: oneDNN against the layer itself (MKL's ``linear``), same run, same documents.

    python benchmarks/bench_scoring_head.py [--repeats 3] [--threads 2] [--out FILE.json]

``HFScorer`` on the tiny model of benchmarks/bench_coding.py (2 layers, width 128, GPT-2's 50,257-token
vocabulary; window 256, stride 128) over the sample cut into 241 pieces of 1,200 bytes, the two kernels in
alternation ``--repeats`` times (this machine's speed drifts); reports tokens/s of each run, the median ratio, and
the largest relative difference of a document's code length between the kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent


def _score(loaded: Any, docs: list[Any]) -> tuple[float, list[float]]:
    from mdlbench.config import ScoringSettings
    from mdlbench.scoring.hf import HFScorer

    scorer = HFScorer(loaded, ScoringSettings(256, 128))
    t = time.perf_counter()
    codes = list(scorer.score(enumerate(docs)))
    seconds = time.perf_counter() - t
    return sum(c.n_tokens for c in codes) / seconds, [c.code_length_bits for c in codes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "scoring-head-cpu.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import bench_coding as bc
    import bench_throughput as bt
    import torch

    import mdlbench.scoring.hf as hf
    from mdlbench.corpora.documents import Document
    from mdlbench.scoring.models import load_model

    torch.set_num_threads(args.threads)
    loaded = load_model(str(bt.build_tiny(bc.DEFAULT_CACHE / "tiny-gpt2-l2-d128")), device="cpu")
    docs = [Document(f"doc{i}", t) for i, t in enumerate(bc.pieces(241, 1_200))]
    choose = hf.head_kernel
    rates: dict[str, list[float]] = {"onednn": [], "linear": []}
    bits: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, kernel in (("onednn", choose), ("linear", lambda *_: "mm")):  # "mm": the layer itself
            hf.head_kernel = kernel
            rate, bits[name] = _score(loaded, docs)
            rates[name].append(rate)
    hf.head_kernel = choose
    ratios = [a / b for a, b in zip(rates["onednn"], rates["linear"], strict=True)]
    worst = max(abs(a - b) / b for a, b in zip(bits["onednn"], bits["linear"], strict=True))
    result = {"benchmark": "scoring-head", "model": "tiny (2 layers, width 128, V = 50,257)", "threads": args.threads,
              "documents": len(docs), "tokens_per_second": rates, "ratios": ratios,
              "median_ratio": statistics.median(ratios), "max_relative_bits_difference": worst,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    print(f"scoring tokens/s, oneDNN head: {', '.join(f'{r:,.0f}' for r in rates['onednn'])}; linear: "
          f"{', '.join(f'{r:,.0f}' for r in rates['linear'])}; median ratio {statistics.median(ratios):.2f}x; "
          f"largest relative difference of a document's bits {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
