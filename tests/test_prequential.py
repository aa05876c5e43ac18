"""Prequential MDL: exact accounting (schedule, first block, coverage), causality, sanity bounds, estimator parity.

Tiny GPT-2s on synthetic integer streams (|V| = 64) or the default 257-symbol byte tokenizer; CPU only.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdlbench.errors import InputError
from mdlbench.prequential.driver import checkpoint_param_cost, run_prequential_for_corpus
from mdlbench.prequential.estimators import (
    PrequentialConfig,
    TokenStream,
    code_tokens_bits,
    estimate,
    model_factory,
    resolve_arch,
    run_blockwise,
    run_online,
)
from mdlbench.prequential.results import aggregate_seeds, prequential_run_id, program_bits
from mdlbench.prequential.schedule import (
    DEFAULT_BLOCK_FRACTIONS,
    batch_boundaries,
    block_boundaries,
    proportional_byte_attribution,
    sequence_spans,
    uniform_code_length_bits,
)
from mdlbench.prequential.vocab import byte_tokenizer, load_tokenizer, separator_id, tokenizer_files

V = 64
CONTEXT = 32
TINY_ARCH = {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64,
             "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_factory(vocab_size: int = V, context_tokens: int = CONTEXT):
    return model_factory(resolve_arch(TINY_ARCH, vocab_size=vocab_size, context_tokens=context_tokens, start_id=0))


def random_stream(n_tokens: int, seed: int = 0) -> TokenStream:
    return TokenStream.from_ids(np.random.default_rng(seed).integers(0, V, n_tokens), V)


def repeated_stream(n_repeats: int = 50) -> TokenStream:
    """A random 64-token string repeated: almost all of it is predictable from the first copy."""
    return TokenStream.from_ids(np.tile(np.random.default_rng(0).integers(0, V, 64), n_repeats), V)


def config(**overrides) -> PrequentialConfig:
    base = {"context_tokens": CONTEXT, "batch_sequences": 4, "min_block_tokens": 16, "learning_rate": 1e-2,
            "min_steps": 2, "epochs": 1}
    return PrequentialConfig(**{**base, **overrides})


# ------------------------------------------------------------------------------------------------ schedule


def test_default_schedule_is_voita_titov():
    assert block_boundaries(1000) == [0, 1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]
    assert block_boundaries(1000, min_block_tokens=10) == [0, 16, 32, 62, 125, 250, 500, 1000]
    assert block_boundaries(0) == [0]
    assert block_boundaries(3) == [0, 1, 2, 3]  # 25 % and 50 % of 3 round to 1 and 2; the rest to 0
    assert block_boundaries(3, min_block_tokens=64) == [0, 3]  # too short to split: one (uniform) block


fractions_st = st.lists(st.floats(min_value=1e-4, max_value=0.999, allow_nan=False), max_size=12).map(
    lambda fs: tuple(sorted(set(fs))) + (1.0,))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 200_000), fractions=fractions_st, min_block=st.integers(1, 5000))
def test_block_boundaries_partition_the_tokens(n, fractions, min_block):
    bounds = block_boundaries(n, fractions, min_block)
    assert bounds[0] == 0 and bounds[-1] == n
    assert all(a < b for a, b in pairwise(bounds))  # no empty block, no overlap
    assert sum(b - a for a, b in pairwise(bounds)) == n
    sizes = [b - a for a, b in pairwise(bounds)]
    if len(sizes) > 1:
        assert min(sizes) >= min_block  # merged; a lone block may be shorter (the whole corpus)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 500), length=st.integers(0, 500), context=st.integers(1, 70))
def test_sequence_spans_score_every_token_once_and_never_read_ahead(start, length, context):
    end = start + length
    scored = []
    for seq_start, first, stop in sequence_spans(start, end, context):
        assert seq_start % context == 0 and seq_start <= first < stop <= end
        assert stop - seq_start <= context  # the model reads start symbol + at most C-1 tokens
        scored += range(first, stop)
    assert scored == list(range(start, end))


@given(n_tokens=st.integers(1, 300), n_bytes=st.integers(0, 5000))
def test_proportional_byte_attribution_is_exact(n_tokens, n_bytes):
    parts = proportional_byte_attribution(n_tokens, n_bytes)
    assert len(parts) == n_tokens and sum(parts) == n_bytes and max(parts) - min(parts) <= 1


def test_bad_fractions_and_unknown_config_keys_fail_loudly():
    with pytest.raises(ValueError, match="last must be 1.0"):
        block_boundaries(100, (0.5, 0.9))
    with pytest.raises(InputError, match="strictly increase"):
        PrequentialConfig(block_fractions=(0.5, 0.2, 1.0))
    with pytest.raises(InputError, match="unknown key.*'lr'"):
        PrequentialConfig.from_dict({"lr": 0.1})
    with pytest.raises(InputError, match="online always continues"):
        PrequentialConfig(estimator="online", mode="restart")
    with pytest.raises(InputError, match="model_type"):
        resolve_arch({"n_layer": 1}, vocab_size=V, context_tokens=CONTEXT, start_id=0)
    with pytest.raises(InputError, match="positions"):
        resolve_arch({**TINY_ARCH, "n_positions": 8}, vocab_size=V, context_tokens=CONTEXT, start_id=0)


# ------------------------------------------------------------------------------------------------ accounting


def test_first_block_is_uniform_and_counted_once():
    stream = random_stream(600)
    result = run_blockwise(stream, config(), 0, tiny_factory())
    first = result.blocks[0]
    assert first.coder == "uniform" and first.train_tokens == 0
    assert first.code_length_bits == first.token_end * math.log2(V)  # exactly t1 * log2|V|
    assert all(b.coder == "model" for b in result.blocks[1:])
    assert [b.token_start for b in result.blocks] == block_boundaries(600, DEFAULT_BLOCK_FRACTIONS, 16)[:-1]
    assert result.blocks[-1].token_end == 600
    assert result.uniform_bits == 600 * math.log2(V)


def _zero_output_factory(vocab_size: int = V):
    build = tiny_factory(vocab_size)

    def zeroed(seed: int) -> torch.nn.Module:
        model = build(seed)
        with torch.no_grad():
            model.get_output_embeddings().weight.zero_()  # tied: logits are exactly 0
        return model

    return zeroed


@pytest.mark.parametrize("estimator,first", [("blockwise", "model"), ("blockwise", "uniform"), ("online", "model")])
def test_learning_rate_zero_with_zero_output_layer_is_exactly_uniform(estimator, first):
    n = 500
    stream = random_stream(n)
    cfg = config(estimator=estimator, learning_rate=0.0, first_block_coder=first)
    result = estimate(stream, cfg, 0, _zero_output_factory())
    assert math.isclose(result.prequential_bits, n * math.log2(V), rel_tol=1e-13)
    assert math.isclose(result.final_model_data_bits, n * math.log2(V), rel_tol=1e-13)
    per_token = code_tokens_bits(_zero_output_factory()(0), stream, 0, n, context_tokens=CONTEXT, batch_sequences=3)
    assert len(per_token) == n and np.all(np.abs(per_token - math.log2(V)) < 1e-12)  # first tokens included


def test_coding_does_not_depend_on_batching():
    stream = random_stream(300)
    model = tiny_factory()(3)
    one = code_tokens_bits(model, stream, 17, 250, context_tokens=CONTEXT, batch_sequences=1)
    many = code_tokens_bits(model, stream, 17, 250, context_tokens=CONTEXT, batch_sequences=5)
    np.testing.assert_allclose(one, many, rtol=1e-5)
    # A range coded piecewise equals the range coded at once (context reaches back into earlier blocks).
    pieces = np.concatenate([code_tokens_bits(model, stream, a, b, context_tokens=CONTEXT, batch_sequences=5)
                             for a, b in [(17, 40), (40, 41), (41, 250)]])
    np.testing.assert_allclose(pieces, many, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ causality


@pytest.mark.parametrize("estimator,mode", [("blockwise", "restart"), ("blockwise", "continue"), ("online", None)])
def test_changing_later_blocks_leaves_earlier_blocks_bitwise_unchanged(estimator, mode):
    n = 1200
    cfg = config(estimator=estimator, mode=mode)
    a = random_stream(n, seed=1)
    result_a = estimate(a, cfg, 0, tiny_factory())
    cut = result_a.blocks[-2].token_start  # change the last two blocks
    changed = a.token_ids.copy()
    changed[cut:] = np.random.default_rng(99).integers(0, V, n - cut)
    result_b = estimate(TokenStream.from_ids(changed, V), cfg, 0, tiny_factory())
    kept = [b for b in result_a.blocks if b.token_end <= cut]
    assert len(kept) >= 3
    for x, y in zip(kept, result_b.blocks[:len(kept)], strict=True):
        assert x.code_length_bits == y.code_length_bits  # bitwise
    assert result_a.blocks[-1].code_length_bits != result_b.blocks[-1].code_length_bits


# ------------------------------------------------------------------------------------------------ sanity bounds


@pytest.mark.parametrize("estimator,mode,overrides", [
    ("blockwise", "restart", {"context_tokens": 64, "epochs": 2, "min_steps": 10, "min_block_tokens": 32}),
    ("blockwise", "continue", {"context_tokens": 64, "epochs": 1, "min_steps": 10, "min_block_tokens": 32}),
    ("online", None, {"context_tokens": 64, "batch_sequences": 1}),
])
def test_redundant_stream_codes_below_half_the_uniform_cost(estimator, mode, overrides):
    stream = repeated_stream(50)
    cfg = config(estimator=estimator, mode=mode, **overrides)
    result = estimate(stream, cfg, 0, tiny_factory(context_tokens=64))
    assert result.prequential_bits < 0.5 * result.uniform_bits
    assert result.final_model_data_bits < result.prequential_bits
    assert result.model_information_bits == result.prequential_bits - result.final_model_data_bits


# ------------------------------------------------------------------------------------------------ estimator parity


@pytest.mark.parametrize("first", ["uniform", "model"])
def test_online_equals_blockwise_formula_with_one_batch_per_block(first):
    stream = random_stream(1000, seed=2)
    online = run_online(stream, config(estimator="online", batch_sequences=3, first_block_coder=first), 0,
                        tiny_factory())
    bounds = batch_boundaries(1000, 3 * CONTEXT)
    blockwise = run_blockwise(stream, config(mode="continue", train_on="block", batch_sequences=3, epochs=1,
                                             min_steps=1, first_block_coder=first), 0, tiny_factory(),
                              boundaries=bounds)
    assert [(b.token_start, b.token_end) for b in online.blocks] == list(pairwise(bounds))
    assert [b.code_length_bits for b in online.blocks] == [b.code_length_bits for b in blockwise.blocks]
    assert [b.train_tokens for b in online.blocks] == [b.train_tokens for b in blockwise.blocks]
    assert online.prequential_bits == blockwise.prequential_bits
    assert online.final_model_data_bits == blockwise.final_model_data_bits
    assert online.blocks[0].coder == first


# ------------------------------------------------------------------------------------------------ corpus runs


TEXTS = ["The cat sat on the mat. " * 6, "Ünïcödé: é € 😀 漢字", "", "a literal <|endoftext|> stays text",
         "abcabcabcabcabcabcabc " * 5, "x"]


@pytest.fixture()
def tiny_corpus(tmp_path: Path):
    from mdlbench.corpora import open_corpus

    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    return open_corpus(str(path))


def test_corpus_run_bytes_seeds_and_tables(tiny_corpus, tmp_path: Path):
    tokenizer = byte_tokenizer()
    arch = {**TINY_ARCH, "n_embd": 16}
    cfg = {"context_tokens": 32, "batch_sequences": 4, "min_block_tokens": 16, "min_steps": 1}
    out = tmp_path / "out"
    run = run_prequential_for_corpus(tiny_corpus, config=cfg, arch=arch, seeds=(0, 1), tokenizer=tokenizer,
                                     out_dir=out, log=None)
    total_bytes = sum(len(t.encode("utf-8")) for t in TEXTS)
    n_tokens = total_bytes + len(TEXTS)  # one token per byte, plus one separator per document
    assert [r["seed"] for r in run.summary_rows] == [0, 1]
    from mdlbench.tables import read_table

    written_blocks = read_table(out, "prequential_blocks")
    for row in run.summary_rows:
        assert row["n_bytes"] == total_bytes and row["n_tokens"] == n_tokens and row["vocab_size"] == 257
        assert row["bits_per_byte"] == row["prequential_bits"] / total_bytes
        assert row["uniform_bits"] == n_tokens * math.log2(257)
        assert row["conditional_on"] == "" and row["program_bits"] > 0
        # Recomputable from the tables: the blocks of a seed tile its tokens and bytes, and their bits sum to it.
        blocks = written_blocks[written_blocks["seed"] == row["seed"]].sort_values("block_index")
        assert blocks["n_bytes"].sum() == total_bytes
        assert (blocks["token_start"].iloc[1:].to_numpy() == blocks["token_end"].iloc[:-1].to_numpy()).all()
        assert blocks["token_start"].iloc[0] == 0 and blocks["token_end"].iloc[-1] == n_tokens
        assert math.fsum(blocks["code_length_bits"]) == pytest.approx(row["prequential_bits"], rel=1e-15)
    # Different seeds: different document orders and inits, recorded separately.
    assert run.summary_rows[0]["prequential_bits"] != run.summary_rows[1]["prequential_bits"]
    written = read_table(out, "prequential")
    assert set(written["run_id"]) == {run.run_id} and sorted(written["seed"]) == [0, 1]
    assert len(read_table(out, "prequential_blocks")) == len(run.block_rows)
    # Same seed, same bits: a fresh run (forced) reproduces every number bitwise, under the same run id.
    again = run_prequential_for_corpus(tiny_corpus, config=cfg, arch=arch, seeds=(0, 1), tokenizer=tokenizer,
                                       out_dir=out, force=True, log=None)
    assert again.run_id == run.run_id
    assert [r["prequential_bits"] for r in again.summary_rows] == [r["prequential_bits"] for r in run.summary_rows]
    assert [r["final_model_data_bits"] for r in again.summary_rows] == [
        r["final_model_data_bits"] for r in run.summary_rows]
    (agg,) = run.aggregate
    assert agg["n_seeds"] == 2 and agg["seeds"] == [0, 1]


def test_cli_writes_tables_and_prints_summary(tiny_corpus, tmp_path: Path, capsys):
    from mdlbench.cli import main

    tok_dir = tmp_path / "tok"
    byte_tokenizer().save_pretrained(tok_dir)
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(json.dumps({**TINY_ARCH, "n_embd": 16}))
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({"context_tokens": 32, "min_steps": 1}))
    out = tmp_path / "out"
    code = main(["prequential", "--corpus", tiny_corpus.source, "--arch", str(arch_path), "--tokenizer",
                 str(tok_dir), "--config", str(cfg_path), "--estimator", "online", "--seeds", "0", "--out", str(out),
                 "--max-docs", "4"])
    captured = capsys.readouterr()
    assert code == 0
    assert "prequential run" in captured.out and "online/continue over 1 seed(s)" in captured.out
    assert "sd needs 2+ seeds" in captured.out
    assert "[prequential online seed 0] block 1/" in captured.err
    from mdlbench.tables import read_table

    (row,) = read_table(out, "prequential").to_dict("records")
    assert (row["estimator"], row["seed"], row["n_documents"]) == ("online", 0, 4)
    assert row["n_bytes"] == sum(len(t.encode("utf-8")) for t in TEXTS[:4])
    bad = main(["prequential", "--corpus", tiny_corpus.source, "--tokenizer", str(tok_dir), "--seeds", "0,x"])
    assert bad == 2


# ------------------------------------------------------------------------------------------------ helpers


def test_run_id_program_bits_and_seed_aggregate():
    rid = prequential_run_id("{}", "ab" * 32, (0, 1, 2))
    assert rid == prequential_run_id("{}", "ab" * 32, (0, 1, 2)) and len(rid) == 16  # as every run id
    assert rid != prequential_run_id("{}", "ab" * 32, (0, 1))
    assert rid != prequential_run_id('{"a":1}', "ab" * 32, (0, 1, 2))
    bits = program_bits("{}", {"tokenizer.json": b"x" * 1000})
    assert bits % 8 == 0 and 0 < bits < 8 * 1000
    rows = [{"corpus": "c", "estimator": "online", "mode": "continue", "conditional_on": "", "seed": s,
             "prequential_bits": p, "bits_per_byte": p / 10, "final_model_data_bits": 1.0,
             "model_information_bits": p - 1.0} for s, p in [(0, 10.0), (1, 14.0)]]
    (agg,) = aggregate_seeds(rows)
    assert agg["prequential_bits_mean"] == 12.0 and math.isclose(agg["prequential_bits_sd"], math.sqrt(8.0))
    assert agg["final_model_data_bits_sd"] == 0.0
    assert math.isnan(aggregate_seeds(rows[:1])[0]["prequential_bits_sd"])
    assert uniform_code_length_bits(3, 8) == 9.0


def test_pretrained_checkpoint_is_labelled_conditional(tiny_corpus, tmp_path: Path):
    tokenizer = byte_tokenizer()
    model = model_factory(resolve_arch({**TINY_ARCH, "n_embd": 16}, vocab_size=257, context_tokens=32,
                                       start_id=256))(7)
    model.save_pretrained(tmp_path / "ckpt")
    cfg = {"context_tokens": 32, "min_steps": 1, "first_block_coder": "model"}
    run = run_prequential_for_corpus(tiny_corpus, config=cfg, init_checkpoint=str(tmp_path / "ckpt"), seeds=(0,),
                                     tokenizer=tokenizer, log=None)
    (row,) = run.summary_rows
    assert row["conditional_on"].startswith("checkpoint:") and "sha256:" in row["conditional_on"]
    # Its parameter cost is shown beside the conditional code: the exact weights, zstd-compressed (small model).
    from mdlbench.mdl.weights_code import checkpoint_code

    n_params = sum(p.numel() for p in model.parameters())  # GPT-2 ties lm_head to wte: each parameter once
    assert row["checkpoint_param_code"] == "checkpoint-zstd" and row["checkpoint_n_params"] == n_params
    assert row["checkpoint_param_bits"] == checkpoint_code(model).model_bits
    assert run.block_rows[0]["coder"] == "model"  # block 1 coded by the checkpoint itself
    with pytest.raises(InputError, match="exclusive"):
        run_prequential_for_corpus(tiny_corpus, arch=TINY_ARCH, init_checkpoint=str(tmp_path / "ckpt"),
                                   tokenizer=tokenizer, log=None)


def test_byte_tokenizer_is_the_default_alphabet(tiny_corpus, tmp_path: Path):
    tok = load_tokenizer(None)
    assert len(tok) == 257 and separator_id(tok) == 256
    for text in TEXTS:  # one token per UTF-8 byte, every byte value, and an exact round trip
        ids = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert len(ids) == len(text.encode("utf-8")) and all(i < 256 for i in ids)
        assert tok.decode(ids, clean_up_tokenization_spaces=False) == text
    # Fixed in advance: the same files (so the same sha256 in every run config), and a few KB to send.
    assert tokenizer_files(tok) == tokenizer_files(byte_tokenizer())
    assert program_bits("{}", tokenizer_files(tok)) < 8 * 8192
    # A run without a tokenizer uses it: |V| = 257 and the sample-sized token count is bytes + separators.
    arch = {**TINY_ARCH, "n_embd": 16}
    cfg = {"context_tokens": 32, "min_steps": 1, "estimator": "online"}
    run = run_prequential_for_corpus(tiny_corpus, config=cfg, arch=arch, seeds=(0,), log=None)
    (row,) = run.summary_rows
    assert row["vocab_size"] == 257
    assert row["n_tokens"] == sum(len(t.encode("utf-8")) for t in TEXTS) + len(TEXTS)
    with pytest.raises(InputError, match="not bytes or smollm2 and not a folder"):
        load_tokenizer(str(tmp_path / "missing"))


def test_checkpoint_param_cost_naive_width_above_the_zstd_limit(monkeypatch):
    import mdlbench.prequential.driver as driver

    model = model_factory(resolve_arch({**TINY_ARCH, "n_embd": 16}, vocab_size=257, context_tokens=32,
                                       start_id=256))(3)
    n = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(driver, "CHECKPOINT_DEFAULT_MAX_PARAMS", 0)
    # At init the 1-D parameters (layer norms at 1, biases at 0) are exact in 16 bits; the random matrices need 32.
    expected = sum(p.numel() * (16 if p.dim() == 1 else 32) for p in model.parameters())
    assert checkpoint_param_cost(model) == ("naive-mixed", float(expected), n)
    model.to(torch.bfloat16).to(torch.float32)  # now every weight is exactly a bf16 value
    assert checkpoint_param_cost(model) == ("naive-16", 16.0 * n, n)


def test_unconditional_rows_have_no_checkpoint_cost(tiny_corpus):
    cfg = {"context_tokens": 32, "min_steps": 1, "estimator": "online"}
    run = run_prequential_for_corpus(tiny_corpus, config=cfg, arch={**TINY_ARCH, "n_embd": 16}, seeds=(0,),
                                     log=None)
    (row,) = run.summary_rows
    assert row["conditional_on"] == "" and row["checkpoint_param_bits"] is None
