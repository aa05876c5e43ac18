"""Readers: local txt / jsonl / parquet files and Hugging Face `datasets` streams, each yielding Documents lazily.

Every reader streams (one record in memory at a time) and fails with an InputError that names the file, the
record and the fix. Invalid UTF-8 is an error that names the byte offset unless errors="replace", in which
case the replaced byte count is recorded on the document.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mdlbench.corpora.documents import Document
from mdlbench.corpora.files import cannot_read, folder_files, reading
from mdlbench.errors import InputError, first_line

Errors = Literal["strict", "replace"]
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Which record fields hold the text, the id and the domain (None: absent, derive)."""

    text_field: str = "text"
    id_field: str | None = None
    domain_field: str | None = "domain"
    domain: str = ""  # used when the record has no domain field


def decode_utf8(data: bytes, where: str, errors: Errors, base_offset: int = 0) -> tuple[str, int]:
    """UTF-8 bytes -> (text, number of bytes replaced). Strict mode names the offending byte offset."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError as exc:
        if errors == "strict":
            raise InputError(
                f"{where}: invalid UTF-8 at byte offset {base_offset + exc.start}; fix the file or pass "
                f"--errors replace to score it with U+FFFD replacements (recorded per document)") from None
    text = data.decode("utf-8", errors="replace")
    # The invalid bytes are exactly those that errors="ignore" drops (a literal U+FFFD in the source is kept).
    n_replaced = len(data) - len(data.decode("utf-8", errors="ignore").encode("utf-8"))
    return text, n_replaced


def check_code_points(text: str, where: str, errors: Errors) -> tuple[str, int]:
    """A decoded text that UTF-8 can encode, and how many characters were replaced: a JSON string can spell a lone
    surrogate ("\\udc80"), which is no character at all. Strict mode names its position; replace mode turns each
    into U+FFFD and counts it."""
    try:
        text.encode("utf-8")
        return text, 0
    except UnicodeEncodeError as exc:
        if errors == "strict":
            raise InputError(f"{where}: a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start} is "
                             "not text; fix the record or pass --errors replace to score it as U+FFFD") from None
    cleaned = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return cleaned, sum(1 for c in text if "\ud800" <= c <= "\udfff")


def read_text_file(path: Path, fields: FieldSpec, errors: Errors, doc_id: str | None = None) -> Iterator[Document]:
    """A .txt file is one document."""
    with reading(path):
        data = path.read_bytes()
    text, n_replaced = decode_utf8(data, str(path), errors)
    yield Document(doc_id or path.name, text, fields.domain, n_replaced)


def read_text_folder(folder: Path, fields: FieldSpec, errors: Errors) -> Iterator[Document]:
    """Every text file below the folder, in sorted path order, one document each (id = relative path). A file in a
    subfolder takes the first-level subfolder's name as its domain (``code/a.py`` -> "code"); a file at the top
    takes the corpus's domain."""
    files = folder_files(folder, TEXT_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no text files ({', '.join(TEXT_SUFFIXES)}) in this folder; "
                         "point --corpus at a file or a folder of .txt files")
    for path in files:
        relative = path.relative_to(folder)
        domain = relative.parts[0] if len(relative.parts) > 1 else fields.domain
        yield from read_text_file(path, dataclasses.replace(fields, domain=domain), errors,
                                  doc_id=relative.as_posix())


def _record_to_document(record: dict, where: str, index: int, fields: FieldSpec, errors: Errors,
                        default_id: str) -> Document:
    if fields.text_field not in record:
        known = ", ".join(sorted(map(str, record))[:10])
        raise InputError(f"{where}: record {index} has no field {fields.text_field!r} (fields: {known}); "
                         "pass --text-field NAME")
    text = record[fields.text_field]
    if text is None:
        raise InputError(f"{where}: record {index} field {fields.text_field!r} is null, not text; give every record "
                         "a text (an empty document is \"\"), or drop the record")
    if isinstance(text, bytes):
        text, n_replaced = decode_utf8(text, f"{where} record {index}", errors)
    elif isinstance(text, str):
        text, n_replaced = check_code_points(text, f"{where} record {index}", errors)
    else:
        raise InputError(f"{where}: record {index} field {fields.text_field!r} is {type(text).__name__}, "
                         "not text; pass --text-field with a string field")
    if fields.id_field is not None:
        if fields.id_field not in record:
            raise InputError(f"{where}: record {index} has no id field {fields.id_field!r}; pass --id-field NAME "
                             "or leave it out to number records")
        doc_id = str(record[fields.id_field])
    else:
        doc_id = default_id
    domain = fields.domain
    if fields.domain_field and record.get(fields.domain_field) is not None:
        domain = str(record[fields.domain_field])
    return Document(doc_id, text, domain, n_replaced)


