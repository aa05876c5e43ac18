"""Memory stays flat as the corpus grows: stream generated corpora of increasing size through `mdlbench run`
and record the peak RSS of each run (a fresh process each, so peaks do not mix).

    python benchmarks/bench_memory.py --sizes-mb 10,100,1000 [--model uniform-bytes] \
        [--out benchmarks/results/memory.json]

The corpus is JSONL of generated documents (random words, 1-20 KB each, a fixed seed), written to a temporary
folder; compressor baselines are off (they have their own benchmark) so the figure is the scoring pipeline's:
reading, hashing, tokenizing, chunked checkpoints and the final tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = tuple("the of and to in a is that for it as was with be by on not he this are or his from at which but "
         "have an they you were her she there one all we their been has when who will more no if out so said "
         "what up its about into than them can only other new some could time these two may then do first any "
         "compression model bits entropy code length token byte corpus prequential 数据 压缩 🙂".split())


def write_corpus(path: Path, size_bytes: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    written = 0
    n = 0
    with path.open("w", encoding="utf-8") as f:
        while written < size_bytes:
            text = " ".join(rng.choices(WORDS, k=rng.randint(150, 3000)))
            line = json.dumps({"id": f"g{n}", "text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
            n += 1
    return n


def run_one(corpus: Path, model: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "mdlbench", "run", "-m", model, "-c", str(corpus), "--id-field", "id",
           "--baselines", "none", "--two-part", "none", "--out", str(out), "--quiet", "--json",
           "--bootstrap-samples", "1000"]
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if r.returncode != 0:
        raise SystemExit(f"mdlbench failed: {r.stderr[-2000:]}")
    summary = json.loads(r.stdout.splitlines()[0])
    # ru_maxrss of children is the max over all children so far: runs go smallest first, so a growth shows.
    return {"seconds": seconds, "peak_rss_mb": peak_kb / 1024, "peak_rss_mb_before": before / 1024,
            "n_docs": summary["n_docs"], "n_bytes": summary["n_bytes"], "n_tokens": summary["n_tokens"],
            "bits_per_byte": summary["bits_per_byte"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="10,100,1000")
    parser.add_argument("--model", default="uniform-bytes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory.json"))
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size_mb in sizes:
            corpus = Path(tmp) / f"corpus-{size_mb:g}mb.jsonl"
            n_docs = write_corpus(corpus, int(size_mb * 1e6))
            row = {"size_mb": size_mb, "model": args.model, "generated_docs": n_docs,
                   **run_one(corpus, args.model, Path(tmp) / f"out-{size_mb:g}")}
            results.append(row)
            print(f"{size_mb:>8g} MB  {row['n_docs']:>8} docs  {row['seconds']:8.1f} s  peak RSS "
                  f"{row['peak_rss_mb']:8.1f} MB", file=sys.stderr)
            corpus.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                           "cpus": os.cpu_count()}, "results": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print("| corpus MB | documents | seconds | peak RSS MB |\n|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['size_mb']:g} | {r['n_docs']:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
