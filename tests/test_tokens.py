"""Byte spans of tokens for the two tokenizer families: byte-level BPE and SentencePiece-style BPE with byte fallback.

The SentencePiece-style tokenizer is built here with `tokenizers` (Llama-2 layout: a normalizer that prepends "▁"
and turns spaces into "▁", BPE with byte fallback, and the matching decoder), so its pieces are known by hand.
"""

from __future__ import annotations

import pytest
from conftest import gpt2_tokenizer

from mdlbench.scoring.tokens import encode, is_byte_level, roundtrip_ok, token_byte_spans

# Merges of the hand-made vocabulary; every merge result is in the vocabulary too.
MERGES = [("▁", "h"), ("▁h", "e"), ("l", "l"), ("▁he", "ll"), ("▁hell", "o"), ("▁", "w"), ("o", "r"),
          ("▁w", "or"), ("▁wor", "l"), ("▁worl", "d"), ("▁", "f"), ("▁f", "ü"), ("▁fü", "r")]


def sentencepiece_style_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in ["▁", "h", "e", "l", "o", "w", "r", "d", "f", "ü", *("".join(m) for m in MERGES)]:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=MERGES, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_sentencepiece_pieces_and_byte_fallback_tile_the_bytes():
    tok = sentencepiece_style_tokenizer()
    assert not is_byte_level(tok)
    text = "hello für world ñ😀"
    ids = encode(tok, text)
    pieces = tok.convert_ids_to_tokens(ids)
    # By hand: the dummy prefix joins "hello"; "für" is one piece whose "ü" is a Latin-1 character (which a byte-level
    # reading would take for the single byte 0xFC); "ñ" (2 UTF-8 bytes) and "😀" (4) are not in the vocabulary and
    # fall back to one <0xNN> piece per byte.
    assert pieces == ["▁hello", "▁für", "▁world", "▁", "<0xC3>", "<0xB1>", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert roundtrip_ok(tok, ids, text)
    spans = token_byte_spans(tok, ids, text)
    data = text.encode("utf-8")
    assert spans == [(0, 5), (5, 10), (10, 16), (16, 17), (17, 18), (18, 19), (19, 20), (20, 21), (21, 22), (22, 23)]
    assert b"".join(data[a:b] for a, b in spans) == data
    # A text that starts with a space keeps its own space; only the dummy prefix is dropped. The normalizer makes
    # "▁▁hello": pieces "▁" (the prefix: an empty span at 0) and "▁hello" (the text's space and "hello").
    ids = encode(tok, " hello")
    assert tok.convert_ids_to_tokens(ids) == ["▁", "▁hello"]
    assert token_byte_spans(tok, ids, " hello") == [(0, 0), (0, 6)]


@pytest.mark.parametrize("text", ["Hello world", "x = 10\n    return ü", "床前明月光", "emoji 😀🎉", "a\r\nb", ""])
def test_byte_level_spans_tile_the_bytes_even_inside_characters(text):
    tok = gpt2_tokenizer()
    assert is_byte_level(tok)
    ids = encode(tok, text)
    spans = token_byte_spans(tok, ids, text)
    data = text.encode("utf-8")
    assert spans is not None and [a for a, _ in spans[1:]] == [b for _, b in spans[:-1]]
    assert (spans[0][0] if spans else 0) == 0 and (spans[-1][1] if spans else 0) == len(data)


def test_spans_refuse_a_tokenization_that_does_not_map_to_the_text():
    tok = gpt2_tokenizer()
    assert token_byte_spans(tok, encode(tok, "Hello world"), "Hello there") is None
