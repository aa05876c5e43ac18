"""Real compression speed: today's per-token coder (commit d028630) against lockstep batched coding, same run.

    python benchmarks/bench_coding.py [--models tiny,smollm2] [--threads 1] [--out FILE.json]

Paths, each in its own subprocess of this script (``--tool``), on the same documents of the packaged sample:

* ``old``: ``mdlbench.coding.compress_bytes`` / ``decompress_bytes`` document by document, imported from the files
  of commit d028630 (``git archive`` into ``--cache-dir``; nothing of it is copied here): one forward per token, one
  float64 row per symbol. Its rate does not depend on how many documents there are (batch 1), so it
  runs on a prefix of the documents (``--old-max-bytes``) to keep the benchmark short.
* ``new``: ``mdlbench.coding.archive.compress_documents`` into one archive, then ``decode_archive``, from this
  checkout: B documents side by side (``--batch-size``, default the CPU auto size). The sample has 71 documents
  of ~4 KB, so the new path codes them cut into pieces (``--*-docs`` pieces of ``--*-doc-bytes``): enough
  documents to fill the batches, each longer than the window, few enough tokens for a short run.

Each reports tokens/s (coded symbols / wall seconds of coding, model loading excluded) for encode and decode, CPU
seconds, the payload bits against the ideal code length (and whether every document stays within 64 bits +
0.1% of its own ideal), and the cost of building one probability row (``old``: its float64 row function on the
same (V,) logits; ``new``: the float32 softmax of a (B, V) batch, per row). The archive's size is
compared with the best classical compressor on the same bytes (``mdlbench.baselines.compressors``, every
registered one but the dictionary variant, on the concatenated documents and per document), with the model
counted separately as two-part codes do (tiny: fp32 parameters, the naive code; SmolLM2: its GGUF file).

Models: ``tiny`` — 2 layers, width 128, 4 heads, GPT-2's 50,257-token tokenizer, seed 0 (benchmarks/
bench_throughput.py's ``build_tiny``), window 256; ``smollm2`` — the packaged SmolLM2-135M-Instruct Q4_1 GGUF
dequantized to an fp32 folder (``build_smollm2``), window 256. Stride = window / 2, BOS prefix, EOS coded.

Timings on a shared machine swing with the other processes' load: both paths run back to back in one invocation,
each reports its CPU seconds and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "mdlbench-bench-cache"
OLD_COMMIT = "d028630"
WINDOW = 256
# name -> (new path: pieces, bytes per piece; old path: bytes of whole documents from the start). The sample has
# 71 documents of ~4 KB: the new path codes them cut into pieces, enough to fill the auto batch (128) about twice
# over, as a corpus archive's chunks are, for the tiny model
# each longer than the window (so window restarts are part of the measurement, as they are in the old path's).
# SmolLM2's default pieces are shorter than the window, so neither path restarts a window there (restarts at stride
# W / 2 double both paths' forward work and lower the ratio; --smollm2-doc-bytes 1100 measures that).
MODELS = {
    "tiny": (256, 1_200, 9_000),
    "smollm2": (256, 500, 600),
}
ROW_REPEATS = 20


# ---------------------------------------------------------------------------------------------------------------
# Child processes: one path, one model
# ---------------------------------------------------------------------------------------------------------------
def _load(model_dir: str, threads: int, device: str = "cpu") -> tuple[Any, float]:
    import torch

    torch.set_num_threads(threads)
    from mdlbench.scoring.models import load_model

    t = time.perf_counter()
    loaded = load_model(model_dir, device=device)
    return loaded, time.perf_counter() - t


def _row_seconds(fn: Any, shape: tuple[int, int], device: str = "cpu") -> float:
    """Median seconds per row of ``fn`` on fixed random logits of ``shape`` (rows, V) on ``device``."""
    import torch

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(shape, generator=g) * 4).to(device)
    times = []
    for _ in range(ROW_REPEATS):
        x = logits.clone()
        t = time.perf_counter()
        fn(x)  # ends on the CPU (a numpy copy), so an accelerator's work is included
        times.append((time.perf_counter() - t) / shape[0])
    times.sort()
    return times[len(times) // 2]


def child_old(args: argparse.Namespace, docs: list[str]) -> dict[str, Any]:
    """Today's path, imported from the files of d028630 (PYTHONPATH points there)."""
    from mdlbench.coding import compress_bytes, decompress_bytes
    from mdlbench.coding.coder import _probability_row

    loaded, load_s = _load(args.model_dir, args.threads)
    enc = dec = enc_cpu = dec_cpu = 0.0
    symbols = coded = 0
    ideal = []
    ok = True
    worst = -math.inf
    for text in docs:
        data = text.encode("utf-8")
        t, c = time.perf_counter(), time.process_time()
        packed = compress_bytes(loaded, data, window=args.window)
        enc += time.perf_counter() - t
        enc_cpu += time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        ok &= decompress_bytes(packed.blob, loaded).data == data
        dec += time.perf_counter() - t
        dec_cpu += time.process_time() - c
        symbols += packed.n_symbols
        coded += packed.coded_bits
        ideal.append(packed.ideal_bits)
        worst = max(worst, packed.coded_bits - packed.ideal_bits - (64 + 1e-3 * packed.ideal_bits))
    row = _row_seconds(lambda x: [_probability_row(r) for r in x], (4, loaded.vocab_size))
    return {"path": "old", "commit": OLD_COMMIT, "n_docs": len(docs), "n_bytes": sum(len(d.encode()) for d in docs),
            "n_symbols": symbols, "encode_seconds": enc, "decode_seconds": dec, "encode_cpu_seconds": enc_cpu,
            "decode_cpu_seconds": dec_cpu, "coded_bits": coded, "ideal_bits": math.fsum(ideal), "roundtrip_ok": ok,
            "worst_overhead_margin_bits": worst, "row_seconds": row, "load_seconds": load_s,
            "batch_size": 1, "threads": args.threads}


