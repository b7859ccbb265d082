"""Safe defaults and a fast start: an index records the search mode it can justify (its lexical fields alone unless
a fusion was given), ``koembed search`` and ``/search`` use it, a bm25 search imports no torch or transformers,
and ``serve`` warms Kiwi, the model and the index before it answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from koembed.cli import app as cli
from koembed.errors import IndexStoreError
from koembed.index import IndexParams, build_index, default_mode, load_index
from koembed.index.manifest import MANIFEST
from koembed.models import ModelSpec
from koembed.retrieval.specs import parse_fusion
from tests.helpers import QUIET

QUERY = "전세 보증금을 못 돌려받으면 어떻게 하나요?"


@pytest.fixture(scope="module")
def lexical_index(tmp_path_factory, tiny_model_dir):
    """An index built by the CLI without --fusion."""
    out = tmp_path_factory.mktemp("defaults") / "idx"
    result = CliRunner().invoke(cli, ["index", "build", "--model", str(tiny_model_dir), "--corpus", "sample",
                                      "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "default search: bm25" in result.output
    return out


def _manifest(path) -> dict:
    return json.loads((path / MANIFEST).read_text(encoding="utf-8"))


def _search(index, *options: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["search", QUERY, "--index", str(index), "--json", "-k", "5", *options])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_build_records_lexical_mode_and_search_uses_it(lexical_index):
    assert _manifest(lexical_index)["mode"] == "bm25"
    assert _manifest(lexical_index)["fusion"] == {"fusion": "rrf", "weights": None, "rrf_k": 60}  # hybrid still works
    hits = _search(lexical_index)
    assert hits == _search(lexical_index, "--mode", "bm25")
    assert hits != _search(lexical_index, "--mode", "hybrid")  # the default is not the untuned RRF fusion


@pytest.mark.parametrize("fusion", ["rrf", "cc@1,0.1"])
def test_a_given_fusion_records_hybrid(tmp_path, tiny_model_dir, fusion):
    out = tmp_path / "idx"
    result = CliRunner().invoke(cli, ["index", "build", "--model", str(tiny_model_dir), "--corpus", "sample",
                                      "--out", str(out), "--fusion", fusion, "-q"])
    assert result.exit_code == 0, result.output
    assert _manifest(out)["mode"] == "hybrid" and _manifest(out)["fusion"] == parse_fusion(fusion)
    assert _search(out) == _search(out, "--mode", "hybrid")


def test_api_records_hybrid_only_for_a_chosen_fusion(tmp_path, tiny_model_dir, model, corpus):
    built = {name: build_index(str(tiny_model_dir), *corpus, tmp_path / name, params=params, options=QUIET,
                               encoder=model).mode
             for name, params in {"plain": IndexParams(), "fitted": IndexParams(fusion=parse_fusion("z@1,0.2")),
                                  "dense": IndexParams(mode="dense")}.items()}
    assert built == {"plain": "bm25", "fitted": "hybrid", "dense": "dense"}
    with pytest.raises(Exception, match="unknown default search mode"):
        IndexParams(mode="sparse-ish")


def test_older_manifest_without_mode_and_forged_mode(tmp_path, tiny_model_dir, model, corpus):
    out = tmp_path / "idx"
    build_index(str(tiny_model_dir), *corpus, out, params=IndexParams(fusion=parse_fusion("cc@1,0.1")), options=QUIET,
                encoder=model)
    data = _manifest(out)
    for fusion, expected in ((parse_fusion("cc@1,0.1"), "hybrid"), (parse_fusion("rrf"), "bm25"), (None, "bm25")):
        older = {k: v for k, v in data.items() if k not in ("mode", "fusion")}
        if fusion is not None:
            older["fusion"] = fusion
        (out / MANIFEST).write_text(json.dumps(older), encoding="utf-8")
        assert default_mode(load_index(out, encoder=model).manifest) == expected, fusion
    (out / MANIFEST).write_text(json.dumps({**data, "mode": "everything"}), encoding="utf-8")
    with pytest.raises(IndexStoreError, match="'mode'"):
        load_index(out, encoder=model)


def test_bm25_search_imports_no_torch(lexical_index):
    """In a fresh process: a bm25 search through the CLI imports neither torch nor transformers, and loads no model
    (the index's model stays unloaded until a dense search)."""
    code = f"""
import json, sys
from koembed.cli import app
from koembed.index import search as search_module
loaded = []
original = search_module.checked_encoder
search_module.checked_encoder = lambda *a, **k: loaded.append(1) or original(*a, **k)
try:
    app(["search", {QUERY!r}, "--index", {str(lexical_index)!r}, "--mode", "bm25", "--json"])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print(json.dumps({{name: name in sys.modules for name in ("torch", "transformers", "sentence_transformers")}}
                 | {{"model_loaded": bool(loaded)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[0])["rank"] == 1  # it searched
    assert json.loads(lines[-1]) == {"torch": False, "transformers": False, "sentence_transformers": False,
                                     "model_loaded": False}


def test_serve_warms_up_before_health(monkeypatch, lexical_index, tiny_model_dir):
    """serve() builds the lexical fields, loads Kiwi and runs the model before it binds: the first /search after
    /health answers ok rebuilds nothing and makes no new Kiwi."""
    import uvicorn

    from koembed.lexical import BM25Retriever
    from koembed.lexical import kiwi as kiwi_module
    from koembed.server import serve

    kiwi_module._kiwi.cache_clear()  # another test's Kiwi must not count as warm
    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    serve(ModelSpec(str(tiny_model_dir)), lexical_index, allowed_hosts=("testserver",))
    (app,) = apps
    fits, kiwis = [], kiwi_module._kiwi.cache_info().misses
    original = BM25Retriever.fit_analysed
    monkeypatch.setattr(BM25Retriever, "fit_analysed", lambda self, *a, **k: fits.append(1) or original(self, *a, **k))
    with TestClient(app) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["search_mode"] == "bm25"
        for body in ({"query": QUERY}, {"query": QUERY, "mode": "hybrid", "highlight": True}):
            response = client.post("/search", json=body)
            assert response.status_code == 200, response.text
        assert response.json()["hits"]
        assert client.post("/search", json={"query": QUERY}).json()["mode"] == "bm25"
    assert fits == [] and kiwi_module._kiwi.cache_info().misses == kiwis
