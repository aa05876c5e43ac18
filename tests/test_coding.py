"""Real compression (mdlbench.coding): round trips, coded vs ideal bits, identity and corruption checks.

All with the tiny 2-layer GPT-2 (GPT-2's real 50,257-token tokenizer, context 64). torch runs on one thread
here: the machine's cores are shared, and a busy thread pool makes one-token forwards 30× slower.
"""

from __future__ import annotations

import argparse
import math
import struct

import pytest
from conftest import build_tiny_gpt2, repack

from mdlbench.coding.coder import coding_table, compress_bytes, decompress_bytes, verify_coding
from mdlbench.coding.container import FIXED_HEADER_BYTES, CorruptFileError, unpack
from mdlbench.coding.identity import DecodeMismatchError, ModelMismatchError
from mdlbench.corpora import Document
from mdlbench.errors import InputError

WINDOW = 16  # small, so that the long document below spans several windows

DOCS = {
    "empty": b"",
    "one-byte": b"x",
    "ascii": b"Hello world. This is a small test document.",
    "chinese-emoji": "床前明月光，疑是地上霜。 emoji 😀🎉 and <|endoftext|>".encode(),
    "longer-than-window": ("def f(x):\n    return x * 2  # a comment\n" * 4).encode(),
    "invalid-utf8": b"ok \xff\xfe\x80 then text \xc3",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def packed(tiny_loaded):
    """Every test document compressed once with window 16."""
    return {name: compress_bytes(tiny_loaded, data, window=WINDOW) for name, data in DOCS.items()}


@pytest.mark.parametrize("name", list(DOCS))
def test_round_trip_and_coded_close_to_ideal(tiny_loaded, packed, name):
    data, c = DOCS[name], packed[name]
    assert decompress_bytes(c.blob, tiny_loaded).data == data
    assert len(c.blob) == c.header_bytes + c.payload_bytes
    if name == "invalid-utf8":
        assert c.method == "raw-bytes" and "not valid UTF-8 (byte offset 3" in c.fallback_reason
        assert c.coded_bits == c.ideal_bits == 8 * len(data)
        assert decompress_bytes(c.blob).data == data  # raw bytes need no model
        return
    assert c.method == "model" and c.fallback_reason == ""
    assert abs(c.coded_bits - c.ideal_bits) <= 64 + 1e-3 * c.ideal_bits
    assert c.coded_bits % 32 == 0  # whole 32-bit words of the range coder
    if name == "longer-than-window":
        assert c.entry["n_tokens"] + 1 > 3 * WINDOW  # several windows, so several restarts


def test_stream_layout_counts(packed):
    """bos/eos: n tokens + EOS are coded, BOS is not; the empty document codes only EOS."""
    assert packed["empty"].n_symbols == 1 and packed["empty"].coded_bits == 32
    assert packed["one-byte"].n_symbols == 2  # "x" is one GPT-2 token, plus EOS
    ascii_ = packed["ascii"]
    assert ascii_.n_symbols == ascii_.entry["n_tokens"] + 1
    assert ascii_.meta["coding"]["prefix_token_id"] == ascii_.meta["coding"]["eos_token_id"] == 50256


@pytest.mark.parametrize(("first_token", "end"), [("uniform", "eos"), ("uniform", "none"), ("bos", "none")])
def test_other_policies_round_trip(tiny_loaded, first_token, end):
    data = DOCS["longer-than-window"][:80]
    c = compress_bytes(tiny_loaded, data, window=WINDOW, stride=5, first_token=first_token, end=end)
    assert decompress_bytes(c.blob, tiny_loaded).data == data
    n = c.entry["n_tokens"]
    assert c.n_symbols == n + (end == "eos")  # under both policies: every text token, plus EOS
    assert abs(c.coded_bits - c.ideal_bits) <= 64 + 1e-3 * c.ideal_bits
    # empty documents under these policies: nothing or one symbol is coded
    e = compress_bytes(tiny_loaded, b"", window=WINDOW, first_token=first_token, end=end)
    assert decompress_bytes(e.blob, tiny_loaded).data == b""
    assert e.n_symbols == (end == "eos")


def test_uniform_bytes_is_exactly_8_bits_per_byte_plus_header():
    for data in (b"", b"a", DOCS["chinese-emoji"], DOCS["invalid-utf8"]):
        c = compress_bytes("uniform-bytes", data)
        header_len = struct.unpack_from("<I", c.blob, 10)[0]
        assert c.header_bytes == FIXED_HEADER_BYTES + header_len + unpack(c.blob).header["index_bytes"]
        assert len(c.blob) == c.header_bytes + len(data)  # payload = 8 bits per byte, exactly
        assert c.coded_bits == c.ideal_bits == 8 * len(data)
        assert decompress_bytes(c.blob).data == data


def test_wrong_model_is_refused(tmp_path, packed):
    from mdlbench.scoring.models import load_model

    other = load_model(str(build_tiny_gpt2(tmp_path / "seed1", seed=1)), device="cpu")
    with pytest.raises(ModelMismatchError, match="weights sha256"):
        decompress_bytes(packed["ascii"].blob, other)
    with pytest.raises(ModelMismatchError, match="needs that model"):
        decompress_bytes(packed["ascii"].blob)
    with pytest.raises(ModelMismatchError, match="needs that model"):
        decompress_bytes(packed["ascii"].blob, "uniform-bytes")
    # Forge the header so that the identity check passes: the decoded bytes are then caught by the checksum.
    header = {k: v for k, v in unpack(packed["ascii"].blob).header.items() if not k.startswith(("index_", "payload"))}
    forged = repack(packed["ascii"].blob, header={**header, "model": {**header["model"], "sha256": other.sha256}})
    with pytest.raises(DecodeMismatchError, match="does not (end with EOS|match the original)"):
        decompress_bytes(forged, other)


def test_wrong_tokenizer_or_settings_are_refused(tiny_loaded, packed):
    blob = packed["ascii"].blob
    header = {k: v for k, v in unpack(blob).header.items() if not k.startswith(("index_", "payload"))}
    forged = {**header, "model": {**header["model"], "tokenizer_sha256": "0" * 64}}
    with pytest.raises(ModelMismatchError, match="tokenizer sha256"):
        decompress_bytes(repack(blob, header=forged), tiny_loaded)
    forged = {**header, "coding": {**header["coding"], "prefix_token_id": 0}}
    with pytest.raises(ModelMismatchError, match="BOS/EOS ids"):
        decompress_bytes(repack(blob, header=forged), tiny_loaded)
    forged = {**header, "coding": {**header["coding"], "rows": "float64-numpy"}}
    with pytest.raises(CorruptFileError, match="rows computed as 'float64-numpy'"):
        decompress_bytes(repack(blob, header=forged), tiny_loaded)
    forged = {**header, "coding": {**header["coding"], "rows": "lockstep-v1"}}  # written before softmax rows
    with pytest.raises(CorruptFileError, match="rows computed as 'lockstep-v1'.*version that wrote the file"):
        decompress_bytes(repack(blob, header=forged), tiny_loaded)
    forged = {**header, "coder": "constriction.stream.queue.RangeEncoder+Categorical(perfect=False)"}  # one level
    with pytest.raises(CorruptFileError, match="coded with .*Categorical.perfect=False.'; this mdlbench codes"):
        decompress_bytes(repack(blob, header=forged), tiny_loaded)


def test_another_numerical_environment_is_named_in_one_warning(tiny_loaded, packed):
    """Decoding where threads or the CPU's instruction set differ from the recorded ones may fail (rows need not be
    bit-identical): every difference is named, once, before decoding; here the rows still match, so it decodes."""
    blob = packed["ascii"].blob
    header = {k: v for k, v in unpack(blob).header.items() if not k.startswith(("index_", "payload"))}
    import torch

    assert header["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    forged = {**header, "environment": {**header["environment"], "torch_threads": 99, "cpu_capability": "AVX2"}}
    out = decompress_bytes(repack(blob, header=forged), tiny_loaded)
    assert out.data == DOCS["ascii"]
    [warning] = out.warnings
    assert "cpu_capability: compressed with 'AVX2'" in warning and "torch_threads: compressed with 99" in warning


def test_corrupted_files_are_refused(tiny_loaded, packed):
    blob = packed["longer-than-window"].blob
    c = unpack(blob)
    header_end = FIXED_HEADER_BYTES + struct.unpack_from("<I", blob, 10)[0]

    def flip(i: int) -> bytes:
        return blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1:]

    cases = [(flip(0), CorruptFileError, "bad magic"), (flip(9), CorruptFileError, "format version"),
             (flip(30), CorruptFileError, "corrupted header"), (flip(header_end + 3), CorruptFileError,
                                                               "corrupted index"),
             (flip(len(blob) - 1), CorruptFileError, "corrupted payload"),
             (blob[:-4], CorruptFileError, "truncated or extended"), (blob[:10], CorruptFileError, "bad magic"),
             (b"", CorruptFileError, "bad magic"), (blob[:c.header_bytes - 5], CorruptFileError, "truncated"),
             (blob + b"\0", CorruptFileError, "truncated or extended")]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            decompress_bytes(bad, tiny_loaded)
    # Version 1 (one float64 row per token, written before lockstep coding) is named, not misread.
    with pytest.raises(CorruptFileError, match="format version 1 is not supported"):
        decompress_bytes(blob[:8] + struct.pack("<H", 1) + blob[10:], tiny_loaded)
    # An index that passes its checksums but lacks a field decoding needs (forged or from another writer).
    entries = [{k: v for k, v in e.items() if k not in ("offset", "payload_bytes", "payload_crc32",
                                                          "original_bytes")} for e in c.entries]
    with pytest.raises(CorruptFileError, match="lacks original_bytes"):
        decompress_bytes(repack(blob, entries=entries), tiny_loaded)
    # A plan that does not follow from the token counts.
    with pytest.raises(CorruptFileError, match="batch plan does not follow"):
        decompress_bytes(repack(blob, plan={"chunks": []}), tiny_loaded)
    assert issubclass(CorruptFileError, InputError)  # exit code 2 at the CLI


def test_verify_coding_matches_the_batched_scorer(tiny_loaded):
    """ideal_bits (KV-cache incremental pass, float32 softmax rows normalized by their float64 sum) vs HFScorer
    (one batched forward per window, float64 log-softmax) on the same stream and windows: within 1e-6 relative
    (measured 1e-11 to 4e-10; the two forwards differ in float32 rounding only). The tiny model's context is 64; the
    first two documents fit in one window of 64, the third spans several windows of 16 and agrees as well: the
    coder uses the same window plan."""
    from mdlbench.config import ScoringSettings
    from mdlbench.scoring.hf import HFScorer
    from mdlbench.tables import TABLES

    docs = [Document("a", DOCS["ascii"].decode()), Document("b", DOCS["chinese-emoji"].decode()),
            Document("c", DOCS["longer-than-window"].decode())]
    for window, chosen in ((64, docs[:2]), (WINDOW, docs[2:])):
        rows = verify_coding(tiny_loaded, chosen, window=window)
        scorer = HFScorer(tiny_loaded, ScoringSettings(window, window // 2))
        scored = {d.doc.doc_id: d for d in scorer.score(enumerate(chosen))}
        for row in rows:
            ref = scored[row["doc_id"]]
            assert row["n_tokens"] == ref.n_tokens
            assert math.isclose(row["ideal_bits"], ref.code_length_bits, rel_tol=1e-6)
            assert row["roundtrip_ok"] and row["method"] == "model"
            assert abs(row["overhead_bits"]) <= 64 + 1e-3 * row["ideal_bits"]
    table = coding_table([{"model": "tiny", "corpus": "c", **r} for r in rows])  # the run's names come first
    assert table.schema.names == TABLES["coding"][1].names and table.num_rows == len(rows)


def test_verify_coding_uniform_bytes_and_fallback(tiny_loaded):
    docs = [Document("u", "héllo")]
    [row] = verify_coding("uniform-bytes", docs, window=WINDOW, doc_indices=[7])
    assert (row["doc_index"], row["coded_bits"], row["overhead_bits"], row["roundtrip_ok"]) == (7, 48, 0.0, True)


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.main(parser.parse_args(argv))


def test_cli_compress_decompress(tmp_path, tiny_model_dir, capsys):
    from mdlbench.cli import compress as cli_compress
    from mdlbench.cli import decompress as cli_decompress
    from mdlbench.scoring.identity import identify_model

    src = tmp_path / "doc.bin"
    src.write_bytes(DOCS["chinese-emoji"])
    assert _run(cli_compress, [str(src), "--model", str(tiny_model_dir), "--window", "32", "--threads", "1"]) == 0
    out = capsys.readouterr()
    assert "method model" in out.out and "tokens/s" in out.err
    packed = tmp_path / "doc.bin.mdlz"
    c = unpack(packed.read_bytes())  # the header pins the model and the settings it was coded with
    assert c.header["kind"] == "file" and c.entries[0]["method"] == "model"
    assert c.header["model"]["sha256"] == identify_model(str(tiny_model_dir)).weights_sha256
    assert (c.header["coding"]["window"], c.header["coding"]["stride"]) == (32, 16)
    with pytest.raises(InputError, match="exists"):
        _run(cli_compress, [str(src), "--model", "uniform-bytes"])
    restored = tmp_path / "restored.bin"
    assert _run(cli_decompress, [str(packed), "-o", str(restored)]) == 0
    assert restored.read_bytes() == DOCS["chinese-emoji"]
    assert "sha256 verified" in capsys.readouterr().out
    # invalid UTF-8: the fallback is announced
    bad = tmp_path / "bad.bin"
    bad.write_bytes(DOCS["invalid-utf8"])
    assert _run(cli_compress, [str(bad), "--model", str(tiny_model_dir), "-o", str(tmp_path / "bad.mdlz")]) == 0
    assert "not valid UTF-8" in capsys.readouterr().err
    assert _run(cli_decompress, [str(tmp_path / "bad.mdlz"), "-o", str(tmp_path / "bad.out")]) == 0
    assert (tmp_path / "bad.out").read_bytes() == DOCS["invalid-utf8"]
