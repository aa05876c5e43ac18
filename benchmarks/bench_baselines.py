"""Time each compressor through mdlbench against the same library called directly on the same bytes.

    python benchmarks/bench_baselines.py [--target-mb 3] [--names gzip-9,xz-9e] [--out FILE.json]

Corpus: the packaged sample (71 documents, 0.29 MB) repeated to about ``--target-mb``. Both sides do the same
work: every document compressed alone with the one-shot API, and the corpus (documents joined with the separator)
as one stream through the streaming API; zstd-19-dict also splits the folds and trains its two dictionaries.
mdlbench's side is ``compress_pass`` (iterates documents, feeds both encoders, writes the outputs to temporary
files); the direct side holds the joined corpus in memory and makes one streaming call. Each side runs in the same
process, alternately, ``--repeats`` times (once for compressors over 10 s); the minimum time is kept.
The overhead ratio is mdlbench / direct − 1 in CPU seconds of this process (``time.process_time``): on a shared
machine wall time mostly measures the other processes (under a load of 6 on 2 cores it was twice the CPU time);
wall seconds are reported too. Verification (decoding everything) is timed apart: it is extra work
the direct side does not do.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import lzma
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import brotli
import pyppmd
import zstandard

from mdlbench.baselines.compressors import COMPRESSORS, PPMD_MEMORY_BYTES
from mdlbench.baselines.run import (
    SEPARATOR,
    collect_training_samples,
    compress_pass,
    fold_of,
    measure_compressor,
    train_fold_dictionaries,
)

RESULTS = Path(__file__).resolve().parent / "results" / "baselines.json"


def sample_documents() -> list[bytes]:
    lines = files("mdlbench").joinpath("data/sample.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line)["text"].encode("utf-8") for line in lines if line.strip()]


def _zstd(level: int, dictionary: bytes | None = None, long: bool = False) -> zstandard.ZstdCompressor:
    d = zstandard.ZstdCompressionDict(dictionary) if dictionary is not None else None
    if long:
        params = zstandard.ZstdCompressionParameters.from_level(level, enable_ldm=True, window_log=27)
        return zstandard.ZstdCompressor(compression_params=params, dict_data=d)
    return zstandard.ZstdCompressor(level=level, dict_data=d)


def _stream(obj, compress: str, flush: str, data: bytes, *flush_args) -> int:
    return len(getattr(obj, compress)(data)) + len(getattr(obj, flush)(*flush_args))


# name -> (one document -> compressed size, joined corpus -> compressed size), the libraries called directly.
def _direct(name: str) -> tuple[Callable[[bytes], int], Callable[[bytes], int]]:
    import bz2
    import zlib
    xz = 9 | lzma.PRESET_EXTREME
    if name.startswith("gzip-"):
        level = int(name.split("-")[1])
        return (lambda d: len(gzip.compress(d, level, mtime=0)),
                lambda d: _stream(zlib.compressobj(level, zlib.DEFLATED, 31), "compress", "flush", d))
    if name == "bz2-9":
        return lambda d: len(bz2.compress(d, 9)), lambda d: _stream(bz2.BZ2Compressor(9), "compress", "flush", d)
    if name == "xz-9e":
        return (lambda d: len(lzma.compress(d, preset=xz)),
                lambda d: _stream(lzma.LZMACompressor(preset=xz), "compress", "flush", d))
    if name.startswith("zstd-") and not name.endswith("-dict"):
        level, long = int(name.split("-")[1]), name.endswith("-long")
        one = _zstd(level, long=long)
        return (lambda d: len(one.compress(d)),
                lambda d: _stream(_zstd(level, long=long).compressobj(), "compress", "flush", d))
    if name == "brotli-11":
        return (lambda d: len(brotli.compress(d, quality=11, lgwin=24)),
                lambda d: _stream(brotli.Compressor(quality=11, lgwin=24), "process", "finish", d))
    if name.startswith("ppmd-o"):
        order = int(name.split("o")[1])

        def ppmd(d: bytes) -> int:
            return _stream(pyppmd.Ppmd7Encoder(order, PPMD_MEMORY_BYTES), "encode", "flush", d, True)

        return ppmd, ppmd
    raise KeyError(name)


def direct_run(name: str, docs: list[bytes], joined: bytes) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, concatenated bytes, per-document bytes) with the library alone."""
    if name == "zstd-19-dict":
        t0, c0 = time.perf_counter(), time.process_time()
        dictionaries = [d.data for d in train_fold_dictionaries(collect_training_samples(docs))]
        folds = [fold_of(d) for d in docs]
        ones = [_zstd(19, dictionaries[f]) for f in (0, 1)]
        per_doc = sum(len(ones[f].compress(d)) for d, f in zip(docs, folds, strict=True))
        streams = [SEPARATOR.join(d for d, f in zip(docs, folds, strict=True) if f == fold) for fold in (0, 1)]
        concat = sum(_stream(_zstd(19, dictionaries[f]).compressobj(), "compress", "flush", streams[f])
                     for f in (0, 1))
        model = sum(map(len, dictionaries))
        return time.perf_counter() - t0, time.process_time() - c0, concat + model, per_doc + model
    one, stream = _direct(name)
    t0, c0 = time.perf_counter(), time.process_time()
    per_doc = sum(one(d) for d in docs)
    concat = stream(joined)
    return time.perf_counter() - t0, time.process_time() - c0, concat, per_doc


