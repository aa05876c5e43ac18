"""benchmarks/bench_throughput.py: its naive loop agrees with mdlbench, and its FLOP count is the hand number.

lm-evaluation-harness is not needed here: the benchmark imports it only inside its lm-eval subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_throughput.py"
PREFIX = "<|endoftext|>"  # GPT-2's BOS = EOS, the token lm-eval puts before a rolling document


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_throughput", module)
    spec.loader.exec_module(module)
    return module


def test_naive_loop_agrees_with_mdlbench(bench, tiny_model_dir, jsonl_corpus, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mdlbench import tables
    from mdlbench.config import RunOptions
    from mdlbench.run.execute import run_benchmark

    window = 16  # documents of up to ~100 tokens: several windows each, the last one left-filled
    options = RunOptions(protocol="lm-eval", window=window, batch_size=3, boundary_token=PREFIX, device="cpu",
                         progress="none", bootstrap_samples=10, baselines=("none",), two_part=("none",))
    outcomes = run_benchmark([str(tiny_model_dir)], [str(jsonl_corpus)], options, tmp_path / "out", log=lambda m: None)
    assert [o.status for o in outcomes] == ["done"]
    docs = tables.read_table(tmp_path / "out", "documents").sort_values("doc_index")
    summary = tables.read_table(tmp_path / "out", "summary").iloc[0]

    texts = [json.loads(line)["text"] for line in jsonl_corpus.read_text("utf-8").splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prefix = bench.lmeval_prefix_token(tokenizer)
    assert tokenizer.convert_ids_to_tokens(prefix) == PREFIX
    bits, n_tokens = bench.naive_bits(model, tokenizer, texts, window, prefix)

    assert n_tokens == int(summary["n_tokens"])
    assert max(len(w) for w in (bench.lmeval_windows(n, window) for n in docs["n_tokens"])) > 2
    for ours, naive in zip(docs["code_length_bits"], bits, strict=True):
        assert ours == pytest.approx(naive, rel=1e-6, abs=1e-9)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert float(summary["bits_per_byte"]) == pytest.approx(math.fsum(bits) / n_bytes, rel=1e-6)


def test_lmeval_windows_are_disjoint_with_one_carried_token(bench):
    # stream = [prefix] + 10 tokens: input positions 0..9 predict stream[1..10]. lm-eval's
    # make_disjoint_window(get_rolling_token_windows(range(1, 11), prefix_token=0, max_seq_len=4, context_len=1))
    # gives ([0], [1..4]), ([4], [5..8]), ([6, 7, 8], [9, 10]): the last window is left-filled.
    assert bench.lmeval_windows(10, 4) == [(0, 0, 4), (4, 4, 8), (6, 8, 10)]
    assert bench.lmeval_windows(4, 4) == [(0, 0, 4)]
    assert bench.lmeval_windows(0, 4) == []


def test_forward_flops_hand_numbers(bench):
    from transformers import GPT2Config, LlamaConfig

    # GPT-2, d=32, 2 layers, 2 heads (head_dim 16), ff = 4d = 128, V = 50257, T = 4 tokens:
    #   per layer  QKV 2·4·32·96 = 24,576   out 2·4·32·32 = 8,192   MLP 2·2·4·32·128 = 65,536
    #              attention 2·2·(2·16)·(1+2+3+4) = 1,280                          -> 99,584; two layers 199,168
    #   head       2·4·32·50257 = 12,865,792                                       -> 13,064,960
    gpt2 = GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    assert bench.forward_flops(gpt2, 4) == 13_064_960

    # Llama (gated MLP, grouped-query attention): d=64, 3 layers, 4 heads of 16, 2 KV heads, ff=96, V=1000, T=2:
    #   per layer  Q 2·2·64·64 = 16,384   KV 2·2·64·(2·2·16) = 16,384   out 16,384   MLP 3·2·2·64·96 = 73,728
    #              attention 2·2·64·(1+2) = 768                              -> 123,648; three layers 370,944
    #   head       2·2·64·1000 = 256,000                                     -> 626,944
    llama = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    assert bench.forward_flops(llama, 2) == 626_944

    # Without attention, one token costs 2 × (non-embedding matmul parameters) + 2·d·V (SmolLM2-135M's shape).
    smol = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    per_layer_params = 576 * (576 + 2 * 192) + 576 * 576 + 3 * 576 * 1536
    attention_one_token = 30 * 2 * 2 * 576 * 1
    assert bench.forward_flops(smol, 1) == 2 * 30 * per_layer_params + 2 * 576 * 49152 + attention_one_token
    # The workload sums windows: 2 documents of 10 and 3 tokens under W = 4 -> windows of 4, 4, 4 (left-filled)
    # and 3 input tokens.
    assert bench.workload_flops(gpt2, [10, 3], 4) == sum(bench.forward_flops(gpt2, t) for t in (4, 4, 4, 3))


def test_repeats_rotate_tool_order_and_report_the_median_run(bench):
    calls = []
    speeds = {"a": iter([30.0, 10.0, 20.0]), "b": iter([5.0, 7.0, 6.0]), "c": iter([1.0, 1.0, 1.0])}

    def run(tool):
        calls.append(tool)
        return {"tool": tool, "tokens_per_second": next(speeds[tool]), "score_seconds": 1.0}

    got = bench.run_tools_repeated(["a", "b", "c"], 3, run)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # no tool always first
    assert got["a"]["tokens_per_second"] == 20.0 and got["a"]["runs_tokens_per_second"] == [30.0, 10.0, 20.0]
    assert got["b"]["tokens_per_second"] == 6.0
    two = bench.median_run([{"tokens_per_second": 3.0, "score_seconds": 1.0},
                            {"tokens_per_second": 1.0, "score_seconds": 2.0}])
    assert two["tokens_per_second"] == 1.0  # even count: the lower middle, never flattering
    failed = bench.median_run([{"tokens_per_second": 3.0, "score_seconds": 1.0}, {"error": "exit 1"}])
    assert failed == {"error": "exit 1"}
