"""The unit everything is measured on: one document, its exact text, and how its bytes were obtained."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Document:
    """One document. ``text`` is exactly what is scored; bytes are ``text.encode("utf-8")``."""

    doc_id: str
    text: str
    domain: str = ""
    # Bytes of the source that were not valid UTF-8 and became U+FFFD (only with errors="replace").
    n_replaced_bytes: int = 0

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @property
    def n_chars(self) -> int:
        return len(self.text)


class StreamHasher:
    """sha256 of a document stream: ids and texts, length-prefixed so that no two streams collide by concatenation."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, doc: Document) -> None:
        for part in (doc.doc_id.encode("utf-8"), doc.text.encode("utf-8")):
            self._h.update(len(part).to_bytes(8, "little"))
            self._h.update(part)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def stream_sha256(docs: Iterable[Document]) -> str:
    hasher = StreamHasher()
    for doc in docs:
        hasher.update(doc)
    return hasher.hexdigest()