def child_new(args: argparse.Namespace, docs: list[str]) -> dict[str, Any]:

    from mdlbench.coding.archive import Source, batch_settings, compress_documents, decode_archive, open_archive
    from mdlbench.coding.identity import resolve_settings
    from mdlbench.coding.lockstep import probability_rows

    loaded, load_s = _load(args.model_dir, args.threads, args.device)
    settings = resolve_settings(loaded, window=args.window)
    batch = batch_settings(args.batch_size or None, loaded, settings.window)
    sources = [Source(f"doc{i}", t.encode("utf-8")) for i, t in enumerate(docs)]
    steps, last = [0], {}

    def count_step(p: Any) -> None:  # the archive coder reports after every lockstep step (and once per chunk)
        if p.symbols_done > last.get(p.chunk, 0):
            steps[0] += 1
        last[p.chunk] = p.symbols_done

    t, c = time.perf_counter(), time.process_time()
    packed = compress_documents(loaded, sources, settings=settings, batch=batch, progress=count_step)
    enc, enc_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    decoded = list(decode_archive(open_archive(packed.blob), loaded))
    dec, dec_cpu = time.perf_counter() - t, time.process_time() - c
    entries = packed.entries
    ok = [d.data for d in decoded] == [s.data for s in sources]
    worst = max(8 * e["payload_bytes"] - e["ideal_bits"] - (64 + 1e-3 * e["ideal_bits"]) for e in entries)

    def rows(x: Any) -> None:
        probability_rows(x).cpu().numpy()

    row = _row_seconds(rows, (batch.batch_size, loaded.vocab_size), args.device)
    n_bytes = sum(len(s.data) for s in sources)
    n_symbols = sum(int(e["n_symbols"]) for e in entries)  # = predictions: the benchmark's streams start with BOS
    return {"path": "new", "n_docs": len(docs), "n_bytes": n_bytes, "n_symbols": n_symbols,
            "encode_seconds": enc, "decode_seconds": dec,
            "encode_cpu_seconds": enc_cpu, "decode_cpu_seconds": dec_cpu,
            "coded_bits": 8 * sum(int(e["payload_bytes"]) for e in entries),
            "ideal_bits": math.fsum(float(e["ideal_bits"]) for e in entries), "roundtrip_ok": ok,
            "worst_overhead_margin_bits": worst, "row_seconds": row, "load_seconds": load_s,
            "archive_bytes": packed.total_bytes, "header_and_index_bytes": packed.header_bytes,
            "device": args.device,
            "megabytes_per_second": {"encode": n_bytes / enc / 1e6, "decode": n_bytes / dec / 1e6},
            "batch_size": batch.batch_size, "chunk_predictions": batch.chunk_predictions, "steps": steps[0],
            "rows_per_step": n_symbols / max(steps[0], 1), "threads": args.threads,
            "methods": sorted({e["method"] for e in entries})}


