"""bench/peers.py's query-variant wiring (issue 23): one worker list holds every form's queries, the strings are
koembed.evaluation.variants's, and the hits split back per form. No Java needed: the systems are not run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from koembed.evaluation.variants import make_variants

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
peers = pytest.importorskip("peers")


def test_forms_are_parsed_checked_and_deduplicated():
    assert peers.parse_forms("none, nospace,swap,nospace") == ["none", "nospace", "swap"]
    assert set(peers.FORMS) == {"none", "nospace", "randspace", "swap", "jamo", "keyboard"}
    for bad in ("no-space", "", "none,upper"):
        with pytest.raises(ValueError, match="unknown query variant"):
            peers.parse_forms(bad)


def test_worker_queries_are_make_variants_strings_and_hits_split_back(sample):
    queries = list(sample.queries.items())
    forms = ["none", "jamo", "keyboard"]
    listed = peers.query_forms(queries, forms, seed=5)
    assert len(listed) == 3 * len(queries)
    texts = [t for _, t in queries]
    want = {"none": texts, "jamo": make_variants(texts, "jamo", 5), "keyboard": make_variants(texts, "keyboard", 5)}
    for i, form in enumerate(forms):
        block = listed[i * len(queries): (i + 1) * len(queries)]
        assert [key for key, _ in block] == [f"{form}|{qid}" for qid, _ in queries]
        assert [text for _, text in block] == want[form]
    hits = {key: [[f"doc-{key}", 1.5]] for key, _ in listed}  # the worker's JSON: lists, not tuples
    split = peers.split_forms(hits)
    assert list(split) == forms
    assert all(split[f][qid] == [(f"doc-{f}|{qid}", 1.5)] for f in forms for qid, _ in queries)


def test_nori_and_cjk_systems_are_named_apart(tmp_path):
    """The Anserini row is ``lucene-cjk``, labelled CJKAnalyzer; ``nori`` runs NoriBench's modes (no Java run)."""
    import peer_systems

    assert "nori" in peers.SYSTEMS and "lucene-cjk" in peers.SYSTEMS and peers.ALIASES["lucene"] == "lucene-cjk"
    assert "CJKAnalyzer" in peer_systems.LABELS["lucene-cjk"] and peer_systems.Lucene.name == "lucene-cjk"
    assert peer_systems.NORI_SOURCE.is_file()
    nori = peer_systems.Nori("CP", 2)
    assert nori.build(tmp_path / "c", tmp_path / "i") == ["java", "-cp", "CP", "NoriBench", "index",
                                                           str(tmp_path / "c"), str(tmp_path / "i"), "2"]
    assert nori.load(tmp_path / "i", "질의", tmp_path)[4:6] == ["load", str(tmp_path / "i")]
    assert nori.worker(tmp_path / "i", tmp_path / "q.json", tmp_path / "r.json", 10)[4] == "search"
