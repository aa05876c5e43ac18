"""Real compression (mdlbench.coding): round trips, coded vs ideal bits, identity and corruption checks.

All with the tiny 2-layer GPT-2 (GPT-2's real 50,257-token tokenizer, context 64). torch runs on one thread
here: the machine's cores are shared, and a busy thread pool makes one-token forwards 30× slower.
"""

from __future__ import annotations

import argparse
import math
import struct
import zlib

import pytest
from conftest import build_tiny_gpt2

from mdlbench.coding.coder import (
    DecodeMismatchError,
    ModelMismatchError,
    coding_table,
    compress_bytes,
    decompress_bytes,
    verify_coding,
)
from mdlbench.coding.container import FIXED_HEADER_BYTES, MAGIC, CorruptFileError, pack, unpack
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
        assert c.meta["coding"]["n_tokens"] + 1 > 3 * WINDOW  # several windows, so several restarts


def test_stream_layout_counts(packed):
    """bos/eos: n tokens + EOS are coded, BOS is not; the empty document codes only EOS."""
    assert packed["empty"].n_symbols == 1 and packed["empty"].coded_bits == 32
    assert packed["one-byte"].n_symbols == 2  # "x" is one GPT-2 token, plus EOS
    ascii_ = packed["ascii"]
    assert ascii_.n_symbols == ascii_.meta["coding"]["n_tokens"] + 1
    assert ascii_.meta["coding"]["prefix_token_id"] == ascii_.meta["coding"]["eos_token_id"] == 50256


@pytest.mark.parametrize(("first_token", "end"), [("uniform", "eos"), ("uniform", "none"), ("bos", "none")])
def test_other_policies_round_trip(tiny_loaded, first_token, end):
    data = DOCS["longer-than-window"][:80]
    c = compress_bytes(tiny_loaded, data, window=WINDOW, stride=5, first_token=first_token, end=end)
    assert decompress_bytes(c.blob, tiny_loaded).data == data
    n = c.meta["coding"]["n_tokens"]
    assert c.n_symbols == n + (end == "eos")  # under both policies: every text token, plus EOS
    assert abs(c.coded_bits - c.ideal_bits) <= 64 + 1e-3 * c.ideal_bits
    # empty documents under these policies: nothing or one symbol is coded
    e = compress_bytes(tiny_loaded, b"", window=WINDOW, first_token=first_token, end=end)
    assert decompress_bytes(e.blob, tiny_loaded).data == b""
    assert e.n_symbols == (end == "eos")


def test_uniform_bytes_is_exactly_8_bits_per_byte_plus_header():
    for data in (b"", b"a", DOCS["chinese-emoji"], DOCS["invalid-utf8"]):
        c = compress_bytes("uniform-bytes", data)
        meta_len = struct.unpack_from("<I", c.blob, 10)[0]
        assert c.header_bytes == FIXED_HEADER_BYTES + meta_len
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
    c = unpack(packed["ascii"].blob)
    meta = {k: v for k, v in c.meta.items() if not k.startswith("payload_")}
    meta["model"] = {**meta["model"], "sha256": other.sha256}
    with pytest.raises(DecodeMismatchError, match="does not (end with EOS|match the original)"):
        decompress_bytes(pack(meta, c.payload), other)


def test_wrong_tokenizer_or_settings_are_refused(tiny_loaded, packed):
    c = unpack(packed["ascii"].blob)
    meta = {k: v for k, v in c.meta.items() if not k.startswith("payload_")}
    forged = {**meta, "model": {**meta["model"], "tokenizer_sha256": "0" * 64}}
    with pytest.raises(ModelMismatchError, match="tokenizer sha256"):
        decompress_bytes(pack(forged, c.payload), tiny_loaded)
    forged = {**meta, "coding": {**meta["coding"], "prefix_token_id": 0}}
    with pytest.raises(ModelMismatchError, match="BOS/EOS ids"):
        decompress_bytes(pack(forged, c.payload), tiny_loaded)


def test_corrupted_files_are_refused(tiny_loaded, packed):
    blob = packed["longer-than-window"].blob
    header = packed["longer-than-window"].header_bytes

    def flip(i: int) -> bytes:
        return blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1:]

    cases = [(flip(0), "bad magic"), (flip(9), "format version"), (flip(30), "CRC-32"),
             (flip(len(blob) - 1), "corrupted payload"), (blob[:-4], "truncated"), (blob[:10], "bad magic"),
             (b"", "bad magic"), (blob[:header - 5], "truncated or corrupted header")]
    for bad, message in cases:
        with pytest.raises(CorruptFileError, match=message):
            decompress_bytes(bad, tiny_loaded)
    # A header that passes its CRC but lacks a field decoding needs (forged or from another writer).
    body = blob[FIXED_HEADER_BYTES:header].replace(b'"original_bytes":', b'"original_bytez":')
    forged = MAGIC + struct.pack("<HII", 1, len(body), zlib.crc32(body)) + body + blob[header:]
    with pytest.raises(CorruptFileError, match="lacks original_bytes"):
        decompress_bytes(forged, tiny_loaded)
    assert issubclass(CorruptFileError, InputError)  # exit code 2 at the CLI


def test_verify_coding_matches_the_batched_scorer(tiny_loaded):
    """ideal_bits (KV-cache incremental pass, float64 softmax) vs HFScorer (one batched forward per window,
    float64 log-softmax) on the same stream and windows: within 1e-6 relative (measured 1e-11 to 4e-10; the two
    forwards differ in float32 rounding only). The tiny model's context is 64; the first two documents fit in one
    window of 64, the third spans several windows of 16 and agrees as well: the coder uses the same window plan."""
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
    meta = unpack(packed.read_bytes()).meta  # the header pins the model and the settings it was coded with
    assert meta["model"]["sha256"] == identify_model(str(tiny_model_dir)).weights_sha256
    assert (meta["coding"]["window"], meta["coding"]["stride"], meta["method"]) == (32, 16, "model")
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