def child_main(args: argparse.Namespace) -> None:
    args.threads = int(args.threads)
    docs = json.loads(Path(args.docs).read_text("utf-8"))
    load_before = os.getloadavg()[0]
    result = (child_old if args.tool == "old" else child_new)(args, docs)
    result["load_avg_1m"] = [load_before, os.getloadavg()[0]]
    Path(args.result).write_text(json.dumps(result), "utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Parent: models, documents, subprocesses, baselines, the table
# ---------------------------------------------------------------------------------------------------------------
def old_checkout(cache: Path) -> Path:
    """The files of OLD_COMMIT, exported once with ``git archive`` (read-only use of the repository: no worktree is
    registered in it)."""
    path = cache / f"mdlbench-{OLD_COMMIT}"
    if not (path / "mdlbench" / "coding" / "coder.py").is_file():
        path.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", OLD_COMMIT], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True, capture_output=True)
    return path


def _sample() -> list[str]:
    from importlib.resources import files

    return [json.loads(line)["text"] for line in (files("mdlbench") / "data" / "sample.jsonl").read_text(
        "utf-8").splitlines() if line.strip()]


def _head(text: str, n_bytes: int) -> str:
    return text.encode("utf-8")[:n_bytes].decode("utf-8", errors="ignore")  # whole characters only


def pieces(n_pieces: int, n_bytes: int) -> list[str]:
    """The sample's documents cut into consecutive pieces of ``n_bytes`` (whole characters; a document's last piece
    only if it is at least half that long), the first ``n_pieces`` of them."""
    out = []
    for text in _sample():
        data = text.encode("utf-8")
        for start in range(0, len(data), n_bytes):
            piece = data[start: start + n_bytes]
            if len(piece) >= n_bytes // 2:
                out.append(piece.decode("utf-8", errors="ignore"))
            if len(out) == n_pieces:
                return out
    return out


def documents(max_bytes: int) -> list[str]:
    """Whole documents of the packaged sample, in order, within ``max_bytes`` (at least one, then cut)."""
    texts = _sample()
    out, total = [], 0
    for t in texts:
        n = len(t.encode("utf-8"))
        if total + n > max_bytes:
            if not out:  # the first document alone is too long: keep its first max_bytes
                out.append(_head(t, max_bytes))
            break
        out.append(t)
        total += n
    return out


def run_child(tool: str, model_dir: Path, docs: list[str], args: argparse.Namespace, work: Path,
              threads: int) -> dict[str, Any]:
    docs_file = work / f"{tool}-docs.json"
    docs_file.write_text(json.dumps(docs), "utf-8")
    result = work / f"{tool}-result.json"
    result.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(old_checkout(Path(args.cache_dir)) if tool == "old" else ROOT)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--tool", tool, "--model-dir", str(model_dir),
           "--docs", str(docs_file), "--result", str(result), "--threads", str(threads),
           "--window", str(WINDOW), "--batch-size", str(args.batch_size)] + (
               ["--device", args.device] if tool == "new" else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(result.read_text("utf-8"))


def classical(docs: list[str]) -> dict[str, Any]:
    from mdlbench.baselines.compressors import COMPRESSORS

    blobs = [d.encode("utf-8") for d in docs]
    whole = b"".join(blobs)
    sizes = {}
    for name, spec in COMPRESSORS.items():
        if spec.uses_dictionary:
            continue
        sizes[name] = {"concatenated": len(spec.compress_one(whole, None)),
                       "per_document": sum(len(spec.compress_one(b, None)) for b in blobs)}
    best_cat = min(sizes, key=lambda n: sizes[n]["concatenated"])
    best_doc = min(sizes, key=lambda n: sizes[n]["per_document"])
    return {"sizes": sizes, "best_concatenated": [best_cat, sizes[best_cat]["concatenated"]],
            "best_per_document": [best_doc, sizes[best_doc]["per_document"]]}


def model_cost_bytes(name: str, model_dir: Path) -> tuple[str, int]:
    """The model's part of a two-part code: fp32 parameters (tiny) or the GGUF file (SmolLM2)."""
    if name == "smollm2":
        from mdlbench.scoring.identity import default_model_location

        gguf = default_model_location()
        return "gguf-file", gguf.stat().st_size if gguf else 0
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return "naive fp32", 4 * sum(p.numel() for p in model.parameters())


def _rates(r: dict[str, Any]) -> dict[str, float]:
    n = r["n_symbols"]
    return {"encode": n / r["encode_seconds"], "decode": n / r["decode_seconds"],
            "encode_cpu": n / r["encode_cpu_seconds"], "decode_cpu": n / r["decode_cpu_seconds"]}


def bench_model(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import bench_throughput as bt  # noqa: E402 — the shared model builders

    cache = Path(args.cache_dir)
    model_dir = bt.build_tiny(cache / "tiny-gpt2-l2-d128") if name == "tiny" else bt.build_smollm2(
        cache / bt.SMOLLM2_DIRNAME)
    n_docs, doc_bytes, old_bytes = MODELS[name]
    n_docs = getattr(args, f"{name}_docs") or n_docs
    doc_bytes = getattr(args, f"{name}_doc_bytes") or doc_bytes
    old_bytes = getattr(args, f"{name}_old_bytes") or old_bytes
    old_docs, new_docs = documents(old_bytes), pieces(n_docs, doc_bytes)
    runs = []
    for threads in [int(t) for t in str(args.threads).split(",")]:
        for tool, docs, what in (("old", old_docs, f"{old_bytes:,} bytes"),
                                 ("new", new_docs, f"{len(new_docs)} pieces of {doc_bytes:,} bytes")):
            print(f"[{name}] {tool} path, {threads} thread(s), on {what} ...", file=sys.stderr, flush=True)
            r = run_child(tool, model_dir, docs, args, work, threads)
            r["tokens_per_second"] = _rates(r)
            runs.append(r)
    old = [r for r in runs if r["path"] == "old"]
    new = [r for r in runs if r["path"] == "new"]
    same = {str(o["threads"]): {k: n["tokens_per_second"][k] / o["tokens_per_second"][k] for k in ("encode", "decode")}
            for o, n in zip(old, new, strict=True)}
    best = {k: max(n["tokens_per_second"][k] for n in new) / max(o["tokens_per_second"][k] for o in old)
            for k in ("encode", "decode")}
    code_name, model_bytes = model_cost_bytes(name, model_dir)
    return {"model": name, "window": WINDOW, "runs": runs, "speedup_same_threads": same, "speedup_best": best,
            "classical": classical(new_docs), "model_code": code_name, "model_bytes": model_bytes}


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| model | path | batch | threads | documents | encode tokens/s | decode tokens/s | vs today, same "
             "threads (enc / dec) | row µs | payload − ideal | archive (header + index) | best classical, same bytes "
             "| model (two-part) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # payload − ideal: ✓ = every document within
    # 64 bits + 0.1% of its own ideal code length
    for r in results:
        best_name, best = r["classical"]["best_concatenated"]
        for x in r["runs"]:
            rate, new = x["tokens_per_second"], x["path"] == "new"
            over = x["coded_bits"] - x["ideal_bits"]
            rel = over / x["ideal_bits"] if x["ideal_bits"] else math.nan
            s = r["speedup_same_threads"][str(x["threads"])]
            speed = f"{s['encode']:.1f}× / {s['decode']:.1f}×" if new else "1×"
            archive = f"{x['archive_bytes']:,} B ({x['header_and_index_bytes']:,})" if new else "—"
            classical = f"{best_name} {best:,} B" if new else "—"
            model = f"{r['model_code']} {r['model_bytes'] / 1e6:.1f} MB" if new else "—"
            device = x.get("device", "cpu")
            path = ("lockstep" + (f" ({device})" if device != "cpu" else "")) if new else f"today ({OLD_COMMIT})"
            ok = " ✓" if x["worst_overhead_margin_bits"] <= 0 else " ✗"
            lines.append(f"| {r['model']} | {path} | {x['batch_size']} | {x['threads']} | {x['n_docs']} | "
                         f"{rate['encode']:,.0f} | {rate['decode']:,.0f} | {speed} | {x['row_seconds'] * 1e6:.0f} | "
                         f"{over:+,.0f} bits ({rel:+.3%}){ok} | {archive} | {classical} | {model} |")
    best = "; ".join(f"{r['model']} {r['speedup_best']['encode']:.1f}× / {r['speedup_best']['decode']:.1f}×"
                     for r in results)
    mb = "; ".join(f"{r['model']} {x['n_bytes'] / x['encode_seconds'] / 1e6:.3f} / "
                   f"{x['n_bytes'] / x['decode_seconds'] / 1e6:.3f}" for r in results for x in r["runs"]
                   if x["path"] == "new")
    return "\n".join(lines) + (f"\n\nBest lockstep rate over the best rate of today's path (encode / decode): {best}."
                                f"\nLockstep MB/s of document bytes (encode / decode): {mb}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--threads", default="1",
                        help="torch CPU threads, comma-separated: each path runs at each count (e.g. 1,2)")
    parser.add_argument("--batch-size", type=int, default=0, help="lockstep batch (default: the auto size)")
    parser.add_argument("--device", default="cpu", help="the lockstep path's device, e.g. cuda (today's path runs "
                        "on the CPU: its ratio is a CPU comparison only with --device cpu)")
    for name, (n_docs, doc_b, old_b) in MODELS.items():
        parser.add_argument(f"--{name}-docs", type=int, default=None, help=f"new path: pieces ({n_docs})")
        parser.add_argument(f"--{name}-doc-bytes", type=int, default=None,
                            help=f"new path: bytes per piece ({doc_b:,})")
        parser.add_argument(f"--{name}-old-bytes", type=int, default=None, help=f"old path: corpus prefix ({old_b:,})")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per path process")
    parser.add_argument("--out", default=str(RESULTS_DIR / "coding-cpu.json"))
    parser.add_argument("--tool", choices=("old", "new"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--docs", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, default=WINDOW, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tool:
        child_main(args)
        return 0
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench-coding-") as tmp:
        results = [bench_model(m.strip(), args, Path(tmp)) for m in args.models.split(",") if m.strip()]
    table = markdown(results)
    import torch
    import transformers

    out = {"benchmark": "coding", "started": started, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "transformers": transformers.__version__,
                       "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None},
           "results": results, "markdown": table}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", "utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
