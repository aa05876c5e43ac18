"""Tokenization as a code: encode without special-token parsing, check the round trip, map tokens to bytes."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of the text alone: no BOS/EOS added, and literal strings such as "<|endoftext|>" stay text.

    Parsing them as control tokens would make the model predict a control symbol for document content
    (METHODS §1.4), so ``split_special_tokens=True``.
    """
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def roundtrip_ok(tokenizer: Any, ids: list[int], text: str) -> bool:
    """decode(encode(text)) == text byte for byte, with decode-time cleanup off (it rewrites " ." to ".")."""
    if not ids:
        return text == ""
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) == text


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet: printable bytes map to themselves, the rest to U+0100 onwards."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def is_byte_level(tokenizer: Any) -> bool:
    """Whether the tokenizer's pieces are byte-level BPE strings (GPT-2's "Ġworld"), as opposed to SentencePiece-style
    pieces ("▁world", "<0xE4>"): read from the serialized pipeline (a ByteLevel pre-tokenizer or decoder)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    pipeline = json.loads(backend.to_str())

    def has_byte_level(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "ByteLevel" or any(has_byte_level(v) for v in node.values())
        if isinstance(node, list):
            return any(has_byte_level(v) for v in node)
        return False

    return has_byte_level(pipeline.get("pre_tokenizer")) or has_byte_level(pipeline.get("decoder"))


def _piece_bytes(piece: str, byte_level: bool) -> bytes | None:
    """Bytes of one token string: byte-level BPE ("Ġworld") or SentencePiece ("▁world", byte fallback "<0xE4>")."""
    if byte_level:
        decoder = _byte_level_decoder()
        try:
            return bytes(decoder[c] for c in piece)
        except KeyError:
            return None
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            return None
    return piece.replace("\u2581", " ").encode("utf-8")


def token_byte_spans(tokenizer: Any, ids: list[int], text: str,
                     byte_level: bool | None = None) -> list[tuple[int, int]] | None:
    """Exact [start, end) byte span of every token, or None when the token bytes do not tile the text's UTF-8.

    A byte-level token, or a SentencePiece byte-fallback token, can end inside a multi-byte character; spans are
    then still exact in bytes. SentencePiece's dummy prefix (the "▁" its normalizer puts before the text) is not
    part of the text: the pieces then spell " " + text, and the prefix is cut from the first token's span (a first
    token that is only the prefix gets the empty span [0, 0)). ``byte_level``: ``is_byte_level(tokenizer)``,
    computed once by callers that map many documents.
    """
    data = text.encode("utf-8")
    byte_level = is_byte_level(tokenizer) if byte_level is None else byte_level
    chunks = [_piece_bytes(piece, byte_level) for piece in tokenizer.convert_ids_to_tokens(ids)]
    if any(c is None for c in chunks):
        return None
    spelled = b"".join(chunks)  # type: ignore[arg-type]
    if spelled == data:
        prefix = 0
    elif not byte_level and spelled == b" " + data:
        prefix = 1
    else:
        return None
    spans: list[tuple[int, int]] = []
    pos = 0
    for chunk in chunks:
        end = pos + len(chunk)  # type: ignore[arg-type]
        spans.append((max(pos - prefix, 0), max(end - prefix, 0)))
        pos = end
    return spans
