"""Corpus readers, manifests and every bad input: one clear error naming the input and the fix."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEXTS

from mdlbench.corpora import open_corpus
from mdlbench.corpora.manifest import create_manifest
from mdlbench.errors import InputError


def test_jsonl_ids_domains_and_prefix_selection(jsonl_corpus):
    docs = list(open_corpus(str(jsonl_corpus), id_field="id").documents())
    assert [d.doc_id for d in docs] == [f"d{i}" for i in range(len(TEXTS))]
    assert [d.text for d in docs] == TEXTS and {d.domain for d in docs} == {"test"}
    assert [d.doc_id for d in open_corpus(str(jsonl_corpus)).documents()][:2] == ["corpus.jsonl:1", "corpus.jsonl:2"]
    assert len(list(open_corpus(str(jsonl_corpus), max_docs=2).documents())) == 2
    sizes = [len(t.encode()) for t in TEXTS]
    kept = list(open_corpus(str(jsonl_corpus), max_bytes=sum(sizes[:3])).documents())
    assert len(kept) == 3  # whole documents only, deterministic prefix
    assert open_corpus(str(jsonl_corpus)).sha256() == open_corpus(str(jsonl_corpus)).sha256()


def test_txt_file_folder_and_parquet(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("first", encoding="utf-8")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "two.txt").write_text("second ☃", encoding="utf-8")
    docs = list(open_corpus(str(tmp_path / "a")).documents())
    assert [(d.doc_id, d.text) for d in docs] == [("one.txt", "first"), ("sub/two.txt", "second ☃")]
    (single,) = open_corpus(str(tmp_path / "a" / "one.txt")).documents()
    assert single.text == "first"
    pq.write_table(pa.table({"content": TEXTS, "key": [f"k{i}" for i in range(len(TEXTS))]}), tmp_path / "c.parquet")
    docs = list(open_corpus(str(tmp_path / "c.parquet"), text_field="content", id_field="key").documents())
    assert [d.text for d in docs] == TEXTS and docs[-1].doc_id == f"k{len(TEXTS) - 1}"


def test_builtin_sample_has_four_domains_and_pinned_manifest():
    corpus = open_corpus("sample")
    docs = list(corpus.documents())
    assert {d.domain for d in docs} == {"prose", "code", "docs", "poetry_zh"}
    n_bytes = sum(d.n_bytes for d in docs)
    assert 200_000 <= n_bytes <= 400_000
    assert sum(d.n_chars for d in docs) < n_bytes  # multibyte text: bytes and characters differ
    assert corpus.manifest is not None and corpus.manifest.license


def test_hf_datasets_streaming_local_files(jsonl_corpus):
    corpus = open_corpus("hf:json:train", data_files=str(jsonl_corpus), id_field="id")
    assert [d.text for d in corpus.documents()] == TEXTS


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.jsonl", "no such file or folder"),
    (lambda p: (p / "bad.txt").write_bytes(b"ok \xff\xfe here") and p / "bad.txt", r"invalid UTF-8 at byte offset 3"),
    (lambda p: (p / "nf.jsonl").write_text('{"body": "x"}\n') and p / "nf.jsonl", r"no field 'text'.*--text-field"),
    (lambda p: (p / "bad.parquet").write_bytes(b"PAR1 not really") and p / "bad.parquet", "not a readable Parquet"),
    (lambda p: (p / "bad.jsonl").write_text('{"text": "a"}\n{oops\n') and p / "bad.jsonl", "line 2 is not valid JSON"),
])
def test_bad_inputs_name_the_input_and_the_fix(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(InputError, match=match):
        list(open_corpus(str(path)).documents())


def test_invalid_utf8_in_jsonl_names_line_offset_and_replace_is_recorded(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "bad \xc3\x28 byte"}\n')
    # line 1 is 17 bytes; the bad byte is the 15th of line 2: offset 17 + 14 = 31 in the file
    with pytest.raises(InputError, match=r"line 2.*byte offset 31"):
        list(open_corpus(str(path)).documents())
    docs = list(open_corpus(str(path), errors="replace").documents())
    assert docs[1].n_replaced_bytes == 1 and "\ufffd" in docs[1].text and docs[0].n_replaced_bytes == 0


def test_unknown_spec_and_duplicate_ids(tmp_path):
    with pytest.raises(InputError, match="no manifest named 'nope'"):
        open_corpus("nope")
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n')
    with pytest.raises(InputError, match="duplicate document id '1'"):
        list(open_corpus(str(path), id_field="id").documents())


def test_manifest_create_load_and_mismatch(tmp_path, monkeypatch, jsonl_corpus):
    manifests = tmp_path / "manifests"
    create_manifest(str(jsonl_corpus), "mine", manifests, description="d", license_="CC0", id_field="id")
    monkeypatch.setenv("MDLBENCH_MANIFESTS", str(manifests))
    corpus = open_corpus("mine")
    assert [d.doc_id for d in corpus.documents()] == [f"d{i}" for i in range(len(TEXTS))]
    with jsonl_corpus.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "new", "text": "tampered"}) + "\n")
    with pytest.raises(InputError, match=r"corpus.jsonl has sha256 .* but the manifest pins"):
        open_corpus("mine")
    bad = manifests / "typo.toml"
    bad.write_text('name = "typo"\n[[sources]]\npath = "x"\nsha256 = "0"\nn_bytes = 1\ntext_feild = "t"\n')
    with pytest.raises(InputError, match="unknown key 'text_feild'; did you mean 'text_field'"):
        open_corpus("typo")


def test_a_manifest_corpus_reopens_from_the_source_a_run_records():
    """Corpus.source of a manifest corpus is "manifest:<path>"; open_corpus takes it back (spans.texts relies on it)."""
    first = open_corpus("sample", max_docs=3)
    again = open_corpus(first.source, max_docs=3)
    assert again.source == first.source and again.name == first.name == "sample"
    assert [d.doc_id for d in again.documents()] == [d.doc_id for d in first.documents()]
    assert again.sha256() == first.sha256()
    with pytest.raises(InputError, match="the manifest file is gone"):
        open_corpus("manifest:/nonexistent/sample.toml")


def test_the_quick_default_is_a_selection_of_sample_with_all_its_domains():
    quick, full = open_corpus("sample-quick"), open_corpus("sample")
    docs = list(quick.documents())
    by_id = {d.doc_id: d for d in full.documents()}
    assert quick.name == "sample-quick" and len(docs) == 9
    assert {d.domain for d in docs} == {d.domain for d in by_id.values()} == {"prose", "code", "docs", "poetry_zh"}
    assert all(by_id[d.doc_id] == d for d in docs)  # the same documents, byte for byte
    assert [d.doc_id for d in docs] == [i for i in by_id if i in {d.doc_id for d in docs}]  # in the sample's order
    assert quick.scan().n_bytes == sum(d.n_bytes for d in docs) == 35_188
