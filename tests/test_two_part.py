"""Two-part codes: parameter accounting, weight codes, quantization, DeepMind's adjusted rate, break-even."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from mdlbench import tables
from mdlbench.mdl import params, two_part, weights_code
from mdlbench.mdl.two_part import (
    Baseline,
    TwoPartCode,
    adjusted_compression_rate,
    best_of,
    bits_saved_per_param,
    break_even_bytes,
    naive_model_bits,
    two_part_rows,
    vs_baseline_rows,
)


def tiny_gpt2(n_embd: int = 16, vocab_size: int = 50, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=n_embd, n_head=2, vocab_size=vocab_size, n_positions=32,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(num_hidden_layers=2, hidden_size=16, intermediate_size=40, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=50, max_position_embeddings=32,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


# ------------------------------------------------------------------------------------------ parameter counts


def test_tied_gpt2_hand_count():
    model = tiny_gpt2()
    c = model.config
    d, V, P, L = c.n_embd, c.vocab_size, c.n_positions, c.n_layer
    assert model.lm_head.weight is model.transformer.wte.weight  # tied: the output matrix must not be paid twice
    embedding = V * d + P * d  # wte + wpe
    attention = L * ((d * 3 * d + 3 * d) + (d * d + d))  # c_attn (qkv, with bias) + c_proj
    ffn = L * ((d * 4 * d + 4 * d) + (4 * d * d + d))  # mlp.c_fc + mlp.c_proj (n_inner=None means 4d)
    norm = L * 2 * (2 * d) + 2 * d  # ln_1, ln_2 per layer (gain + bias), ln_f
    count = params.count_parameters(model)
    assert (count.params_embedding, count.params_attention, count.params_ffn, count.params_norm) == (
        embedding, attention, ffn, norm)
    assert count.params_lm_head == 0 and count.params_other == 0
    assert count.params_total == embedding + attention + ffn + norm == 7904
    assert (count.n_layers, count.d_model, count.d_ff, count.n_heads, count.vocab_size, count.context_length) == (
        2, 16, 64, 2, 50, 32)
    assert count.ffn_ratio == 4.0
    assert count.ffn_param_share == pytest.approx(ffn / count.params_total)


def test_untied_llama_hand_count():
    model = tiny_llama()
    c = model.config
    d, V, L, f = c.hidden_size, c.vocab_size, c.num_hidden_layers, c.intermediate_size
    head_dim = d // c.num_attention_heads
    kv = c.num_key_value_heads * head_dim
    attention = L * (d * d + 2 * kv * d + d * d)  # q, k, v (grouped: 1 kv head), o; no biases
    ffn = L * 3 * d * f  # gate, up, down
    norm = L * 2 * d + d  # input + post-attention RMSNorm gains, final norm
    count = params.count_parameters(model)
    assert (count.params_embedding, count.params_lm_head) == (V * d, V * d)  # untied: both paid
    assert (count.params_attention, count.params_ffn, count.params_norm, count.params_other) == (
        attention, ffn, norm, 0)
    # Rotary inv_freq buffers are not parameters: the total is the hand count.
    assert dict(model.named_buffers())
    assert count.params_total == 2 * V * d + attention + ffn + norm == 7056
    assert (count.n_layers, count.d_model, count.d_ff, count.ffn_ratio) == (2, 16, 40, 2.5)
    columns = count.as_columns()
    assert columns["params_total"] == 7056 and "ffn_param_share" in columns


@pytest.mark.parametrize("build", [
    lambda: GPTNeoXForCausalLM(GPTNeoXConfig(num_hidden_layers=2, hidden_size=16, intermediate_size=40,
                                             num_attention_heads=2, vocab_size=50, max_position_embeddings=32)),
    lambda: Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=2, hidden_size=16, intermediate_size=40,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=50,
                                         max_position_embeddings=32, tie_word_embeddings=True)),
], ids=["gpt-neox", "qwen2-tied"])
def test_other_families_have_no_unclassified_params(build):
    model = build()
    count = params.count_parameters(model)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert count.params_total == sum(unique.values())
    assert count.params_other == 0
    assert count.params_norm > 0 and count.params_attention > 0 and count.params_ffn > 0


def test_component_rules():
    assert params.component_of("transformer.h.0.mlp.c_proj.weight") == "ffn"
    assert params.component_of("transformer.h.0.attn.c_proj.weight") == "attention"
    assert params.component_of("model.layers.3.post_attention_layernorm.weight") == "norm"
    assert params.component_of("gpt_neox.layers.0.attention.dense.bias") == "attention"
    assert params.component_of("embed_out.weight") == "lm_head"
    assert params.component_of("score.weight") == "other"


# ------------------------------------------------------------------------------------------ checkpoint code


def test_zero_model_checkpoint_far_below_naive():
    model = tiny_gpt2(n_embd=64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    n = params.count_parameters(model).params_total
    code = weights_code.checkpoint_code(model)
    assert code.model_bits < 0.01 * naive_model_bits(n, 32)


def test_random_model_checkpoint_near_naive_and_exact():
    model = tiny_gpt2(n_embd=64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))  # full-entropy float32 mantissas: nothing to narrow or squeeze
    n = params.count_parameters(model).params_total
    raw = weights_code.serialize_weights(model)
    header_bytes = 8 + int.from_bytes(raw[:8], "little")  # safetensors: u64 length + JSON header
    assert len(raw) == header_bytes + 4 * n
    code = weights_code.checkpoint_code(model)
    naive = naive_model_bits(n, 32)
    assert 0.8 * naive < code.model_bits <= naive + 8 * (header_bytes + 64)
    # The serialized bytes decode to exactly the scored weights.
    decoded = safetensors.torch.load(raw)
    for name, param, _ in params.unique_named_parameters(model):
        assert torch.equal(decoded[name], param.detach())


def test_checkpoint_narrows_only_when_exact():
    model = tiny_gpt2(n_embd=32)
    with torch.no_grad():
        model.transformer.wte.weight.copy_(model.transformer.wte.weight.to(torch.bfloat16).float())
    state = weights_code.unique_state_dict(model)
    assert state["transformer.wte.weight"].dtype == torch.bfloat16  # exact in bf16: stored in 16 bits
    assert state["transformer.h.0.attn.c_attn.weight"].dtype == torch.float32  # random float32: kept
    assert "lm_head.weight" not in state  # tied: stored once
    decoded = safetensors.torch.load(weights_code.serialize_weights(model))
    assert torch.equal(decoded["transformer.wte.weight"].float(), model.transformer.wte.weight.detach())


# ------------------------------------------------------------------------------------------- quantization


def test_pack_bits_hand_case_and_round_trip():
    assert weights_code.pack_bits(np.array([1, 2, 3]), 2) == b"\x6c"  # 01 10 11 00
    rng = np.random.default_rng(0)
    for bits in (8, 6, 4, 3, 2, 1):
        values = rng.integers(0, 1 << bits, size=1001).astype(np.uint8)
        packed = weights_code.pack_bits(values, bits)
        assert len(packed) == math.ceil(1001 * bits / 8)
        assert np.array_equal(weights_code.unpack_bits(packed, bits, 1001), values)


def test_rtn_hand_case_and_error_bound():
    rtn = weights_code.quantize_rtn(torch.tensor([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]]), 2)
    assert rtn.q.tolist() == [[0, 1, 2, 3], [0, 0, 0, 0]]
    assert torch.equal(rtn.dequantized, torch.tensor([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]]))
    torch.manual_seed(0)
    w = torch.randn(8, 30)
    for group in (None, 8):  # 8 does not divide 30: the last group is shorter
        rtn = weights_code.quantize_rtn(w, 4, group)
        assert rtn.scale.shape == (8, 1 if group is None else 4)
        step = torch.from_numpy(rtn.scale.astype(np.float32)).repeat_interleave(30 if group is None else 8, 1)[:, :30]
        assert bool(((rtn.dequantized - w).abs() <= step / 2 + 1e-3).all())


def _train_tiny_gpt2(sequences: torch.Tensor) -> GPT2LMHeadModel:
    """A tiny GPT-2 that has memorized ``sequences``: confident predictions that coarse rounding destroys."""
    model = tiny_gpt2(n_embd=32, vocab_size=32)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        model(sequences, labels=sequences).loss.backward()
        opt.step()
    return model.eval()


def reference_data_bits(model: torch.nn.Module, sequences: torch.Tensor) -> float:
    """Float64 full-context reference: Σ -log2 softmax(logits)[next token] over positions 1..n-1."""
    model64 = model.to(torch.float64) if next(model.parameters()).dtype != torch.float64 else model
    with torch.no_grad():
        logits = model64(sequences).logits.to(torch.float64)  # (B, T, V)
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, sequences[:, 1:, None])  # (B, T-1, 1) nats
    return float(-logp.sum() / math.log(2))


@pytest.fixture(scope="module")
def trained():
    g = torch.Generator().manual_seed(1)
    sequences = torch.randint(0, 32, (4, 24), generator=g)
    return _train_tiny_gpt2(sequences), sequences


def test_quantized_8_close_to_full_precision_and_2_worse(trained):
    model, sequences = trained
    import copy

    full_bits = reference_data_bits(copy.deepcopy(model), sequences)
    n_scored = sequences.numel() - sequences.shape[0]
    assert full_bits < 0.5 * n_scored * math.log2(32)  # it did learn the sequences
    q8 = weights_code.quantize_model(model, 8)
    q2 = weights_code.quantize_model(model, 2)
    assert q8.model.lm_head.weight is q8.model.transformer.wte.weight  # ties survive the copy
    assert model.transformer.wte.weight is not q8.model.transformer.wte.weight  # the input is not modified
    q8_bits = reference_data_bits(q8.model, sequences)
    q2_bits = reference_data_bits(q2.model, sequences)
    assert abs(q8_bits - full_bits) < 0.02 * n_scored  # within 0.02 bit/token of full precision
    assert q2_bits > full_bits + 0.05 * n_scored  # 2 bits per weight loses what the model memorized
    assert q2.code.model_bits < q8.code.model_bits


def test_two_part_rows_end_to_end(trained):
    model, sequences = trained
    import copy

    n_bytes = 1000
    data_bits = reference_data_bits(copy.deepcopy(model), sequences)
    calls = []

    def rescore(m):
        calls.append(m)
        return reference_data_bits(m, sequences)

    rows = two_part_rows(model, None, data_bits=data_bits, n_bytes=n_bytes,
                         codes=("naive", "checkpoint-zstd", "gguf-file", "quantized"), rescore=rescore)
    by_code = {r["param_code"]: r for r in rows}
    n = params.count_parameters(model).params_total
    assert list(by_code) == ["naive-16", "naive-32", "checkpoint-zstd", "quantized-8", "quantized-6",
                             "quantized-4", "quantized-3", "quantized-2", "quantized-best"]  # no GGUF path: no row
    assert len(calls) == 5
    assert by_code["naive-16"]["model_bits"] == 16 * n and by_code["naive-32"]["n_params"] == n
    for r in rows:
        assert ["model", "corpus", *r] == tables.TABLES["two_part"][1].names  # the run names are added on commit
    # Lossless codes carry the run's data bits; each quantized-k carries its model's re-scored bits, in order.
    assert [by_code[c]["data_bits"] for c in ("naive-16", "naive-32", "checkpoint-zstd")] == [data_bits] * 3
    assert [by_code[f"quantized-{k}"]["data_bits"] for k in (8, 6, 4, 3, 2)] == [
        reference_data_bits(m, sequences) for m in calls]
    quantized = [by_code[f"quantized-{k}"] for k in (8, 6, 4, 3, 2)]
    best = min(quantized, key=lambda r: r["total_bits"])
    assert by_code["quantized-best"]["model_bits"] == pytest.approx(best["model_bits"] + math.log2(5))
    assert by_code["quantized-best"]["data_bits"] == best["data_bits"]
    # The rows fit the registered schema.
    names = {"model": "tiny", "corpus": "c"}
    assert tables.to_arrow("two_part", [{**names, **r} for r in rows]).num_rows == len(rows)
    vs = vs_baseline_rows(rows, [Baseline("gzip-9", "concatenated", 2.5), Baseline("uniform-bytes", "raw", 8.0)])
    assert tables.to_arrow("two_part_vs_baseline", [{**names, **r} for r in vs]).num_rows == 2 * len(rows)


def test_quantized_needs_rescore_and_unknown_codes_fail():
    model = tiny_gpt2()
    with pytest.raises(ValueError, match="need `rescore`"):
        two_part_rows(model, None, data_bits=1.0, n_bytes=10, codes=("quantized",))
    with pytest.raises(ValueError, match="unknown parameter code 'fp8'"):
        two_part_rows(model, None, data_bits=1.0, n_bytes=10, codes=("fp8",))
    with pytest.raises(ValueError, match="bad width in parameter code 'quantized-16'"):
        two_part_rows(model, None, data_bits=1.0, n_bytes=10, codes=("quantized-16",), rescore=lambda m: 1.0)


def test_storage_width_adds_a_naive_row():
    model = tiny_gpt2()
    rows = two_part_rows(model, None, data_bits=1.0, n_bytes=10, codes=("naive",), storage_dtype_bits=4)
    assert [r["param_code"] for r in rows] == ["naive-4", "naive-16", "naive-32"]


def test_tokenizer_code(tmp_path: Path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    assert weights_code.tokenizer_code(None).model_bits == 0.0
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"a": 0, "b": 1, "[UNK]": 2},
                                                                       unk_token="[UNK]")))
    code = weights_code.tokenizer_code(tok)
    assert code.model_bits > 0 and "tokenizer.json" in code.detail
    f = tmp_path / "tokenizer.json"
    f.write_bytes(b"{}")
    container = b"tokenizer.json\x002\x00{}"
    assert weights_code.tokenizer_code(None, files=[f]).model_bits == 8 * weights_code.zstd_size_bytes(container)


# ----------------------------------------------------------------------------------- pure arithmetic


def test_deepmind_adjusted_rate_table_1():
    # Delétang et al. Table 1, enwik9 (1 GB), 2 bytes per parameter.
    chinchilla = adjusted_compression_rate(0.083 * 8e9, naive_model_bits(70_000_000_000, 16), 1_000_000_000)
    llama2 = adjusted_compression_rate(0.089 * 8e9, naive_model_bits(7_000_000_000, 16), 1_000_000_000)
    assert 100 * chinchilla == pytest.approx(14008.3, abs=1e-6)
    assert 100 * llama2 == pytest.approx(1408.9, abs=1e-6)


def test_break_even_hand_numbers():
    model_bits = naive_model_bits(70_000_000_000, 16)  # 1.12e12 bits
    bpb = 0.083 * 8  # 0.664 bits/byte
    assert break_even_bytes(model_bits, bpb, 8.0) / 1e9 == pytest.approx(153, abs=0.5)  # vs raw bytes
    assert break_even_bytes(model_bits, bpb, 2.584) / 1e9 == pytest.approx(583, abs=0.5)  # vs gzip 32.3%
    assert break_even_bytes(model_bits, 3.0, 2.584) is None  # worse than gzip per byte: never pays off
    assert break_even_bytes(model_bits, 2.584, 2.584) is None
    assert bits_saved_per_param(8e9, 0.664e9, 70_000_000_000) == pytest.approx(0.1048, abs=1e-4)


def test_rows_and_vs_baseline_hand_numbers():
    code = TwoPartCode("naive-16", 1.12e12, 0.0, 0.664e9)
    row = two_part.two_part_row(code, n_bytes=1_000_000_000, n_params=70_000_000_000)
    assert row["data_bits_per_byte"] == pytest.approx(0.664)
    assert row["break_even_bytes_vs_uniform"] == pytest.approx(1.12e12 / 7.336)
    assert row["adjusted_compression_rate"] == pytest.approx(140.083)
    (vs,) = vs_baseline_rows([row], [Baseline("gzip-9", "concatenated", 2.584)])
    assert vs["break_even_bytes"] == pytest.approx(1.12e12 / 1.92)
    assert vs["bits_saved_per_param"] == pytest.approx(1.92e9 / 70e9)


def test_best_of_charges_the_choice():
    codes = [TwoPartCode(f"quantized-{k}", m, 10.0, d) for k, m, d in [(8, 800, 100), (4, 400, 150), (2, 200, 900)]]
    best = best_of(codes)
    assert (best.param_code, best.data_bits) == ("quantized-best", 150)
    assert best.model_bits == pytest.approx(400 + math.log2(3))


def test_missing_codes_and_merging_a_new_code_into_stored_rows():
    stored = [two_part.two_part_row(TwoPartCode(c, m, 5.0, d), n_bytes=100, n_params=10)
              for c, m, d in [("naive-16", 160.0, 300.0), ("naive-32", 320.0, 300.0), ("quantized-8", 90.0, 310.0)]]
    present = [r["param_code"] for r in stored]
    assert two_part.missing_codes(["naive"], present, has_gguf=False) == []
    assert two_part.missing_codes(["naive", "gguf-file"], present, has_gguf=False) == []  # not a GGUF model
    assert two_part.missing_codes(["gguf-file", "quantized"], present, has_gguf=True) == ["gguf-file", "quantized"]
    assert two_part.missing_codes(["quantized-8", "quantized-4"], present, has_gguf=False) == ["quantized-4"]
    new = [two_part.two_part_row(TwoPartCode("quantized-4", 50.0, 5.0, 340.0), n_bytes=100, n_params=10)]
    merged = two_part.merge_rows(stored, new)
    assert [r["param_code"] for r in merged] == ["naive-16", "naive-32", "quantized-8", "quantized-4",
                                                 "quantized-best"]
    # Best of the two quantized codes by total (90 + 5 + 310 = 405 vs 50 + 5 + 340 = 395), charged log2(2) = 1 bit.
    best = merged[-1]
    assert (best["model_bits"], best["data_bits"]) == (51.0, 340.0)
    # Merging again with nothing new keeps the rows and re-chooses the same best (never two best rows).
    assert two_part.merge_rows(merged, []) == merged
    assert two_part.requested_codes(None, 10) == ["naive", "checkpoint-zstd", "gguf-file"]
    assert two_part.requested_codes(None, 10**9) == ["naive", "gguf-file"]
    assert two_part.requested_codes(("none",), 10) == []
    assert two_part.requested_codes(("checkpoint", "gguf"), 10) == ["checkpoint-zstd", "gguf-file"]
