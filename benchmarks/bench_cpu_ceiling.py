"""Where one scoring window's time goes, and how much any scorer could save with the same numbers.

    python benchmarks/bench_cpu_ceiling.py [--model-dir DIR] [--window 512] [--compile] [--out FILE.json]

On the first full W-token window of the sample's first long document, under the SmolLM2-135M fp32 folder that
bench_throughput.py builds (or any --model-dir), each timed as the median of --repeats calls after one warm-up, in
one process:

* ``backbone``: ``model.base_model`` forward, the hidden states only (what every scorer must compute);
* ``mdlbench_window``: mdlbench's whole per-window path, ``HFScorer._scored_bits`` (backbone, output layer at the
  scored positions in slices, fp32 exponentials with a float64 normalizer);
* ``lm_eval_style``: ``model(...).logits`` then a full fp32 ``log_softmax`` and a gather, as lm-eval's
  ``loglikelihood_rolling`` does per window;
* ``backbone_compiled`` (with --compile): the backbone under ``torch.compile`` with inductor weight freezing,
  with the compile time and the largest difference of its hidden states from eager.

``head_and_normalizer`` = mdlbench_window − backbone; ``lm_eval_extra`` = lm_eval_style − mdlbench_window.
If the backbone is most of the window, no scorer that keeps the numbers can be much faster than another.
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
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "cpu-ceiling.json"
DEFAULT_MODEL = Path("/tmp/mdlbench-bench-cache/smollm2-135m-q4_1-fp32")


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL,
                        help="a save_pretrained folder (default: bench_throughput.py's SmolLM2 fp32 cache)")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time the backbone under torch.compile")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.model_dir.is_dir():
        raise SystemExit(f"--model-dir {str(args.model_dir)!r}: not a folder; run benchmarks/bench_throughput.py "
                         "--models smollm2 once to build it, or pass a save_pretrained folder")

    import torch

    from mdlbench.config import ScoringSettings
    from mdlbench.scoring.hf import HFScorer
    from mdlbench.scoring.models import load_model

    torch.set_grad_enabled(False)
    loaded = load_model(str(args.model_dir), device="cpu")
    model = loaded.model
    w = args.window
    scorer = HFScorer(loaded, ScoringSettings(w, w, "uniform", "none", 1, False))
    # The first window of the first sample document long enough to fill one: real text, a full window.
    from mdlbench.corpora import open_corpus

    docs = [(0, d) for d in open_corpus("sample").documents()]
    item = next(p for p in (scorer.prepare([d])[0] for d in docs) if p.windows and p.windows[0].n_input == w)
    batch = [(item, 0)]
    inputs = torch.tensor([item.stream[:w]])
    targets = torch.tensor(item.stream[1:w + 1])

    def backbone() -> Any:
        return model.base_model(input_ids=inputs, use_cache=False).last_hidden_state

    def lm_eval_style() -> Any:
        logits = model(input_ids=inputs, use_cache=False).logits[0]
        return -torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None])

    timings = {"backbone": median_seconds(backbone, args.repeats),
               "mdlbench_window": median_seconds(lambda: scorer._scored_bits(batch), args.repeats),
               "lm_eval_style": median_seconds(lm_eval_style, args.repeats)}
    result: dict[str, Any] = {}
    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        eager = backbone()
        t = time.perf_counter()
        compiled = torch.compile(model.base_model, dynamic=False)
        out = compiled(input_ids=inputs, use_cache=False).last_hidden_state
        result["compile_seconds"] = time.perf_counter() - t
        result["compiled_max_abs_diff"] = float((out - eager).abs().max())
        timings["backbone_compiled"] = median_seconds(
            lambda: compiled(input_ids=inputs, use_cache=False).last_hidden_state, args.repeats)
    timings["head_and_normalizer"] = timings["mdlbench_window"] - timings["backbone"]
    timings["lm_eval_extra"] = timings["lm_eval_style"] - timings["mdlbench_window"]
    report = {"benchmark": "cpu-ceiling", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["bench_cpu_ceiling.py", *(argv if argv is not None else sys.argv[1:])]),
              "model_dir": str(args.model_dir), "window": w, "vocab_size": loaded.vocab_size,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor(),
              "load_average_1min": os.getloadavg()[0], "median_seconds_per_window": timings, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    for k, v in timings.items():
        print(f"{k:>22}: {v:.3f} s per {w}-token window")
    for k, v in result.items():
        print(f"{k:>22}: {v:.3g}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