def read_jsonl(path: Path, fields: FieldSpec, errors: Errors) -> Iterator[Document]:
    """One JSON object per line; blank lines are skipped; ids default to '<file name>:<line number>'."""
    with reading(path):
        f = path.open("rb")
    with f, reading(path):
        offset = 0
        for line_no, raw in enumerate(f, start=1):
            line_offset, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            line, n_replaced = decode_utf8(raw, f"{path} line {line_no}", errors, base_offset=line_offset)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {line_no} is not valid JSON ({exc.msg}); fix the line "
                                 "or convert the file to JSON Lines") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}: line {line_no} is a JSON {type(record).__name__}, not an object "
                                 "with a text field")
            doc = _record_to_document(record, str(path), line_no, fields, errors, f"{path.name}:{line_no}")
            # Invalid bytes can only sit inside JSON strings (else json.loads fails): charge them to this record.
            yield dataclasses.replace(doc, n_replaced_bytes=doc.n_replaced_bytes + n_replaced) if n_replaced else doc


def read_parquet(path: Path, fields: FieldSpec, errors: Errors) -> Iterator[Document]:
    """Rows of a Parquet file, read in record batches; ids default to '<file name>:<row number>'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path") from None
    except PermissionError as exc:
        raise cannot_read(path, exc) from None
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc}); re-export it or check the path") from None
    names = pf.schema_arrow.names
    if fields.text_field not in names:
        raise InputError(f"{path}: no column {fields.text_field!r} (columns: {', '.join(names[:10])}); "
                         "pass --text-field NAME")
    columns = [c for c in (fields.text_field, fields.id_field, fields.domain_field) if c and c in names]
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=256, columns=columns):
            for record in batch.to_pylist():
                yield _record_to_document(record, str(path), row, fields, errors, f"{path.name}:{row}")
                row += 1
    except pa.ArrowException as exc:
        raise InputError(f"{path}: corrupt Parquet data after row {row} ({exc}); re-export the file") from None


def read_local(path: Path, fields: FieldSpec, errors: Errors) -> Iterator[Document]:
    """Dispatch on what the path is."""
    if path.is_dir():
        return read_text_folder(path, fields, errors)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; give a .txt/.jsonl/.parquet path, a folder of .txt "
                         "files, a manifest name, or hf:NAME[:CONFIG]:SPLIT")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path, fields, errors)
    if suffix in PARQUET_SUFFIXES:
        return read_parquet(path, fields, errors)
    return read_text_file(path, fields, errors)


@dataclass(frozen=True, slots=True)
class HFSpec:
    """A Hugging Face dataset, streamed: `hf:NAME:SPLIT`, `hf:NAME:CONFIG:SPLIT`, `hf:NAME:CONFIG:SPLIT:FIELD`."""

    name: str
    config: str | None
    split: str
    field: str | None = None
    revision: str | None = None
    data_files: str | None = None

    @staticmethod
    def parse(spec: str, revision: str | None = None, data_files: str | None = None) -> HFSpec:
        parts = spec.removeprefix("hf:").split(":")
        if len(parts) == 2:
            return HFSpec(parts[0], None, parts[1], None, revision, data_files)
        if len(parts) in (3, 4):
            return HFSpec(parts[0], parts[1] or None, parts[2], parts[3] if len(parts) == 4 else None, revision,
                          data_files)
        raise InputError(f"{spec!r}: expected hf:NAME:SPLIT, hf:NAME:CONFIG:SPLIT or hf:NAME:CONFIG:SPLIT:FIELD")


def read_hf(spec: HFSpec, fields: FieldSpec, errors: Errors) -> Iterator[Document]:
    """Stream a `datasets` dataset (never downloaded whole); ids default to '<name>/<split>:<row>'."""
    import datasets

    kwargs = {"streaming": True, "split": spec.split}
    if spec.revision:
        kwargs["revision"] = spec.revision
    if spec.data_files:
        kwargs["data_files"] = spec.data_files
    try:
        ds = datasets.load_dataset(spec.name, spec.config, **kwargs)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, DatasetNotFoundError)
        raise InputError(f"hf:{spec.name}: cannot open the dataset ({first_line(exc)}); check the name, config and "
                         "split, and note that HF_HUB_OFFLINE=1/HF_DATASETS_OFFLINE=1 forbid downloads") from None
    fields = FieldSpec(spec.field or fields.text_field, fields.id_field, fields.domain_field,
                       fields.domain or spec.name)
    where = f"hf:{spec.name}:{spec.split}"
    for row, record in enumerate(ds):
        yield _record_to_document(record, where, row, fields, errors, f"{spec.name}/{spec.split}:{row}")
