"""The exact texts a run scored, re-read from its corpus and checked against the run's corpus sha256.

Results folders hold code lengths and byte spans, not texts; a span's text comes from the corpus the run names
(``config_json["corpus_spec"]``, the resolved spec) read with the run's own options (fields, selection, UTF-8
policy). The whole stream is hashed as it is read: a corpus that changed since the run is refused rather than
shown against the wrong bytes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from mdlbench.corpora import StreamHasher, open_corpus
from mdlbench.errors import InputError


def corpus_spec_of(run: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(spec, open_corpus keyword arguments) that reopen the corpus a run scored."""
    raw = run.get("config_json")
    config = json.loads(raw) if isinstance(raw, str) and raw else {}
    spec = str(config.get("corpus_spec") or run["corpus"])
    if spec.startswith("hf:"):
        spec = str(run["corpus"])  # corpus_spec carries "@revision[data_files]" for display; the options hold them
    kwargs = {"text_field": config.get("text_field", "text"), "id_field": config.get("id_field"),
              "revision": config.get("corpus_revision"), "max_docs": config.get("max_docs"),
              "max_bytes": config.get("max_bytes"), "errors": config.get("errors", "strict"),
              "data_files": config.get("data_files")}
    return spec, kwargs


def run_texts(run: Mapping[str, Any], doc_ids: Collection[str] | None = None,
              corpus: str | None = None) -> dict[str, str]:
    """{doc_id: text} for ``doc_ids`` (None: every document) of the corpus ``run`` scored.

    ``corpus`` overrides the recorded spec (a corpus that moved); the run's selection and field options still
    apply. Raises InputError when the corpus cannot be opened or its documents are not the ones the run scored.
    """
    spec, kwargs = corpus_spec_of(run)
    spec = corpus or spec
    run_id = str(run["run_id"])
    how = "give it with --corpus SPEC (the path, manifest name or hf: spec the run scored)"
    try:
        source = open_corpus(spec, **kwargs)
        wanted = None if doc_ids is None else set(doc_ids)
        hasher = StreamHasher()
        texts: dict[str, str] = {}
        for doc in source.documents():
            hasher.update(doc)
            if wanted is None or doc.doc_id in wanted:
                texts[doc.doc_id] = doc.text
    except InputError as exc:
        raise InputError(f"cannot re-read the texts of run {run_id} from corpus {spec!r} ({exc}); {how}") from None
    digest = hasher.hexdigest()
    if digest != str(run["corpus_sha256"]):
        raise InputError(f"corpus {spec!r} no longer holds the documents run {run_id} scored (stream sha256 "
                         f"{digest[:12]}…, the run recorded {str(run['corpus_sha256'])[:12]}…); {how}")
    return texts
