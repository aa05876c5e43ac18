"""Tokenization as a code: encode without special-token parsing, check the round trip, map tokens to bytes."""

from __future__ import annotations

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


def _piece_bytes(piece: str, decoder: dict[str, int]) -> bytes | None:
    """Bytes of one token string, for byte-level BPE ("Ġworld") or SentencePiece ("▁world", "<0xE4>")."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            return None
    try:
        return bytes(decoder[c] for c in piece)
    except KeyError:
        pass
    return piece.replace("\u2581", " ").encode("utf-8")


def token_byte_spans(tokenizer: Any, ids: list[int], text: str) -> list[tuple[int, int]] | None:
    """Exact [start, end) byte span of every token, or None when the token bytes do not tile the text's UTF-8.

    A byte-level token can end inside a multi-byte character; spans are then still exact in bytes.
    """
    data = text.encode("utf-8")
    decoder = _byte_level_decoder()
    spans: list[tuple[int, int]] = []
    pos = 0
    for piece in tokenizer.convert_ids_to_tokens(ids):
        chunk = _piece_bytes(piece, decoder)
        if chunk is None:
            return None
        if pos == 0 and chunk.startswith(b" ") and not data.startswith(b" "):
            chunk = chunk[1:]  # SentencePiece's dummy prefix space is not part of the text
        if data[pos:pos + len(chunk)] != chunk:
            return None
        spans.append((pos, pos + len(chunk)))
        pos += len(chunk)
    return spans if pos == len(data) else None