def mdlbench_run(name: str, docs: list[bytes]) -> tuple[float, float, float, int, int]:
    """(wall seconds, CPU seconds, seconds inside the library as mdlbench reports them, concatenated bytes,
    per-document bytes)."""
    spec = COMPRESSORS[name]
    t0, c0 = time.perf_counter(), time.process_time()
    dictionaries: list[bytes | None] = [None]
    if spec.uses_dictionary:
        dictionaries = [d.data for d in train_fold_dictionaries(collect_training_samples(iter(docs)))]
    cp = compress_pass(spec, iter(docs), dictionaries)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    cp.close()
    model = sum(len(d) for d in dictionaries if d is not None)
    return (wall, cpu, cp.concatenated_seconds + cp.per_document_seconds, sum(cp.stream_bytes) + model,
            sum(cp.doc_frame_bytes) + model)


def machine() -> dict[str, object]:
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-mb", type=float, default=3.0)
    parser.add_argument("--names", default=",".join(COMPRESSORS))
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (one for compressors over 10 s)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sample = sample_documents()
    reps = max(1, round(args.target_mb * 1e6 / sum(map(len, sample))))
    docs = sample * reps
    joined = SEPARATOR.join(docs)
    n_bytes = sum(map(len, docs))
    print(f"corpus: sample × {reps} = {len(docs)} documents, {n_bytes / 1e6:.2f} MB", file=sys.stderr)

    results = []
    for name in args.names.split(","):
        spec = COMPRESSORS[name]
        direct_s, ours_s, direct_cpu, ours_cpu, lib_s = [], [], [], [], []
        repeats = args.repeats
        i = 0
        while i < repeats:
            d_s, d_cpu, d_concat, d_doc = direct_run(name, docs, joined)
            m_s, m_cpu, m_lib, m_concat, m_doc = mdlbench_run(name, docs)
            direct_s.append(d_s)
            ours_s.append(m_s)
            direct_cpu.append(d_cpu)
            ours_cpu.append(m_cpu)
            lib_s.append(m_lib)
            if i == 0 and d_s > 10.0:
                repeats = 1  # very slow compressors: one run each is precise enough
            i += 1
        t0 = time.perf_counter()
        rows = {r.mode: r for r in measure_compressor(spec, lambda: iter(docs), corpus="bench", corpus_sha256="-")}
        end_to_end = time.perf_counter() - t0
        results.append({
            "compressor": name, "library": spec.library, "library_version": spec.library_version,
            "setting": spec.setting, "runs": repeats,
            "direct_cpu_seconds": min(direct_cpu), "mdlbench_cpu_seconds": min(ours_cpu),
            "overhead_ratio": min(ours_cpu) / min(direct_cpu) - 1.0,
            "direct_wall_seconds": min(direct_s), "mdlbench_wall_seconds": min(ours_s),
            "wall_overhead_ratio": min(ours_s) / min(direct_s) - 1.0,
            "mdlbench_library_seconds": min(lib_s),
            "sizes_equal": (d_concat, d_doc) == (m_concat, m_doc),
            "concatenated_bytes": m_concat, "per_document_bytes": m_doc,
            "concatenated_bits_per_byte": rows["concatenated"].bits_per_byte,
            "per_document_bits_per_byte": rows["per_document"].bits_per_byte,
            "end_to_end_seconds": end_to_end, "roundtrip_verified": all(r.roundtrip_verified for r in rows.values()),
            "decompress_seconds": rows["concatenated"].decompress_seconds + rows["per_document"].decompress_seconds,
        })
        r = results[-1]
        print(f"{name}: direct {r['direct_cpu_seconds']:.3f} CPU s, mdlbench {r['mdlbench_cpu_seconds']:.3f} CPU s "
              f"({100 * r['overhead_ratio']:+.1f}%)", file=sys.stderr)

    report = {"machine": {**machine(), "load_average_1m_at_end": os.getloadavg()[0]},
              "corpus": {"source": "mdlbench/data/sample.jsonl", "repeats": reps, "n_docs": len(docs),
                         "n_bytes": n_bytes},
              "note": "seconds = min over runs of compressing every document alone and the corpus as one stream; "
                      "overhead_ratio from CPU seconds (process_time), wall_overhead_ratio from wall seconds",
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{len(docs)} documents, {n_bytes / 1e6:.2f} MB; {report['machine']['cpu']} ({os.cpu_count()} cores, "
          f"load {report['machine']['load_average_1m_at_end']:.1f})\n")
    print("| compressor | library | direct CPU s | mdlbench CPU s | overhead (CPU) | overhead (wall) | same sizes "
          "| concat bpb | per-doc bpb | measure+verify s | verified |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['compressor']} | {r['library']} {r['library_version']} | {r['direct_cpu_seconds']:.3f} "
              f"| {r['mdlbench_cpu_seconds']:.3f} | {100 * r['overhead_ratio']:+.1f}% "
              f"| {100 * r['wall_overhead_ratio']:+.1f}% | {r['sizes_equal']} "
              f"| {r['concatenated_bits_per_byte']:.3f} | {r['per_document_bits_per_byte']:.3f} "
              f"| {r['end_to_end_seconds']:.2f} | {r['roundtrip_verified']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
